-- :AiguilleurChat [question]  start a chat about the selection (or the file) and open it
-- :AiguilleurSend             send the chat in the current buffer
-- :AiguilleurUsage            today's spend and what each budget has left
-- :AiguilleurDoctor           run `aiguilleur doctor` in a terminal split

local function client(bufnr)
  return vim.lsp.get_clients({ bufnr = bufnr or 0, name = 'aiguilleur' })[1]
end

local function run(command, arguments, bufnr)
  local c = client(bufnr)
  if not c then
    vim.notify('aiguilleur is not attached to this buffer', vim.log.levels.WARN)
    return
  end
  c:exec_cmd({ title = command, command = command, arguments = arguments }, { bufnr = bufnr or 0 })
end

vim.api.nvim_create_user_command('AiguilleurChat', function(opts)
  local first, last = opts.line1 - 1, opts.line2 - 1
  if opts.range == 0 then
    first, last = 0, -1
  end
  run('aiguilleur.chat.new', {
    { uri = vim.uri_from_bufnr(0), start_line = first, end_line = last, question = opts.args },
  })
end, { nargs = '*', range = true, desc = 'aiguilleur: chat about the selection' })

vim.api.nvim_create_user_command('AiguilleurSend', function()
  run('aiguilleur.chat', { vim.uri_from_bufnr(0) })
end, { desc = 'aiguilleur: send this chat' })

vim.api.nvim_create_user_command('AiguilleurUsage', function()
  run('aiguilleur.usage', {})
end, { desc = 'aiguilleur: spend and budgets' })

vim.api.nvim_create_user_command('AiguilleurDoctor', function()
  vim.cmd('botright split | terminal aiguilleur doctor')
end, { desc = 'aiguilleur: check the setup' })
