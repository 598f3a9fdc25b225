"""glm-lsp: a GLM-4.7 coding agent behind the Language Server Protocol."""

__version__ = "0.1.0"
