-- Busy state for the statusline: requests this plugin has in flight, the server's work-done
-- progress (LspProgress autocmd), and the decode speed of the last finished request.

local format = require('glm_lsp.format')

local M = {
  active = 0, -- agent requests sent and not answered yet
  progress = {}, -- token -> latest progress message of the glm_lsp client
  last_message = nil,
  last_tps = nil,
}

local function changed()
  -- Statusline plugins that cache (lualine, heirline) can listen for this.
  vim.api.nvim_exec_autocmds('User', { pattern = 'GlmStatus', modeline = false })
  if not vim.in_fast_event() then
    pcall(vim.cmd.redrawstatus)
  end
end

M.changed = changed -- the review tab (review.lua) redraws the statusline through it too

function M.request_started()
  M.active = M.active + 1
  changed()
end

function M.request_ended(stats)
  M.active = math.max(0, M.active - 1)
  if type(stats) == 'table' and format.tps(stats.decodeTps) then
    M.last_tps = stats.decodeTps
  end
  if M.active == 0 then
    M.progress, M.last_message = {}, nil
  end
  changed()
end

--- LspProgress data of the glm_lsp client: begin/report set the message, end clears it.
function M.on_progress(params)
  local value = type(params) == 'table' and params.value
  if type(value) ~= 'table' then
    return
  end
  local token = tostring(params.token)
  if value.kind == 'end' then
    M.progress[token] = nil
    M.last_message = nil
    for _, msg in pairs(M.progress) do
      M.last_message = msg
    end
  else
    local msg = type(value.message) == 'string' and value.message or M.progress[token] or ''
    M.progress[token] = msg
    M.last_message = msg
  end
  changed()
end

function M.busy()
  return M.active > 0 or next(M.progress) ~= nil
end

--- "GLM: thinking…", "GLM: read_file a.py…", "GLM: idle · 23.4 tok/s".
function M.status()
  local review = package.loaded['glm_lsp.review'] and require('glm_lsp.review').status()
  if review then
    return review -- "GLM: review (3 files)": the agent waits for you
  end
  if M.busy() then
    local msg = M.last_message
    if not msg or msg == '' or msg == 'starting' then
      msg = 'thinking'
    end
    return 'GLM: ' .. format.first_line(msg, 40):gsub('…$', '') .. '…'
  end
  local tps = format.tps(M.last_tps)
  return 'GLM: idle' .. (tps and ' · ' .. tps or '')
end

return M
