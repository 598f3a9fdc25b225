"""How a tool result says it failed. The model reads the words; a front-end (ACP's tool-call
status, also when it replays a log, where only the text survives) asks `failed`, here only."""

from __future__ import annotations

ERROR = "Error: "  # the tool ran into a problem, or was refused
NOT_RUN = "Not run: "  # the request hit a limit before the call
MAX_CHARS = 60_000  # the most of one result the model reads (a file, a command, an MCP tool)


def error(why: str) -> str:
    """The result of a call that failed or was not allowed: `why`, after the marker."""
    return ERROR + why


def not_run(why: str) -> str:
    return NOT_RUN + why


def failed(result: str) -> bool:
    return result.startswith((ERROR, NOT_RUN))


def reason(result: str) -> str:
    """What a failed result says went wrong, without the marker."""
    return result.removeprefix(ERROR).removeprefix(NOT_RUN)
