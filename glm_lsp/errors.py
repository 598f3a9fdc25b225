"""Errors the command line turns into exit codes (a module of its own so `python -m glm_lsp.cli`
and the commands share one class)."""

EXIT_OK, EXIT_USAGE, EXIT_BACKEND = 0, 2, 3


class UsageError(Exception):
    """A bad command line or setting: exit code 2."""
