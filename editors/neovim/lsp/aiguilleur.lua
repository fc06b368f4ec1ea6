-- aiguilleur for Neovim 0.11+: put editors/neovim on the runtimepath, then
--   vim.lsp.enable('aiguilleur')
-- Ghost text on Neovim 0.12+ (Tab accepts), the completion menu on 0.11.

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
      vim.lsp.completion.enable(true, client.id, bufnr, { autotrigger = true })
    end
  end,
}
