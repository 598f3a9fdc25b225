-- CodeCompanion.nvim set up as its ACP docs say, with glm-lsp as the agent (the goose adapter
-- extended with our command), for tests/test_codecompanion.py.
local T = vim.json.decode(vim.env.GLM_CC_CONFIG)
vim.opt.runtimepath:prepend(T.plenary)
vim.opt.runtimepath:prepend(T.codecompanion)
vim.opt.swapfile = false
require("codecompanion").setup({
  adapters = {
    acp = {
      glm = function()
        return require("codecompanion.adapters").extend("goose", {
          name = "glm",
          formatted_name = "GLM",
          commands = { default = T.cmd },
        })
      end,
    },
  },
  interactions = { chat = { adapter = "glm" } },
})
