-- The floating window that shows a request as it streams: reasoning (dimmed), the answer, tool
-- calls and results as short lines, and the result footer. One scratch buffer, reused; the
-- window opens without taking focus, so typing carries on while the model works.

local format = require('glm_lsp.format')

local M = {
  buf = nil,
  win = nil,
  kind = nil, -- kind of the section being written: reasoning, content, tool_call, ...
  fresh = true, -- nothing written in the current section yet
  seen = {}, -- turn -> { reasoning = true, content = true }: what streamed, so results do not repeat it
  turn = nil, -- the turn streaming now
  header_shown = false, -- the next new turn's header is already written
  titles = {}, -- titles of queued requests, written when their turn starts streaming
  opts = { width = 84, height = 18, border = 'rounded', auto_open = true },
}

local ns = vim.api.nvim_create_namespace('glm_lsp.float')

function M.configure(opts)
  M.opts = vim.tbl_extend('force', M.opts, opts or {})
end

local function valid_buf()
  return M.buf and vim.api.nvim_buf_is_valid(M.buf)
end

function M.buffer()
  if valid_buf() then
    return M.buf
  end
  local buf = vim.api.nvim_create_buf(false, true) -- unlisted scratch: no LSP attaches to it
  vim.bo[buf].bufhidden = 'hide'
  vim.bo[buf].filetype = 'glm'
  vim.bo[buf].modifiable = false
  pcall(vim.api.nvim_buf_set_name, buf, 'glm://stream')
  vim.keymap.set('n', 'q', M.close, { buffer = buf, nowait = true, desc = 'Close the GLM window' })
  M.buf = buf
  return buf
end

function M.is_open()
  return M.win ~= nil and vim.api.nvim_win_is_valid(M.win)
end

local function layout()
  local columns, lines = vim.o.columns, vim.o.lines
  local width = math.max(20, math.min(M.opts.width, columns - 4))
  local height = math.max(3, math.min(M.opts.height, lines - 6))
  return {
    relative = 'editor',
    anchor = 'NE',
    row = 1,
    col = columns - 1,
    width = width,
    height = height,
    style = 'minimal',
    border = M.opts.border,
    title = ' GLM ',
    title_pos = 'center',
    zindex = 45,
  }
end

--- Shows the window (without entering it) if it is not shown.
function M.open()
  local buf = M.buffer()
  if M.is_open() then
    return M.win
  end
  M.win = vim.api.nvim_open_win(buf, false, layout())
  vim.wo[M.win].wrap = true
  vim.wo[M.win].linebreak = true
  vim.wo[M.win].winhighlight = 'NormalFloat:GlmNormal,FloatBorder:GlmBorder'
  M.follow()
  return M.win
end

--- Keeps the window in the top-right corner when the editor is resized.
function M.relayout()
  if M.is_open() then
    pcall(vim.api.nvim_win_set_config, M.win, layout())
  end
end

function M.close()
  if M.is_open() then
    pcall(vim.api.nvim_win_close, M.win, true)
  end
  M.win = nil
end

function M.toggle()
  if M.is_open() then
    M.close()
  else
    M.open()
  end
end

--- Keeps the last line in view unless the user is reading inside the window.
function M.follow()
  if M.is_open() and vim.api.nvim_get_current_win() ~= M.win then
    local last = vim.api.nvim_buf_line_count(M.buf)
    pcall(vim.api.nvim_win_set_cursor, M.win, { last, 0 })
  end
end

local function with_modifiable(fn)
  local buf = M.buffer()
  vim.bo[buf].modifiable = true
  local ok, err = pcall(fn, buf)
  vim.bo[buf].modifiable = false
  if not ok then
    error(err)
  end
end

local function empty(buf)
  return vim.api.nvim_buf_line_count(buf) == 1 and vim.api.nvim_buf_get_lines(buf, 0, 1, true)[1] == ''
end

--- Appends `text` at the end of the buffer (continuing the last line), highlighted with `hl`.
local function append(text, hl)
  with_modifiable(function(buf)
    local row = vim.api.nvim_buf_line_count(buf) - 1
    local col = #vim.api.nvim_buf_get_lines(buf, row, row + 1, true)[1]
    local parts = vim.split(text, '\n', { plain = true })
    vim.api.nvim_buf_set_text(buf, row, col, row, col, parts)
    local end_row = row + #parts - 1
    local end_col = (#parts == 1 and col or 0) + #parts[#parts]
    if hl and (end_row > row or end_col > col) then
      vim.api.nvim_buf_set_extmark(buf, ns, row, col, {
        end_row = end_row,
        end_col = end_col,
        hl_group = hl,
        hl_eol = false,
      })
    end
  end)
end

--- Ends the current line if it holds text, so what follows starts a line of its own.
local function newline()
  local buf = M.buffer()
  local last = vim.api.nvim_buf_get_lines(buf, -2, -1, true)[1]
  if last ~= '' then
    append('\n')
  end
end

--- A whole line of its own.
function M.line(text, hl)
  local buf = M.buffer()
  if not empty(buf) then
    newline()
  end
  append(text, hl)
  M.kind, M.fresh = nil, true
  M.follow()
end

--- Starts a request's section. With nothing else running the buffer is cleared and the title
--- shown at once; a queued request's title waits until its turn starts streaming.
function M.begin(title, queued)
  if queued then
    table.insert(M.titles, title)
    return
  end
  with_modifiable(function(b)
    vim.api.nvim_buf_clear_namespace(b, ns, 0, -1)
    vim.api.nvim_buf_set_lines(b, 0, -1, false, {})
  end)
  M.seen, M.titles, M.turn = {}, {}, nil
  M.line('── ' .. title .. ' ──', 'GlmHeader')
  M.header_shown = true
  if M.opts.auto_open then
    M.open()
  end
end

local function start_turn(turn)
  if turn == nil or turn == M.turn then
    return
  end
  if not M.header_shown then
    M.line('')
    M.line('── ' .. (table.remove(M.titles, 1) or 'GLM') .. ' ──', 'GlmHeader')
  end
  M.header_shown, M.turn = false, turn
end

local HL = { reasoning = 'GlmReasoning' } -- content keeps the window's normal colour

--- One `glm/stream` notification: {turn, kind, text}.
function M.stream(item)
  if type(item) ~= 'table' or type(item.text) ~= 'string' then
    return
  end
  local kind = item.kind
  start_turn(item.turn)
  if kind == 'tool_call' then
    M.line('▸ ' .. format.tool_call_line(item.text), 'GlmToolCall')
  elseif kind == 'tool_result' then
    M.line('◂ ' .. format.tool_result_line(item.text), 'GlmToolResult')
  elseif kind == 'reasoning' or kind == 'content' then
    local text = item.text
    if kind ~= M.kind then
      -- A blank line between thinking and the answer; models open sections with newlines.
      local buf = M.buffer()
      if not empty(buf) then
        newline()
        if M.kind == 'reasoning' then
          append('\n')
        end
      end
      M.kind, M.fresh = kind, true
    end
    if M.fresh then
      text = text:gsub('^\n+', '')
    end
    if text ~= '' then
      M.fresh = false
      append(text, HL[kind])
      if item.turn then
        M.seen[item.turn] = M.seen[item.turn] or {}
        M.seen[item.turn][kind] = true
      end
    end
    M.follow()
  end
end

--- Whether text of `kind` (reasoning or content) of `turn` already streamed into the window.
function M.streamed(turn, kind)
  return (M.seen[turn] or {})[kind] == true
end

--- The buffer's text, for tests and for users who want to yank it.
function M.lines()
  if not valid_buf() then
    return {}
  end
  return vim.api.nvim_buf_get_lines(M.buf, 0, -1, false)
end

M.namespace = ns

return M
