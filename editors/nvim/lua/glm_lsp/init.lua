-- glm-lsp for Neovim 0.11+: registers the server with vim.lsp.config/vim.lsp.enable, adds the
-- :Glm* commands, streams glm/stream into a float and keeps a statusline string.
--
--   require("glm_lsp").setup({ cmd = { "glm-lsp", "serve" }, settings = { model = "..." } })

local M = {}

local NAME = 'glm_lsp'

M.defaults = {
  cmd = { 'glm-lsp', 'serve' },
  settings = {}, -- the README's Settings, camelCase: backend, model, baseUrl, thinking, ...
  filetypes = nil, -- nil: every filetype
  root_markers = { '.git', '.hg', '.jj', '.glm-lsp' }, -- first found upwards wins; else cwd
  single_server = true, -- one server (one loaded model) for every project, as workspace folders
  token = nil, -- `serve --tcp` only: the token (string) or a function returning it, read per connection
  float = { width = 84, height = 18, border = 'rounded', auto_open = true },
}

M.config = nil -- the resolved options once setup() ran

--- Settings as the user wrote them, flat (a `{ glm = {...} }` wrapper is accepted too).
local function flat_settings(settings)
  settings = settings or {}
  if type(settings.glm) == 'table' then
    return vim.deepcopy(settings.glm)
  end
  return vim.deepcopy(settings)
end

--- The project root of `buf`: the first root marker found upwards, else the cwd (or the file's
--- directory when the file is not under the cwd, so the server always sees it in a folder).
function M.root(buf)
  local markers = (M.config or M.defaults).root_markers
  local root = #markers > 0 and vim.fs.root(buf, markers) or nil
  if root then
    return root
  end
  local cwd = vim.fn.getcwd()
  local name = vim.api.nvim_buf_get_name(buf)
  if name == '' or vim.startswith(vim.fs.normalize(name), vim.fs.normalize(cwd) .. '/') then
    return cwd
  end
  return vim.fs.dirname(vim.fs.normalize(name))
end

local function set_highlights()
  local links = {
    GlmReasoning = 'Comment',
    GlmHeader = 'Title',
    GlmToolCall = 'Function',
    GlmToolResult = 'Comment',
    GlmFooter = 'DiagnosticOk',
    GlmError = 'DiagnosticError',
    GlmNormal = 'NormalFloat',
    GlmBorder = 'FloatBorder',
  }
  for group, target in pairs(links) do
    vim.api.nvim_set_hl(0, group, { link = target, default = true })
  end
end

--- With single_server, a buffer of another project joins the running server as a workspace
--- folder instead of starting a second server (and loading the model twice).
local function ensure_folder(client, buf)
  local root = M.root(buf)
  local uri = vim.uri_from_fname(root)
  for _, folder in ipairs(client.workspace_folders or {}) do
    if folder.uri == uri then
      return
    end
  end
  local folder = { uri = uri, name = root }
  client:notify('workspace/didChangeWorkspaceFolders', { event = { added = { folder }, removed = {} } })
  client.workspace_folders = client.workspace_folders or {}
  table.insert(client.workspace_folders, folder)
end

local function lsp_config(opts)
  local commands = require('glm_lsp.commands')
  local settings = flat_settings(opts.settings)
  local config = {
    cmd = opts.cmd,
    filetypes = opts.filetypes,
    root_dir = function(buf, on_dir)
      on_dir(M.root(buf))
    end,
    -- initializationOptions carry the settings; `settings` answers workspace/configuration
    -- (section `glm`) and is sent as didChangeConfiguration after initialize.
    init_options = settings,
    settings = { glm = settings },
    -- Tells glm-lsp this is our plugin: it takes glm/stream and waits for a command's result
    -- (Neovim deep-merges this into its default capabilities); plain clients get them at once.
    -- Neovim applies documentChanges (create, rename, delete, annotations: the review tab) but
    -- does not declare it, and glm-lsp sends only what a client declares.
    capabilities = {
      experimental = { glm = { stream = true } },
      workspace = { workspaceEdit = { documentChanges = true } },
    },
    handlers = {
      ['glm/stream'] = function(_, params)
        require('glm_lsp.float').stream(params)
      end,
      -- Edits that need confirmation open the review tab (review.lua) instead of landing at once.
      ['workspace/applyEdit'] = function(err, params, ctx)
        return require('glm_lsp.review').handler(err, params, ctx)
      end,
    },
    commands = commands.client_commands(),
  }
  if opts.token ~= nil then
    -- Added to initializationOptions only (never to `settings`, which the server would reject as
    -- an unknown key); a function is called at each start, so a regenerated token file is re-read.
    config.before_init = function(params)
      local token = opts.token
      if type(token) == 'function' then
        token = token()
      end
      params.initializationOptions = vim.tbl_extend('force', params.initializationOptions or {}, { token = token })
    end
  end
  if opts.single_server then
    config.reuse_client = function(client, cfg)
      return client.name == cfg.name and not client:is_stopped()
    end
  end
  return config
end

--- Registers and enables the server and creates the user commands.
--- opts: cmd, settings, filetypes, root_markers, single_server, token, float (see :help glm_lsp-setup).
function M.setup(opts)
  opts = opts or {}
  vim.validate('opts.cmd', opts.cmd, { 'table', 'function' }, true)
  vim.validate('opts.settings', opts.settings, 'table', true)
  vim.validate('opts.filetypes', opts.filetypes, 'table', true)
  vim.validate('opts.root_markers', opts.root_markers, 'table', true)
  vim.validate('opts.token', opts.token, { 'string', 'function' }, true)
  -- Lists replace the defaults (a deep merge would splice list items together).
  local config = vim.tbl_extend('force', vim.deepcopy(M.defaults), opts)
  config.float = vim.tbl_extend('force', M.defaults.float, opts.float or {})
  config.settings = flat_settings(config.settings)
  M.config = config

  require('glm_lsp.float').configure(config.float)
  set_highlights()

  local group = vim.api.nvim_create_augroup('glm_lsp', { clear = true })
  vim.api.nvim_create_autocmd('ColorScheme', { group = group, callback = set_highlights })
  vim.api.nvim_create_autocmd('VimResized', {
    group = group,
    callback = function()
      require('glm_lsp.float').relayout()
    end,
  })
  vim.api.nvim_create_autocmd('LspProgress', {
    group = group,
    callback = function(ev)
      local client = vim.lsp.get_client_by_id(ev.data.client_id)
      if client and client.name == NAME then
        require('glm_lsp.state').on_progress(ev.data.params)
      end
    end,
  })
  if config.single_server then
    vim.api.nvim_create_autocmd('LspAttach', {
      group = group,
      callback = function(ev)
        local client = vim.lsp.get_client_by_id(ev.data.client_id)
        if client and client.name == NAME then
          ensure_folder(client, ev.buf)
        end
      end,
    })
  end

  require('glm_lsp.commands').create_autocmds(group)
  require('glm_lsp.commands').create_user_commands()
  vim.lsp.config(NAME, lsp_config(config))
  vim.lsp.enable(NAME)
end

--- A short statusline string: "GLM: thinking…", "GLM: read_file a.py…", "GLM: idle · 23.4 tok/s".
function M.status()
  return require('glm_lsp.state').status()
end

-- The commands as functions, for mappings: opts as for a user command ({range, line1, line2, args}).
function M.explain(opts)
  require('glm_lsp.commands').explain(opts)
end
function M.refactor(opts)
  require('glm_lsp.commands').refactor(opts)
end
function M.fix(opts)
  require('glm_lsp.commands').fix(opts)
end
function M.ask(opts)
  require('glm_lsp.commands').ask(opts)
end
function M.cancel()
  require('glm_lsp.commands').cancel()
end

return M
