-- Text the user sees: stats lines, messages, the thinking document. Pure functions (no buffers,
-- no windows) so the wording matches the VS Code extension and is easy to check.

local M = {}

local function num(v)
  return type(v) == 'number' and v == v and v ~= math.huge and v ~= -math.huge
end

--- "23.4 tok/s", or nil when the figure is missing or zero.
function M.tps(v)
  if num(v) and v > 0 then
    return string.format('%.1f tok/s', v)
  end
end

--- One line of figures for a request; parts the server did not send are left out.
function M.stats(stats)
  if type(stats) ~= 'table' then
    return ''
  end
  local parts = {}
  if num(stats.promptTokens) then
    local reused = num(stats.reusedTokens) and string.format(' (%d reused)', stats.reusedTokens)
      or ''
    parts[#parts + 1] = string.format('%d prompt tokens%s', stats.promptTokens, reused)
  end
  if num(stats.generatedTokens) then
    parts[#parts + 1] = string.format('%d generated', stats.generatedTokens)
  end
  if num(stats.ttftMs) then
    parts[#parts + 1] = string.format('first token %d ms', math.floor(stats.ttftMs + 0.5))
  end
  parts[#parts + 1] = M.tps(stats.decodeTps)
  if num(stats.draftTokens) and stats.draftTokens > 0 and num(stats.draftAcceptedTokens) then
    -- speculative decoding: how many drafted tokens the model agreed with
    parts[#parts + 1] = string.format(
      'drafts %d/%d accepted (%d%%)',
      stats.draftAcceptedTokens,
      stats.draftTokens,
      math.floor(100 * stats.draftAcceptedTokens / stats.draftTokens + 0.5)
    )
  end
  return table.concat(parts, ' · ')
end

function M.first_line(text, max)
  max = max or 120
  local line = vim.trim(((text or ''):match('^%s*([^\n]*)')) or '')
  if vim.fn.strchars(line) <= max then
    return line
  end
  return vim.fn.strcharpart(line, 0, max - 1) .. '…'
end

--- A tool call on one line: whitespace (including JSON newlines) collapsed.
function M.tool_call_line(text)
  return M.first_line((text or ''):gsub('%s+', ' '), 160)
end

--- A tool result on one line: its first non-empty line and how many lines followed.
function M.tool_result_line(text)
  local lines = vim.split((text or ''):gsub('%s+$', ''), '\n', { plain = true })
  for i, line in ipairs(lines) do
    if vim.trim(line) ~= '' then
      local rest = #lines - i
      return M.first_line(line, 160) .. (rest > 0 and string.format(' (+%d lines)', rest) or '')
    end
  end
  return '(empty)'
end

local function changes_of(result)
  return type(result.changes) == 'table' and result.changes or {}
end

--- Message for a glm.refactor / glm.fix result; `ok` picks info vs warning.
function M.edit_message(result)
  local changes = changes_of(result)
  local summary = type(result.summary) == 'string' and vim.trim(result.summary) ~= ''
      and ': ' .. M.first_line(result.summary)
    or ''
  if result.applied == true then
    local n = #changes
    return true, string.format('GLM applied %d change%s%s', n, n == 1 and '' or 's', summary)
  end
  local reason = type(result.failureReason) == 'string' and result.failureReason or nil
  if #changes == 0 and not reason then
    return true, 'GLM proposed no changes' .. summary
  end
  return false, 'GLM edit not applied: ' .. (reason or 'the editor declined it')
end

function M.status_message(s)
  local parts = {
    string.format('%s · %s', s.backend or '?', s.model or '?'),
    s.busy and ('busy' .. ((s.queued or 0) > 0 and string.format(', %d queued', s.queued) or ''))
      or 'idle',
    string.format('%d turn%s in the log', s.turns or 0, s.turns == 1 and '' or 's'),
  }
  local stats = M.stats(s.stats)
  if stats ~= '' then
    parts[#parts + 1] = 'last request: ' .. stats
  end
  return 'GLM: ' .. table.concat(parts, ' · ')
end

--- A code fence longer than any backtick run inside, so model output cannot close it early.
function M.fenced(text)
  local longest = 0
  for run in text:gmatch('`+') do
    longest = math.max(longest, #run)
  end
  local fence = string.rep('`', math.max(3, longest + 1))
  return fence .. 'text\n' .. text:gsub('\n$', '') .. '\n' .. fence
end

--- glm.thinking.show's turns as a Markdown document (a list of lines).
function M.thinking_lines(turns)
  local out = { '# GLM preserved thinking', '' }
  if #turns == 0 then
    out[#out + 1] = 'The log is empty: no request has completed yet.'
    return out
  end
  for _, t in ipairs(turns) do
    out[#out + 1] = string.format(
      '## Turn %s · %s · thinking %s',
      tostring(t.turn),
      tostring(t.command),
      tostring(t.thinking)
    )
    out[#out + 1] = ''
    if type(t.summary) == 'string' and vim.trim(t.summary) ~= '' then
      vim.list_extend(out, vim.split('Summary: ' .. vim.trim(t.summary), '\n', { plain = true }))
      out[#out + 1] = ''
    end
    local reasoning = vim.tbl_filter(function(r)
      return type(r) == 'string' and vim.trim(r) ~= ''
    end, type(t.reasoning) == 'table' and t.reasoning or {})
    if #reasoning == 0 then
      vim.list_extend(out, { '### Reasoning', '', '(no reasoning recorded)', '' })
    end
    for i, r in ipairs(reasoning) do
      local of = #reasoning > 1 and string.format(' %d of %d', i, #reasoning) or ''
      vim.list_extend(out, { '### Reasoning' .. of, '' })
      vim.list_extend(out, vim.split(M.fenced(r), '\n', { plain = true }))
      out[#out + 1] = ''
    end
  end
  return out
end

return M
