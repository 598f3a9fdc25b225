-- Review before apply (setting review = "preview"): the server's workspace/applyEdit carries change
-- annotations that need confirmation; instead of applying it, a review tab lists the files. <CR>
-- opens a side-by-side diff (proposed | your buffer) to take hunks with do/dp; a/r accept or
-- reject a file, A/R everything, q finishes. Only what was accepted lands in the buffers; the
-- server then works out what landed from didChange, so the reply is simply applied = true.

local M = {
  current = nil, -- the review in progress: { files, client, encoding, finish, list_buf, tab }
}

--- True when the edit asks for confirmation (an annotation with needsConfirmation).
function M.wanted(edit)
  for _, note in pairs(type(edit) == 'table' and edit.changeAnnotations or {}) do
    if type(note) == 'table' and note.needsConfirmation then
      return true
    end
  end
  return false
end

local function uri_of(change)
  if change.textDocument then
    return change.textDocument.uri
  end
  return change.newUri or change.uri
end

-- The change without its annotation: Neovim would otherwise ask again per file (vim.fn.confirm).
local function plain(change)
  local copy = vim.deepcopy(change)
  copy.annotationId = nil
  for _, e in ipairs(copy.edits or {}) do
    e.annotationId = nil
  end
  return copy
end

--- The edit's changes grouped per file (annotation id, else URI), in the edit's order.
local function group(edit)
  local files, by_key = {}, {}
  for _, change in ipairs(edit.documentChanges or {}) do
    local key = change.annotationId
      or (change.edits and change.edits[1] and change.edits[1].annotationId)
      or uri_of(change)
    local file = by_key[key]
    if not file then
      local note = (edit.changeAnnotations or {})[key] or {}
      file = { key = key, label = note.label or vim.uri_to_fname(uri_of(change)), uri = uri_of(change), changes = {}, count = 0 }
      file.kind = change.kind or 'modify'
      by_key[key] = file
      table.insert(files, file)
    end
    table.insert(file.changes, plain(change))
    file.count = file.count + (change.edits and #change.edits or 1)
    if change.kind then
      file.kind = change.kind
    end
  end
  return files
end

local MARKS = { accept = '[a]', reject = '[r]', diffed = '[~]' }

local function render()
  local r = M.current
  if not r or not vim.api.nvim_buf_is_valid(r.list_buf) then
    return
  end
  local lines = { 'GLM review: <CR> diff (do/dp take hunks)  a/r file  A/R all  q finish', '' }
  for _, f in ipairs(r.files) do
    local n = f.count == 1 and '1 change' or (f.count .. ' changes')
    table.insert(lines, string.format('%s %-7s %s  (%s)', MARKS[f.decision] or '[ ]', f.kind, f.label, n))
  end
  vim.bo[r.list_buf].modifiable = true
  vim.api.nvim_buf_set_lines(r.list_buf, 0, -1, false, lines)
  vim.bo[r.list_buf].modifiable = false
  require('glm_lsp.state').changed()
end

local function file_at_cursor()
  local r = M.current
  local row = vim.api.nvim_win_get_cursor(0)[1]
  return r and r.files[row - 2]
end

local function decide(file, decision)
  if file then
    file.decision = decision
  end
  render()
end

--- Side by side: the proposed text (left, scratch) and the file's buffer (right), in diff mode.
local function open_diff(file)
  local r = M.current
  if not file or file.kind ~= 'modify' then
    return
  end
  local path = vim.uri_to_fname(file.uri)
  local buf = vim.fn.bufadd(path)
  vim.fn.bufload(buf)
  file.buf = buf
  file.original = file.original or vim.api.nvim_buf_get_lines(buf, 0, -1, false)
  local proposed = vim.api.nvim_create_buf(false, true)
  vim.api.nvim_buf_set_lines(proposed, 0, -1, false, file.original)
  for _, change in ipairs(file.changes) do
    if change.edits then
      vim.lsp.util.apply_text_edits(change.edits, proposed, r.encoding)
    end
  end
  vim.bo[proposed].modifiable = false
  vim.api.nvim_buf_set_name(proposed, 'glm-proposed://' .. file.label)
  vim.cmd('tabnew')
  vim.api.nvim_win_set_buf(0, buf)
  vim.cmd('diffthis')
  vim.cmd('leftabove vsplit')
  vim.api.nvim_win_set_buf(0, proposed)
  vim.cmd('diffthis')
  vim.cmd('wincmd l') -- the cursor in your buffer: `do` takes a hunk from the proposal
  local function back()
    local same = vim.deep_equal(vim.api.nvim_buf_get_lines(buf, 0, -1, false), file.original)
    file.decision = not same and 'diffed' or file.decision
    vim.cmd('diffoff!')
    vim.cmd('tabclose')
    if vim.api.nvim_buf_is_valid(proposed) then
      vim.api.nvim_buf_delete(proposed, { force = true })
    end
    if r.tab and vim.api.nvim_tabpage_is_valid(r.tab) then
      vim.api.nvim_set_current_tabpage(r.tab)
    end
    render()
  end
  for _, b in ipairs({ buf, proposed }) do
    vim.keymap.set('n', 'q', back, { buffer = b, nowait = true, desc = 'GLM: back to the review list' })
  end
end

local function finish()
  local r = M.current
  if not r then
    return
  end
  M.current = nil
  local touched = {}
  for _, f in ipairs(r.files) do
    if f.decision == 'accept' then
      if f.original and f.buf then -- diffed, then accepted whole: start from the original
        vim.api.nvim_buf_set_lines(f.buf, 0, -1, false, f.original)
      end
      vim.lsp.util.apply_workspace_edit({ documentChanges = f.changes }, r.encoding)
      touched[#touched + 1] = f
    elseif f.decision == 'diffed' then
      touched[#touched + 1] = f
    elseif f.original and f.buf then -- rejected or left after taking hunks: put it back
      vim.api.nvim_buf_set_lines(f.buf, 0, -1, false, f.original)
    end
  end
  -- Buffers the review loaded join the server, so it sees what landed (didOpen/didChange).
  for _, f in ipairs(touched) do
    local buf = vim.fn.bufnr(vim.uri_to_fname(f.uri))
    if buf ~= -1 and vim.api.nvim_buf_is_loaded(buf) and not vim.lsp.buf_is_attached(buf, r.client.id) then
      vim.lsp.buf_attach_client(buf, r.client.id)
    end
  end
  if r.tab and vim.api.nvim_tabpage_is_valid(r.tab) and #vim.api.nvim_list_tabpages() > 1 then
    vim.api.nvim_set_current_tabpage(r.tab)
    vim.cmd('tabclose')
  end
  require('glm_lsp.state').changed()
  r.finish({ applied = true })
end

--- Opens the review tab; `finish(result)` gets the applyEdit answer when the user presses q.
function M.open(edit, client, finish_cb)
  local r = {
    files = group(edit),
    client = client,
    encoding = client.offset_encoding or 'utf-16',
    finish = finish_cb,
  }
  M.current = r
  vim.cmd('tabnew')
  r.tab = vim.api.nvim_get_current_tabpage()
  r.list_buf = vim.api.nvim_get_current_buf()
  vim.bo[r.list_buf].buftype = 'nofile'
  vim.bo[r.list_buf].bufhidden = 'wipe'
  vim.api.nvim_buf_set_name(r.list_buf, 'glm-review://' .. tostring(r.list_buf))
  local function map(key, fn, desc)
    vim.keymap.set('n', key, fn, { buffer = r.list_buf, nowait = true, desc = 'GLM review: ' .. desc })
  end
  map('<CR>', function()
    open_diff(file_at_cursor())
  end, 'diff the file')
  map('a', function()
    decide(file_at_cursor(), 'accept')
  end, 'accept the file')
  map('r', function()
    decide(file_at_cursor(), 'reject')
  end, 'reject the file')
  map('A', function()
    for _, f in ipairs(r.files) do
      f.decision = 'accept'
    end
    render()
  end, 'accept everything')
  map('R', function()
    for _, f in ipairs(r.files) do
      f.decision = 'reject'
    end
    render()
  end, 'reject everything')
  map('q', finish, 'finish: apply what was accepted')
  render()
  vim.api.nvim_win_set_cursor(0, { math.min(3, vim.api.nvim_buf_line_count(r.list_buf)), 0 })
end

--- The workspace/applyEdit handler of the glm_lsp client: a review when the edit asks for one,
--- else Neovim's own. It runs in the coroutine Neovim answers server requests from, so it can
--- wait for the user without blocking the editor.
function M.handler(err, params, ctx)
  if not M.wanted(params and params.edit) then
    return vim.lsp.handlers['workspace/applyEdit'](err, params, ctx)
  end
  local co = coroutine.running()
  local client = vim.lsp.get_client_by_id(ctx.client_id)
  if not co or not client or M.current then
    return { applied = false, failureReason = 'a review is already open' }
  end
  M.open(params.edit, client, function(result)
    vim.schedule(function()
      coroutine.resume(co, result)
    end)
  end)
  return coroutine.yield()
end

--- "GLM: review (3 files)" while a review is open, else nil.
function M.status()
  local r = M.current
  if not r then
    return nil
  end
  return string.format('GLM: review (%d file%s)', #r.files, #r.files == 1 and '' or 's')
end

return M
