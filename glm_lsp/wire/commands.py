"""Every glm.* command's argument and result, and the glm/stream notification (the README's LSP
commands). Arguments ignore unknown keys; results are exactly these keys."""

from typing import Annotated, Any, Literal

import attrs

from glm_lsp.wire.constraints import Number, Text, WireValueError
from glm_lsp.wire.converter import converter, wire
from glm_lsp.wire.records import Hunks, Stats, Verification

MAX_TEXT = 100_000  # question / instruction characters (~25k tokens)
MAX_URI = 4_096
MAX_POSITION = 2**31 - 1  # LSP uinteger

Uri = Annotated[str, Text(max_len=MAX_URI, describes="a file: URI")]
Prose = Annotated[str, Text(max_len=MAX_TEXT)]
Line = Annotated[int, Number(0, MAX_POSITION)]
# true/false are accepted for enabled/disabled.
Thinking = Literal["auto", "enabled", "disabled", True, False] | None
Note = Annotated[str, Text(max_len=MAX_TEXT, blank=True, describes="a string")]


@wire()
@attrs.frozen
class Position:
    line: Line
    character: Line


@wire()
@attrs.frozen
class Range:
    start: Position
    end: Position


@wire()
@attrs.frozen
class Diagnostic:
    """An LSP Diagnostic as far as the prompt needs it (its other keys are ignored)."""

    message: Note
    range: Range | None = None
    source: Note | None = None


DiagnosticItem = Note | Diagnostic  # a plain message, or an LSP Diagnostic


def _diagnostic_item(value: Any, _tp: Any) -> str | Diagnostic:
    if isinstance(value, str):
        return converter.structure(value, Note)
    if isinstance(value, dict):
        return converter.structure(value, Diagnostic)
    raise WireValueError(value, "a string or an object {message}")


converter.register_structure_hook(DiagnosticItem, _diagnostic_item)


@wire()
@attrs.frozen
class ExplainArgs:
    uri: Uri
    range: Range | None = None
    question: Prose | None = None
    thinking: Thinking = None


@wire()
@attrs.frozen
class RefactorArgs:
    uri: Uri
    instruction: Prose
    range: Range | None = None
    thinking: Thinking = None


@wire()
@attrs.frozen
class FixArgs:
    uri: Uri
    range: Range
    thinking: Thinking = None
    diagnostics: list[DiagnosticItem] | None = None


@wire()
@attrs.frozen
class AskArgs:
    question: Prose
    uri: Uri | None = None
    thinking: Thinking = None


@wire()
@attrs.frozen
class FolderArgs:
    """glm.status, glm.thinking.reset, glm.undo, glm.retry: the folder of `uri`, else the first."""

    uri: Uri | None = None


@wire()
@attrs.frozen
class ShowArgs:
    limit: Annotated[int, Number(1)] | None = None
    uri: Uri | None = None


@wire()
@attrs.frozen
class CancelArgs:
    pass


AgentArgs = ExplainArgs | RefactorArgs | FixArgs | AskArgs


# -- results --------------------------------------------------------------------------------------
@wire(omit_defaults=True, forbid_extra=True)
@attrs.frozen
class AnswerResult:
    """glm.explain and glm.ask. `reasoning`: one entry per completion that reasoned."""

    text: str
    reasoning: list[str]
    turn: int
    stats: Stats


@wire(omit_defaults=True, forbid_extra=True)
@attrs.frozen
class EditChange:
    """One item of an edit result's `changes`; `applied`/`hunks` after a reviewed edit;
    `sensitive`: a file that runs code on its own."""

    uri: str
    kind: str
    sensitive: bool = False
    applied: bool | None = None
    hunks: Hunks | None = None


@wire(omit_defaults=True, forbid_extra=True)
@attrs.frozen
class EditResult:
    """glm.refactor and glm.fix."""

    applied: bool
    changes: list[EditChange]
    summary: str
    turn: int
    stats: Stats
    failure_reason: str | None = None
    verification: Verification | None = None


@wire(forbid_extra=True)
@attrs.frozen
class StartedResult:
    """glm.explain/refactor/fix/ask for a client that did not declare
    `capabilities.experimental.glm.stream` (any editor but our plugins): answered at once, so no
    request holds the editor. `turn`: the turn the request expects to log (numbered when it runs);
    `status`: "queued" behind another request, else "started". The outcome comes the standard
    way: edits by workspace/applyEdit, the answer or summary as a markdown document opened with
    window/showDocument (else window/showMessage + window/logMessage), failures by
    window/showMessage, the streamed steps in the work-done progress; glm.cancel stops it."""

    turn: int
    status: Literal["started", "queued"]


@wire(omit_defaults=True, forbid_extra=True)
@attrs.frozen
class EditReply:
    """glm.undo and glm.retry (retry names the turn whose edit it sent again)."""

    applied: bool
    changes: list[EditChange]
    turn: int | None = None
    failure_reason: str | None = None


@wire(omit_defaults=True, forbid_extra=True)
@attrs.frozen
class McpServerStatus:
    """One MCP server of glm.status (issue "MCP tools")."""

    name: str
    source: Literal["settings", ".mcp.json", "acp"]
    transport: Literal["stdio", "http"]
    target: str  # the command line or URL, secrets masked
    state: str  # not started | starting | running | failed | crashed | stopped
    tools: list[str]  # as the model sees them: <server>__<tool>
    error: str | None = None
    restarts: int | None = None


@wire(forbid_extra=True)
@attrs.frozen
class StatusResult:
    backend: str
    model: str
    busy: bool
    queued: int
    turns: int
    stats: Stats | None
    mcpServers: list[McpServerStatus] = attrs.field(factory=list)


@wire(forbid_extra=True)
@attrs.frozen
class CancelResult:
    cancelled: int


@wire(forbid_extra=True)
@attrs.frozen
class ResetResult:
    archived: str | None  # where the log went; null when there was none


@wire(forbid_extra=True)
@attrs.frozen
class ThinkingTurn:
    turn: int
    command: str
    thinking: str
    reasoning: list[str]
    summary: str


@wire(forbid_extra=True)
@attrs.frozen
class StreamNotification:
    """`glm/stream`: a piece of the running request's output."""

    turn: int
    kind: Literal["reasoning", "content", "tool_call", "tool_result"]
    text: str


STREAM_METHOD = "glm/stream"


STREAM_CAPABILITY = "glm"  # capabilities.experimental.glm = {"stream": true}: our plugins


@attrs.frozen
class Command:
    arguments: type
    result: Any
    # the result a client without the stream capability gets at once (the agent commands)
    started: type | None = None


COMMANDS: dict[str, Command] = {
    "glm.explain": Command(ExplainArgs, AnswerResult, StartedResult),
    "glm.refactor": Command(RefactorArgs, EditResult, StartedResult),
    "glm.fix": Command(FixArgs, EditResult, StartedResult),
    "glm.ask": Command(AskArgs, AnswerResult, StartedResult),
    "glm.cancel": Command(CancelArgs, CancelResult),
    "glm.status": Command(FolderArgs, StatusResult),
    "glm.thinking.show": Command(ShowArgs, list[ThinkingTurn]),
    "glm.thinking.reset": Command(FolderArgs, ResetResult),
    "glm.undo": Command(FolderArgs, EditReply),
    "glm.retry": Command(FolderArgs, EditReply),
}


def thinking_mode(value: str | bool | None) -> str | None:
    """true/false are enabled/disabled."""
    if isinstance(value, bool):
        return "enabled" if value else "disabled"
    return value
