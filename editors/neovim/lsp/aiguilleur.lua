-- aiguilleur for Neovim 0.11+: put editors/neovim on the runtimepath, then
--   vim.lsp.enable('aiguilleur')
-- Ghost text on Neovim 0.12+ (Tab accepts), the completion menu on 0.11 (<C-y> accepts).

local function ours(item)
  return type(item) == 'table' and type(item.detail) == 'string' and item.detail:find('^aiguilleur') ~= nil
end

-- Neovim 0.11 inserts an item's `word`, which it cuts at the first space of the
-- suggestion; on accept, put the whole suggestion (all its lines) in its place.
local function complete_whole_suggestion(bufnr)
  vim.api.nvim_create_autocmd('CompleteDone', {
    group = vim.api.nvim_create_augroup('aiguilleur.complete.' .. bufnr, { clear = true }),
    buffer = bufnr,
    callback = function()
      local done = vim.v.completed_item
      local item = vim.tbl_get(done, 'user_data', 'nvim', 'lsp', 'completion_item')
      if vim.v.event.reason ~= 'accept' or not ours(item) or not item.textEdit then
        return
      end
      local full = item.textEdit.newText
      local word = done.word or ''
      if full == word then
        return
      end
      local row, col = unpack(vim.api.nvim_win_get_cursor(0))
      local lines = vim.split(full, '\n', { plain = true })
      vim.api.nvim_buf_set_text(bufnr, row - 1, col - #word, row - 1, col, lines)
      local last_row = row + #lines - 1
      local last_col = (#lines == 1 and col - #word or 0) + #lines[#lines]
      vim.api.nvim_win_set_cursor(0, { last_row, last_col })
    end,
  })
end

---@type vim.lsp.Config
return {
  cmd = { 'aiguilleur', 'serve' },
  root_markers = { '.aiguilleur.toml', '.git' },
  on_attach = function(client, bufnr)
    if vim.lsp.inline_completion and client:supports_method('textDocument/inlineCompletion') then
      vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
      -- Tab accepts a suggestion when there is one, and stays Tab otherwise.
      vim.keymap.set('i', '<Tab>', function()
        if not vim.lsp.inline_completion.get() then
          return '<Tab>'
        end
      end, { buffer = bufnr, expr = true, desc = 'aiguilleur: accept the suggestion' })
    elseif client:supports_method('textDocument/completion') then
      -- 0.11 asks only on the server's trigger characters: ask on every printable key
      -- (`:help lsp-autocompletion`); the server answers only the latest request.
      local chars = {}
      for i = 32, 126 do
        chars[#chars + 1] = string.char(i)
      end
      client.server_capabilities.completionProvider.triggerCharacters = chars
      -- A single suggestion must show as a menu, not be typed into the buffer at once.
      local cot = vim.opt_global.completeopt:get()
      if not vim.tbl_contains(cot, 'menuone') then
        table.insert(cot, 'menuone')
      end
      if not vim.tbl_contains(cot, 'noselect') and not vim.tbl_contains(cot, 'noinsert') then
        table.insert(cot, 'noinsert')
      end
      vim.bo[bufnr].completeopt = table.concat(cot, ',')
      vim.lsp.completion.enable(true, client.id, bufnr, {
        autotrigger = true,
        -- Show and filter on the suggestion's whole first line.
        convert = function(item)
          if ours(item) and item.textEdit then
            return { word = vim.split(item.textEdit.newText, '\n', { plain = true })[1] }
          end
          return {}
        end,
      })
      complete_whole_suggestion(bufnr)
    end
  end,
}
