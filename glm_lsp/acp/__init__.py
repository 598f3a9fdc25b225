"""`glm-lsp acp`: the agent over the Agent Client Protocol (Zed, JetBrains, Neovim agent plugins,
Emacs), a thin adapter over the same core as the LSP server."""
