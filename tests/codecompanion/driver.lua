-- Drives CodeCompanion's chat as a user does: type a prompt and press <CR>; answer each edit
-- question with its key (g2 accept, g3 reject); q stops a reply; a new chat resumes the session
-- from the /resume picker by its title. What the chat showed goes to T.out as JSON.
local T = vim.json.decode(vim.env.GLM_CC_CONFIG)
local R = { notes = {}, events = {} }
local function wait(what, fn)
  if not vim.wait(T.timeout_ms, fn, 20) then
    error("timed out waiting for " .. what, 2)
  end
end
local function count(event)
  return #vim.tbl_filter(function(e) return e == event end, R.events)
end
vim.notify = function(msg)
  table.insert(R.notes, msg)
end
for _, event in ipairs({ "ChatDone", "ChatStopped", "ToolApprovalRequested" }) do
  vim.api.nvim_create_autocmd("User", {
    pattern = "CodeCompanion" .. event,
    callback = function() table.insert(R.events, event) end,
  })
end

local function text(chat)
  return table.concat(vim.api.nvim_buf_get_lines(chat.bufnr, 0, -1, false), "\n")
end
local function press(chat, keys)
  vim.api.nvim_set_current_win(vim.fn.bufwinid(chat.bufnr))
  vim.cmd.normal(vim.keycode(keys))
end
local function send(chat, prompt)
  chat:add_buf_message({ role = "user", content = prompt })
  press(chat, "<CR>")
end

local ok, err = xpcall(function()
  vim.cmd("CodeCompanionChat")
  local chat = require("codecompanion").last_chat()

  -- 1. Two edits, two questions: accept a.py, reject pkg/b.py.
  send(chat, T.prompt)
  wait("the question for a.py", function() return count("ToolApprovalRequested") == 1 end)
  R.first_question = text(chat)
  press(chat, "g2")
  wait("the question for pkg/b.py", function() return count("ToolApprovalRequested") == 2 end)
  press(chat, "g3")
  wait("the answer", function() return count("ChatDone") == 1 end)
  R.chat = text(chat)

  -- 2. A long reply, stopped with q once it streams.
  send(chat, "Think it over")
  wait("the reasoning to stream", function()
    return select(2, text(chat):gsub("Let me think", "")) >= 3
  end)
  press(chat, "q")
  wait("the stop", function() return count("ChatStopped") == 1 and chat.current_request == nil end)
  R.stopped = text(chat)

  -- 3. A new chat resumes the first session, picked by its title.
  vim.cmd("CodeCompanionChat")
  local again = require("codecompanion").last_chat()
  assert(again ~= chat, "CodeCompanionChat opened no new chat")
  wait("the new chat's connection", function()
    return again.acp_connection ~= nil and again.acp_connection:is_ready()
  end)
  vim.ui.select = function(items, _, on_choice)
    R.picker = items
    for i, item in ipairs(items) do
      if item:find(T.title, 1, true) then
        return on_choice(item, i)
      end
    end
    on_choice(nil, nil)
  end
  local config = require("codecompanion.config")
  require("codecompanion.interactions.chat.slash_commands").new():execute({
    label = "resume",
    config = config.interactions.chat.slash_commands.resume,
  }, again)
  wait("the replay", function() return text(again):find(T.answer, 1, true) ~= nil end)
  R.resumed = text(again)
end, debug.traceback)
R.error = not ok and err or nil
vim.fn.writefile({ vim.json.encode(R) }, T.out)
vim.cmd("qa!")
