"""Typed wire models, defined once: settings (glm_lsp.config), command arguments and results,
stats, log records; one cattrs converter; the JSON schema the editors are checked against."""

from glm_lsp.wire.converter import converter, problems

__all__ = ["converter", "problems"]
