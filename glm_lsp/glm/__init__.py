"""The GLM-4.7 conversation format (no I/O): `render_prompt` is the contract's entry point."""

from glm_lsp.glm.format import render_prompt

__all__ = ["render_prompt"]
