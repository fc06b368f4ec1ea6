-- Driven by tests/editors/test_neovim.py: a real Neovim with editors/neovim on its
-- runtimepath, talking to the real `aiguilleur serve`. Writes what it saw as JSON.
local out = {}
local function finish(code)
  local f = assert(io.open(os.getenv('RESULT_FILE'), 'w'))
  f:write(vim.json.encode(out))
  f:close()
  os.exit(code)
end
local function fail(msg)
  out.error = msg
  finish(1)
end

vim.opt.rtp:prepend(os.getenv('AIGUILLEUR_RTP'))
vim.cmd.runtime('plugin/aiguilleur.lua')
vim.lsp.config('aiguilleur', { cmd = vim.json.decode(os.getenv('AIGUILLEUR_CMD')) })
vim.lsp.enable('aiguilleur')
vim.cmd.edit(os.getenv('TEST_FILE'))

local function client()
  return vim.lsp.get_clients({ bufnr = 0, name = 'aiguilleur' })[1]
end
if not vim.wait(30000, function() return client() ~= nil end, 50) then
  fail('the client did not attach')
end
local c = client()
out.offset_encoding = c.offset_encoding
local loaded = vim.wait(120000, function()
  local r = c:request_sync('aiguilleur/status', {}, 5000, 0)
  return r ~= nil and r.result ~= nil and type(r.result.model) == 'table'
end, 200)
if not loaded then
  fail('the model did not load')
end

-- 1. Completion items after multibyte text, at the column Neovim's filtering needs.
local row = tonumber(os.getenv('CURSOR_LINE'))
local line = vim.api.nvim_buf_get_lines(0, row - 1, row, true)[1]
vim.api.nvim_win_set_cursor(0, { row, #line })
local params = vim.lsp.util.make_position_params(0, c.offset_encoding)
-- Insert mode puts the cursor after the last character; normal mode cannot.
params.position.character = #line
local res = c:request_sync('textDocument/completion', params, 60000, 0)
if not res or res.err then
  fail('completion failed: ' .. vim.inspect(res))
end
local items = res.result.items or res.result
out.items = #items
if #items > 0 then
  out.edit_start = items[1].textEdit.range.start.character
  out.edit_end = items[1].textEdit.range['end'].character
  out.filter_text = items[1].filterText
end
out.cursor_byte_col = #line

-- 2. A code action's edit, resolved and applied by Neovim itself.
local range_params = vim.lsp.util.make_range_params(0, c.offset_encoding)
range_params.range = { start = { line = 0, character = 0 }, ['end'] = { line = 2, character = 0 } }
range_params.context = { diagnostics = {} }
local actions = c:request_sync('textDocument/codeAction', range_params, 10000, 0)
local document
for _, a in ipairs(actions.result or {}) do
  if a.title:find('Document') then
    document = a
  end
end
if not document then
  fail('no Document action: ' .. vim.inspect(actions))
end
local before = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, true), '\n')
local resolved = c:request_sync('codeAction/resolve', document, 120000, 0)
if not resolved or resolved.err then
  fail('resolve failed: ' .. vim.inspect(resolved))
end
vim.lsp.util.apply_workspace_edit(resolved.result.edit, c.offset_encoding)
local after = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, true), '\n')
out.action_changed_buffer = before ~= after
out.action_kept_tail = after:find('print%(add%(1, 2%)%)') ~= nil

-- 3. :AiguilleurChat: the answer streams into a chat buffer through workspace/applyEdit.
vim.cmd('1,2AiguilleurChat What does this do?')
local chat_buf
local streamed = vim.wait(120000, function()
  for _, b in ipairs(vim.api.nvim_list_bufs()) do
    local name = vim.api.nvim_buf_get_name(b)
    if name:match('%.md$') then
      chat_buf = b
      local text = table.concat(vim.api.nvim_buf_get_lines(b, 0, -1, true), '\n')
      if text:find('## aiguilleur ·', 1, true) and text:match('## You\n*$') then
        return true
      end
    end
  end
  return false
end, 100)
out.chat_streamed = streamed
if chat_buf then
  out.chat_text = table.concat(vim.api.nvim_buf_get_lines(chat_buf, 0, -1, true), '\n')
end
finish(0)
