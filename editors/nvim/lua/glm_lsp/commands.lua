-- The :Glm* user commands and the glm.* commands of code actions. Every request goes out with
-- client:request (asynchronous): the UI never waits on the model.

local float = require('glm_lsp.float')
local format = require('glm_lsp.format')
local state = require('glm_lsp.state')

local M = {}

local NAME = 'glm_lsp'
local CANCELLED = -32800 -- LSP RequestCancelled
local TITLES = {
  ['glm.explain'] = 'GLM: Explain',
  ['glm.refactor'] = 'GLM: Refactor',
  ['glm.fix'] = 'GLM: Fix',
  ['glm.ask'] = 'GLM: Ask',
}
local ANSWERS = { ['glm.explain'] = true, ['glm.ask'] = true }

local function notify(msg, level)
  vim.notify(msg, level or vim.log.levels.INFO, { title = 'GLM' })
end

--- The glm_lsp client of `buf`, else any running one (e.g. :GlmAsk from a scratch buffer).
function M.client(buf, quiet)
  local clients = vim.lsp.get_clients({ name = NAME, bufnr = buf })
  if #clients == 0 then
    clients = vim.lsp.get_clients({ name = NAME })
  end
  local client = clients[1]
  if client and client.initialized then
    return client
  end
  if not quiet then
    notify(
      client and 'glm-lsp is still starting; try again in a moment.'
        or 'glm-lsp is not running: open a file in your project (see :checkhealth glm_lsp).',
      vim.log.levels.WARN
    )
  end
end

-- Requests in flight: "client:request" -> finish(err, result). Neovim drops a RequestCancelled
-- reply without calling the handler, so the LspRequest autocmd below ends those requests.
local pending = {}

local function key(client_id, request_id)
  return client_id .. ':' .. request_id
end

--- Sends `command` with its one object argument; `on_done(err, result)` runs once, later.
function M.request(command, arg, on_done, buf, quiet)
  local client = M.client(buf, quiet)
  if not client then
    return false
  end
  if arg == nil or next(arg) == nil then
    arg = vim.empty_dict() -- `{}` would go out as a JSON array; the server wants an object
  end
  local finished, id = false, nil
  local function finish(err, result)
    if finished then
      return
    end
    finished = true
    if id then
      pending[key(client.id, id)] = nil
    end
    on_done(err, result)
  end
  local params = { command = command, arguments = { arg } }
  local ok
  ok, id = client:request('workspace/executeCommand', params, finish, buf)
  if ok and id and not finished then
    pending[key(client.id, id)] = finish
  end
  return ok
end

function M.create_autocmds(group)
  vim.api.nvim_create_autocmd('LspRequest', {
    group = group,
    callback = function(ev)
      local k = key(ev.data.client_id, ev.data.request_id)
      if pending[k] and ev.data.request and ev.data.request.type == 'complete' then
        -- A normal reply's handler is already queued and runs first; a cancel ack has none.
        vim.schedule(function()
          if pending[k] then
            pending[k]({ code = CANCELLED, message = 'cancelled' })
          end
        end)
      end
    end,
  })
  vim.api.nvim_create_autocmd('LspDetach', {
    group = group,
    callback = function(ev)
      local client = vim.lsp.get_client_by_id(ev.data.client_id)
      if client and not client:is_stopped() then
        return
      end
      local prefix = ev.data.client_id .. ':'
      for k, finish in pairs(pending) do
        if vim.startswith(k, prefix) then
          finish({ code = -32099, message = 'the glm-lsp server stopped' })
        end
      end
    end,
  })
end

-- Ranges --------------------------------------------------------------------------------------

local function line_text(buf, row)
  return vim.api.nvim_buf_get_lines(buf, row, row + 1, false)[1] or ''
end

--- The LSP character of byte column `col` in 0-based `row`.
local function char_of(buf, row, col, encoding)
  local text = line_text(buf, row)
  col = math.max(0, math.min(col, #text))
  return vim.str_utfindex(text, encoding, col, false)
end

local function position(buf, row, col, encoding)
  return { line = row, character = char_of(buf, row, col, encoding) }
end

--- Whole lines `l1`..`l2` (1-based, inclusive) as an LSP range.
local function lines_range(buf, l1, l2, encoding)
  return {
    start = { line = l1 - 1, character = 0 },
    ['end'] = position(buf, l2 - 1, #line_text(buf, l2 - 1), encoding),
  }
end

--- The range a command works on: a charwise visual selection exactly, a line range as whole
--- lines, or an empty range at the cursor (the server widens it to the enclosing definition).
function M.range(buf, opts, encoding)
  if opts and opts.range and opts.range > 0 then
    local s = vim.api.nvim_buf_get_mark(buf, '<')
    local e = vim.api.nvim_buf_get_mark(buf, '>')
    local charwise = vim.fn.visualmode() == 'v' and s[1] == opts.line1 and e[1] == opts.line2
    if charwise and s[1] > 0 then
      local last = line_text(buf, e[1] - 1)
      local stop = math.min(e[2] + 1, #last)
      stop = stop + (stop > 0 and stop < #last and vim.str_utf_end(last, stop) or 0)
      return { start = position(buf, s[1] - 1, s[2], encoding), ['end'] = position(buf, e[1] - 1, stop, encoding) }
    end
    return lines_range(buf, opts.line1, opts.line2, encoding)
  end
  local win = vim.fn.bufwinid(buf)
  local cursor = vim.api.nvim_win_get_cursor(win ~= -1 and win or 0)
  local at = position(buf, cursor[1] - 1, cursor[2], encoding)
  return { start = at, ['end'] = at }
end

--- uri, range and client for a command run in the current buffer; nil (with a message) if none.
local function target(opts)
  local buf = vim.api.nvim_get_current_buf()
  if vim.bo[buf].buftype ~= '' or vim.api.nvim_buf_get_name(buf) == '' then
    notify('GLM works on files: switch to a file buffer first.', vim.log.levels.WARN)
    return
  end
  local client = M.client(buf)
  if not client then
    return
  end
  local range = M.range(buf, opts, client.offset_encoding or 'utf-16')
  return { uri = vim.uri_from_bufnr(buf), range = range }, buf
end

-- Results -------------------------------------------------------------------------------------

local function fire_done(command, err, result)
  vim.api.nvim_exec_autocmds('User', {
    pattern = 'GlmRequestDone',
    modeline = false,
    data = { command = command, err = err, result = result },
  })
end

local function modified_buffers(changes)
  local names = {}
  for _, change in ipairs(changes or {}) do
    local buf = vim.fn.bufnr(vim.uri_to_fname(change.uri))
    if buf ~= -1 and vim.bo[buf].modified then
      names[#names + 1] = vim.fn.fnamemodify(vim.uri_to_fname(change.uri), ':~:.')
    end
  end
  return names
end

local function present_answer(command, result)
  -- Usually all of it streamed already; add what did not (e.g. the window was cleared).
  local reasoning = result.reasoning
  if type(reasoning) == 'string' then
    reasoning = { reasoning }
  end
  if not float.streamed(result.turn, 'reasoning') and not float.streamed(result.turn, 'content') then
    for _, r in ipairs(type(reasoning) == 'table' and reasoning or {}) do
      float.stream({ turn = result.turn, kind = 'reasoning', text = r })
    end
  end
  if type(result.text) == 'string' and not float.streamed(result.turn, 'content') then
    float.stream({ turn = result.turn, kind = 'content', text = result.text })
  end
  local stats = format.stats(result.stats)
  float.line(
    string.format('✔ turn %s %s%s', tostring(result.turn), command, stats ~= '' and ' · ' .. stats or ''),
    'GlmFooter'
  )
end

local function present_edit(command, result)
  local ok, msg = format.edit_message(result)
  float.line((ok and '✔ ' or '✖ ') .. msg, ok and 'GlmFooter' or 'GlmError')
  for _, change in ipairs(type(result.changes) == 'table' and result.changes or {}) do
    float.line(string.format('  %s %s', change.kind, vim.fn.fnamemodify(vim.uri_to_fname(change.uri), ':~:.')), 'GlmToolResult')
  end
  local v = result.verification
  if type(v) == 'table' and type(v.command) == 'string' then
    -- verifyCommand's outcome on this edit (exitCode vim.NIL: it could not run)
    local verdict = v.exitCode == 0 and 'passed'
      or (type(v.exitCode) == 'number' and ('failed (exit code ' .. v.exitCode .. ')') or 'did not run')
    local line = string.format('verification: `%s` %s: %s', v.command, verdict, tostring(v.summary or ''))
    float.line('  ' .. line, v.exitCode == 0 and 'GlmFooter' or 'GlmError')
    msg = msg .. ' [' .. line .. ']'
  end
  local unsaved = result.applied == true and modified_buffers(result.changes) or {}
  if #unsaved > 0 then
    msg = msg .. string.format(' (%d unsaved buffer%s: :wall writes them)', #unsaved, #unsaved == 1 and '' or 's')
  end
  local stats = format.stats(result.stats)
  if stats ~= '' then
    float.line(string.format('  turn %s %s · %s', tostring(result.turn), command, stats), 'GlmFooter')
  end
  notify(msg, ok and vim.log.levels.INFO or vim.log.levels.WARN)
end

--- An agent request: streams into the float, tracks busy state, shows the result at the end.
function M.run(command, arg, buf)
  local client = M.client(buf)
  if not client then
    return false
  end
  float.begin(TITLES[command] or command, state.active > 0)
  state.request_started()
  local sent = M.request(command, arg, function(err, result)
    state.request_ended(type(result) == 'table' and result.stats or nil)
    if err then
      if err.code == CANCELLED then
        float.line('✖ ' .. command .. ' cancelled', 'GlmError')
      else
        float.line('✖ ' .. command .. ' failed: ' .. tostring(err.message), 'GlmError')
        notify(tostring(err.message), vim.log.levels.ERROR)
      end
    elseif type(result) == 'table' then
      if ANSWERS[command] then
        present_answer(command, result)
      else
        present_edit(command, result)
      end
    end
    fire_done(command, err, result)
  end, buf)
  if not sent then
    state.request_ended(nil)
  end
  return sent
end

-- Commands ------------------------------------------------------------------------------------

local function ask_text(prompt, given, fn)
  if given and vim.trim(given) ~= '' then
    return fn(vim.trim(given))
  end
  vim.ui.input({ prompt = prompt }, function(text)
    if text and vim.trim(text) ~= '' then
      fn(vim.trim(text))
    end
  end)
end

function M.explain(opts)
  local arg, buf = target(opts)
  if arg then
    if opts and opts.args and vim.trim(opts.args) ~= '' then
      arg.question = vim.trim(opts.args)
    end
    M.run('glm.explain', arg, buf)
  end
end

function M.refactor(opts)
  local arg, buf = target(opts)
  if arg then
    ask_text('GLM refactor: ', opts and opts.args, function(instruction)
      arg.instruction = instruction
      M.run('glm.refactor', arg, buf)
    end)
  end
end

--- vim.diagnostic items on 0-based rows first..last, as LSP diagnostics.
local function diagnostics_on(buf, first, last)
  local out = {}
  for _, d in ipairs(vim.diagnostic.get(buf)) do
    if d.lnum <= last and (d.end_lnum or d.lnum) >= first then
      local lsp_d = vim.tbl_get(d, 'user_data', 'lsp')
      out[#out + 1] = lsp_d
        or {
          range = {
            start = { line = d.lnum, character = d.col or 0 },
            ['end'] = { line = d.end_lnum or d.lnum, character = d.end_col or d.col or 0 },
          },
          message = d.message,
          source = d.source,
          severity = d.severity,
        }
    end
  end
  return out
end

function M.fix(opts)
  local arg, buf = target(opts)
  if not arg then
    return
  end
  local first, last = arg.range.start.line, arg.range['end'].line
  local diagnostics = diagnostics_on(buf, first, last)
  if opts == nil or (opts.range or 0) == 0 then
    -- A bare cursor: the lines the diagnostics there cover, or the cursor's line.
    for _, d in ipairs(diagnostics) do
      first = math.min(first, d.range.start.line)
      last = math.max(last, d.range['end'].line)
    end
    local client = M.client(buf)
    arg.range = lines_range(buf, first + 1, last + 1, client and client.offset_encoding or 'utf-16')
  end
  if #diagnostics == 0 then
    notify('No diagnostics here; GLM will look for the problem itself.')
  else
    arg.diagnostics = diagnostics
  end
  M.run('glm.fix', arg, buf)
end

local function workspace_uri(client, buf)
  local name = vim.api.nvim_buf_get_name(buf)
  if vim.bo[buf].buftype ~= '' or name == '' then
    return nil
  end
  for _, folder in ipairs(client.workspace_folders or {}) do
    local root = vim.uri_to_fname(folder.uri)
    if vim.fs.relpath and vim.fs.relpath(root, name) or vim.startswith(name, root .. '/') then
      return vim.uri_from_bufnr(buf)
    end
  end
end

function M.ask(opts)
  local buf = vim.api.nvim_get_current_buf()
  local client = M.client(buf)
  if not client then
    return
  end
  ask_text('GLM ask: ', opts and opts.args, function(question)
    M.run('glm.ask', { question = question, uri = workspace_uri(client, buf) }, buf)
  end)
end

function M.cancel()
  M.request('glm.cancel', {}, function(err, result)
    if err then
      return notify('GLM: ' .. tostring(err.message), vim.log.levels.ERROR)
    end
    local n = type(result) == 'table' and result.cancelled or 0
    notify(n ~= 0 and string.format('GLM: cancelled %d request%s.', n, n == 1 and '' or 's') or 'GLM: nothing to cancel.')
  end)
end

function M.status()
  M.request('glm.status', {}, function(err, result)
    if err then
      return notify('GLM: ' .. tostring(err.message), vim.log.levels.ERROR)
    end
    if type(result) == 'table' and result.stats ~= vim.NIL and type(result.stats) == 'table' then
      state.last_tps = format.tps(result.stats.decodeTps) and result.stats.decodeTps or state.last_tps
    end
    notify(format.status_message(type(result) == 'table' and result or {}))
  end)
end

--- Fills (or creates) the scratch buffer glm://thinking and shows it in a split.
local function show_document(name, lines)
  local buf = vim.fn.bufnr(name)
  if buf == -1 then
    buf = vim.api.nvim_create_buf(true, true)
    vim.api.nvim_buf_set_name(buf, name)
    vim.bo[buf].filetype = 'markdown'
    vim.bo[buf].bufhidden = 'hide'
  end
  vim.bo[buf].modifiable = true
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].modifiable = false
  vim.bo[buf].modified = false
  local win = vim.fn.bufwinid(buf)
  if win == -1 then
    vim.cmd('botright split')
    vim.api.nvim_win_set_buf(0, buf)
  else
    vim.api.nvim_set_current_win(win)
  end
  return buf
end

function M.thinking()
  M.request('glm.thinking.show', {}, function(err, result)
    if err then
      return notify('GLM: ' .. tostring(err.message), vim.log.levels.ERROR)
    end
    local buf = show_document('glm://thinking', format.thinking_lines(type(result) == 'table' and result or {}))
    fire_done('glm.thinking.show', nil, { buf = buf })
  end)
end

function M.thinking_reset()
  vim.ui.select({ 'Archive the log', 'Keep it' }, {
    prompt = 'Archive the preserved-thinking log? The next request starts without earlier reasoning.',
  }, function(choice)
    if choice ~= 'Archive the log' then
      return
    end
    M.request('glm.thinking.reset', {}, function(err, result)
      if err then
        return notify('GLM: ' .. tostring(err.message), vim.log.levels.ERROR)
      end
      local where = type(result) == 'table' and type(result.archived) == 'string' and ' to ' .. result.archived or ''
      notify('GLM: thinking log archived' .. where .. '.')
    end)
  end)
end

function M.undo()
  M.request('glm.undo', {}, function(err, result)
    if err then
      return notify('GLM: ' .. tostring(err.message), vim.log.levels.ERROR)
    end
    if type(result) == 'table' and result.applied == false then
      notify('GLM could not undo: ' .. tostring(result.failureReason or 'unknown reason'), vim.log.levels.WARN)
    else
      notify('GLM undid the last edit (buffers changed; :wall writes them).')
    end
    fire_done('glm.undo', nil, result)
  end)
end

--- Sends the last declined (or stale) edit again; the server merges it onto the files as they are now.
function M.retry()
  M.request('glm.retry', {}, function(err, result)
    if err then
      return notify('GLM: ' .. tostring(err.message), vim.log.levels.ERROR)
    end
    if type(result) == 'table' and result.applied == false then
      notify('GLM could not retry: ' .. tostring(result.failureReason or 'unknown reason'), vim.log.levels.WARN)
    else
      notify('GLM applied the edit (buffers changed; :wall writes them).')
    end
    fire_done('glm.retry', nil, result)
  end)
end

--- Client-side handlers for the glm.* commands that code actions carry, so that
--- `GLM: Refactor…` asks for its instruction and results show in the float.
function M.client_commands()
  local function with_arg(fn)
    return function(command, ctx)
      local arg = type(command.arguments) == 'table' and command.arguments[1] or {}
      fn(vim.deepcopy(arg), ctx.bufnr)
    end
  end
  return {
    ['glm.explain'] = with_arg(function(arg, buf)
      M.run('glm.explain', arg, buf)
    end),
    ['glm.fix'] = with_arg(function(arg, buf)
      M.run('glm.fix', arg, buf)
    end),
    ['glm.ask'] = with_arg(function(arg, buf)
      ask_text('GLM ask: ', arg.question, function(question)
        arg.question = question
        M.run('glm.ask', arg, buf)
      end)
    end),
    ['glm.refactor'] = with_arg(function(arg, buf)
      ask_text('GLM refactor: ', arg.instruction, function(instruction)
        arg.instruction = instruction
        M.run('glm.refactor', arg, buf)
      end)
    end),
  }
end

local USER_COMMANDS = {
  GlmExplain = { M.explain, { range = true, nargs = '?', desc = 'GLM: explain the selection or the definition at the cursor' } },
  GlmRefactor = { M.refactor, { range = true, nargs = '?', desc = 'GLM: refactor (the selection) as instructed' } },
  GlmFix = { M.fix, { range = true, desc = 'GLM: fix the diagnostics of the line or selection' } },
  GlmAsk = { M.ask, { nargs = '?', desc = 'GLM: ask about the workspace' } },
  GlmCancel = { M.cancel, { desc = 'GLM: cancel the running request' } },
  GlmThinking = { M.thinking, { desc = 'GLM: show the preserved-thinking log' } },
  GlmThinkingReset = { M.thinking_reset, { desc = 'GLM: archive the preserved-thinking log' } },
  GlmStatus = { M.status, { desc = 'GLM: backend, model, busy state and last figures' } },
  GlmUndo = { M.undo, { desc = 'GLM: revert the last applied agent edit' } },
  GlmRetry = { M.retry, { desc = 'GLM: send the last declined edit again, merged onto the files now' } },
  GlmFloat = { float.toggle, { desc = 'GLM: show or hide the stream window' } },
}

function M.create_user_commands()
  for name, spec in pairs(USER_COMMANDS) do
    local fn, opts = spec[1], spec[2]
    vim.api.nvim_create_user_command(name, function(o)
      fn(o)
    end, opts)
  end
end

return M
