-- :checkhealth glm_lsp — Neovim version, server command, running client, settings.

local M = {}

-- The README's Settings table: each setting the server accepts and the Lua types it may hold
-- ('nil' is JSON null, vim.NIL). tests/test_wire_schema.py checks this table equals the server's
-- schema (glm_lsp/schema/wire.schema.json, generated from its Python settings model).
local KNOWN = {
  backend = 'string',
  model = 'string',
  baseUrl = 'string',
  apiKeyEnv = 'string',
  thinking = 'string',
  preserveThinking = 'boolean',
  temperature = 'number',
  topP = 'number',
  maxTokens = 'number',
  contextLength = 'number',
  kvBits = 'number|nil',
  maxSteps = 'number',
  stateDir = 'string|nil',
  persistKvCache = 'boolean',
  scriptedReplies = 'string|nil',
  host = 'string',
  keepAlive = 'number',
  hostCacheGB = 'number',
  allowCommands = 'table',
  verifyCommand = 'string|nil',
  verifyRounds = 'number',
  commandTimeout = 'number',
  sandbox = 'string',
  allowNetwork = 'boolean',
  commandEnv = 'table',
  sandboxHide = 'table',
  review = 'string',
  speculativeDecoding = 'boolean',
  draftTokens = 'number',
  mcpServers = 'table',
  mcpAllow = 'table',
  mcpAllowReadOnly = 'boolean',
  mcpTimeout = 'number',
  codeActions = 'table',
}

local function kind_of(value)
  if value == vim.NIL then
    return 'nil'
  end
  return type(value)
end

local function check_version()
  local v = vim.version()
  local text = string.format('Neovim %d.%d.%d', v.major, v.minor, v.patch)
  if vim.fn.has('nvim-0.11') == 1 then
    vim.health.ok(text)
  else
    vim.health.error(text .. ' is too old', { 'glm_lsp needs Neovim 0.11 or newer (vim.lsp.config).' })
  end
end

local function check_server(config)
  local cmd = config.cmd
  if type(cmd) == 'function' then
    vim.health.info('cmd is a function (an in-process or custom transport): not checked')
    return
  end
  local exe = cmd[1]
  local path = exe and vim.fn.exepath(exe) or ''
  if path ~= '' then
    vim.health.ok(string.format('server command: %s (%s)', table.concat(cmd, ' '), path))
  else
    vim.health.error(string.format('server executable %q not found', tostring(exe)), {
      'Install glm-lsp (pip install -e /path/to/glm-lsp) so `glm-lsp` is on $PATH,',
      'or pass its full path: setup({ cmd = { "/path/to/venv/bin/glm-lsp", "serve" } }).',
    })
  end
end

local function check_settings(settings)
  if next(settings) == nil then
    vim.health.info('settings: none (server defaults: mlx backend, mlx-community/GLM-4.7-8bit-gs32)')
  else
    vim.health.info('settings: ' .. vim.inspect(settings, { newline = ' ', indent = '' }))
  end
  for key, value in pairs(settings) do
    local kinds = KNOWN[key]
    if not kinds then
      vim.health.warn(string.format('unknown setting %q', key), { 'Settings are camelCase: see :help glm_lsp-settings.' })
    elseif not vim.tbl_contains(vim.split(kinds, '|', { plain = true }), kind_of(value)) then
      vim.health.warn(string.format('setting %q is a %s; it takes %s', key, kind_of(value), (kinds:gsub('|', ' or '))))
    end
  end
  local backend = settings.backend or 'mlx'
  if backend == 'openai' then
    vim.health.info('openai backend at ' .. tostring(settings.baseUrl or 'http://127.0.0.1:1234/v1'))
  elseif backend == 'mlx' and type(settings.model) == 'string' then
    local model = vim.fs.normalize(settings.model)
    local looks_local = model:match('^[/.~]') ~= nil
    if looks_local and vim.fn.isdirectory(model) == 0 then
      vim.health.warn('model directory not found: ' .. model)
    end
  elseif backend ~= 'mlx' then
    vim.health.error(string.format('backend %q: use "mlx" or "openai"', tostring(backend)))
  end
end

local function check_clients()
  local clients = vim.lsp.get_clients({ name = 'glm_lsp' })
  if #clients == 0 then
    vim.health.warn('no glm_lsp client is running', { 'Open a file: the server starts when a buffer attaches.' })
    return
  end
  for _, client in ipairs(clients) do
    local folders = vim.tbl_map(function(f)
      return vim.uri_to_fname(f.uri)
    end, client.workspace_folders or {})
    local names = {}
    for buf in pairs(client.attached_buffers or {}) do
      names[#names + 1] = vim.fn.fnamemodify(vim.api.nvim_buf_get_name(buf), ':~:.')
    end
    table.sort(names)
    local text = string.format(
      'client %d %s, folders: %s; attached to %d buffer%s%s',
      client.id,
      client.initialized and 'running' or 'starting',
      #folders > 0 and table.concat(folders, ', ') or '(none)',
      #names,
      #names == 1 and '' or 's',
      #names > 0 and ': ' .. table.concat(vim.list_slice(names, 1, 5), ', ') .. (#names > 5 and ', …' or '') or ''
    )
    if client.initialized and #names > 0 then
      vim.health.ok(text)
    else
      vim.health.warn(text)
    end
  end
  vim.health.info('status: ' .. require('glm_lsp').status())
end

function M.check()
  vim.health.start('glm_lsp')
  check_version()
  local config = require('glm_lsp').config
  if not config then
    vim.health.error('setup() was not called', { 'Add require("glm_lsp").setup({...}) to your config.' })
    return
  end
  check_server(config)
  check_settings(config.settings or {})
  check_clients()
end

return M
