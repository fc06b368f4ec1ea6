-- aiguilleur for Neovim 0.11+: put editors/neovim on the runtimepath, then
--   vim.lsp.enable('aiguilleur')
-- Ghost text on Neovim 0.12+, the completion menu on 0.11; Tab accepts on both.
-- On 0.12+, Alt-Right takes the suggestion's next word and Alt-Down its line.

-- The start of `text` a key takes: its next word (with the spaces before it, or else
-- its next run of punctuation), or its first line (with its line break).
local function part_of(text, what)
  if what == 'line' then
    return text:match('^[^\n]*\n?')
  end
  return text:match('^%s*[%w_]+') or text:match('^%s*[^%w_%s]+') or text:match('^%s+') or text
end

-- Accept `what` ('word' or 'line') of the suggestion shown, telling the server how much
-- was taken (the item's command); the key keeps its own meaning when none is shown.
local function take(what, key)
  return function()
    local taken = vim.lsp.inline_completion.get({
      on_accept = function(item)
        if type(item.insert_text) ~= 'string' then
          return item
        end
        local part = part_of(item.insert_text, what)
        item.insert_text = part
        local cmd = item.command
        if cmd and cmd.command == 'aiguilleur.accepted' and cmd.arguments then
          item.command = vim.tbl_extend('force', cmd, {
            arguments = { cmd.arguments[1], vim.fn.strchars(part) },
          })
        end
        return item
      end,
    })
    if not taken then
      return key
    end
  end
end

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
      local opts = { buffer = bufnr, expr = true, replace_keycodes = true }
      vim.keymap.set('i', '<M-Right>', take('word', '<M-Right>'), vim.tbl_extend('force', opts, {
        desc = "aiguilleur: accept the suggestion's next word",
      }))
      vim.keymap.set('i', '<M-Down>', take('line', '<M-Down>'), vim.tbl_extend('force', opts, {
        desc = "aiguilleur: accept the suggestion's line",
      }))
    elseif client:supports_method('textDocument/completion') then
      -- 0.11 asks only on the server's trigger characters: ask on every printable key
      -- (`:help lsp-autocompletion`); the server answers only the latest request.
      local chars = {}
      for i = 32, 126 do
        chars[#chars + 1] = string.char(i)
      end
      client.server_capabilities.completionProvider.triggerCharacters = chars
      -- A single suggestion must show as a menu, typed into the buffer only when taken,
      -- and with nothing selected, so that Enter stays a line break.
      local cot = vim.opt_global.completeopt:get()
      for _, flag in ipairs({ 'menuone', 'noselect' }) do
        if not vim.tbl_contains(cot, flag) then
          table.insert(cot, flag)
        end
      end
      vim.bo[bufnr].completeopt = table.concat(cot, ',')
      -- Tab takes our suggestion when the menu shows it, and stays Tab otherwise.
      vim.keymap.set('i', '<Tab>', function()
        if vim.fn.pumvisible() == 1 then
          local info = vim.fn.complete_info({ 'selected', 'items' })
          local entry = info.items[math.max(info.selected, 0) + 1]
          if entry and ours(vim.tbl_get(entry, 'user_data', 'nvim', 'lsp', 'completion_item')) then
            return info.selected >= 0 and '<C-y>' or '<C-n><C-y>'
          end
        end
        return '<Tab>'
      end, { buffer = bufnr, expr = true, desc = 'aiguilleur: accept the suggestion' })
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
