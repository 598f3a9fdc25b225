"""Command arguments to agent requests, for every front-end (the README's LSP commands).

Shapes are checked by the wire models (glm_lsp.wire.commands) through the converter; what needs
the workspace (URIs inside a folder, symlinks, the file's text) is checked here. Every problem
is a BadArguments naming the field; a front-end answers it as its invalid-params error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pygls.uris import to_fs_path

from glm_lsp.agent.instruction_comments import InstructionComment, instruction_comments
from glm_lsp.agent.prompts import AgentRequest
from glm_lsp.core.folder import Folder
from glm_lsp.wire.commands import COMMANDS, Diagnostic, Range, thinking_mode
from glm_lsp.wire.converter import converter, problems, show
from glm_lsp.workspace import format_outline

T = TypeVar("T")
KINDS = {"glm.explain": "explain", "glm.refactor": "refactor", "glm.fix": "fix", "glm.ask": "ask"}


class BadArguments(ValueError):
    """Arguments a command cannot take; the message names the command and the field."""

    def __init__(self, command: str, message: str) -> None:
        super().__init__(f"{command}: {message}")


class Workspace(Protocol):
    """What the core needs from a front-end to place a request: its folders."""

    def folder_for_path(self, path: Path) -> tuple[Folder, str] | None: ...

    def default_folder(self) -> Folder | None: ...


@dataclass
class Target:
    folder: Folder
    request: AgentRequest


def one_object(command: str, args: tuple[Any, ...] | list[Any]) -> dict[str, Any]:
    """The single object argument; no argument at all counts as {}."""
    if not args:
        return {}
    if len(args) > 1 or not isinstance(args[0], dict):
        raise BadArguments(command, 'takes exactly one object argument, e.g. [{"uri": ...}]')
    return args[0]


def parse(command: str, obj: dict[str, Any], model: type[T]) -> T:
    """`obj` as the wire model, or BadArguments for its first bad field."""
    try:
        return converter.structure(obj, model)
    except Exception as exc:
        found = problems(exc, model)
        if not found:
            raise BadArguments(command, f"arguments not accepted: {exc}") from None
        first = found[0]
        raise BadArguments(command, f"'{first.path}' {first.text}") from None


def arguments(command: str, args: tuple[Any, ...] | list[Any]) -> Any:
    """The command's typed argument (glm_lsp.wire.commands.COMMANDS)."""
    return parse(command, one_object(command, args), COMMANDS[command].arguments)


# -- URIs -----------------------------------------------------------------------------------------
def is_file_uri(uri: str) -> bool:
    """URI schemes are case-insensitive (RFC 3986): FILE:/// is a file URI too."""
    return uri[:5].lower() == "file:"


def local_path(uri: str) -> str | None:
    """The path of a local file: URI; None for untitled:, notebook cells, other schemes and
    other hosts (file://server/share is not this machine's file)."""
    if not is_file_uri(uri):
        return None
    parts = urlsplit(uri)
    if parts.netloc.lower() not in ("", "localhost"):
        return None
    return to_fs_path(urlunsplit(("file", "", parts.path, "", "")))


def check_uri(ws: Workspace, command: str, uri: str) -> None:
    """A file: URI of a path inside a workspace folder, also after following symlinks: the file
    goes into the prompt, so a link to /etc/passwd must not smuggle it there."""
    if not is_file_uri(uri):
        return  # resolve_uri names the scheme problem
    try:
        path = local_path(uri)
    except ValueError as exc:
        raise BadArguments(command, f"'uri' {show(uri)} is not a valid URI: {exc}") from None
    if path is None:
        raise BadArguments(command, f"'uri' {show(uri)} names another host; only local files")
    if not path or "\x00" in path:
        raise BadArguments(command, f"'uri' {show(uri)} does not name a file path")
    if ".." in PurePosixPath(path).parts:
        raise BadArguments(command, f"'uri' {show(uri)} contains '..'; send the normalised path")
    try:
        real = Path(os.path.realpath(path))
    except (OSError, ValueError) as exc:
        raise BadArguments(command, f"'uri' {show(uri)} cannot be resolved: {exc}") from None
    if ws.folder_for_path(Path(path)) is not None and ws.folder_for_path(real) is None:
        raise BadArguments(
            command, f"'uri' {show(uri)} leads outside the workspace folders (a symbolic link)"
        )
    if any(len(part.encode("utf-8", "surrogatepass")) > 255 for part in real.parts):
        raise BadArguments(command, f"'uri' {show(uri)} has a file name longer than 255 bytes")


def resolve_uri(ws: Workspace, command: str, uri: str) -> tuple[Folder, str]:
    """The folder and relative path of `uri`, checked (check_uri) and inside a folder."""
    check_uri(ws, command, uri)
    if not is_file_uri(uri):
        raise BadArguments(command, f"'uri' {show(uri)} is not a file: URI")
    path = local_path(uri)
    found = ws.folder_for_path(Path(path)) if path else None
    if found is None:
        raise BadArguments(command, f"'uri' {show(uri)} is outside the workspace folders")
    return found


def accepted_document(ws: Workspace, uri: str) -> tuple[Folder, str] | None:
    """Folder and path of a document the commands would take, else None: code actions are
    offered only where running them can work."""
    try:
        return resolve_uri(ws, "codeAction", uri)
    except BadArguments:
        return None


def folder_of(ws: Workspace, command: str, uri: str | None) -> Folder:
    """The folder of `uri`, else the first folder."""
    folder = resolve_uri(ws, command, uri)[0] if uri is not None else ws.default_folder()
    if folder is None:
        raise BadArguments(command, "there is no workspace folder")
    return folder


# -- ranges ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Span:
    """A range as line/character pairs (0-based), independent of any protocol's types."""

    start: tuple[int, int]
    end: tuple[int, int]

    @classmethod
    def of(cls, rng: Range) -> Span:
        return cls((rng.start.line, rng.start.character), (rng.end.line, rng.end.character))

    @property
    def empty(self) -> bool:
        return self.start == self.end


def symbol_span(folder: Folder, rel: str, text: str, line: int) -> tuple[Span, str] | None:
    """The innermost function/class around 0-based `line`, as a span of whole lines."""
    symbol = folder.index.enclosing_symbol(rel, text, line + 1)
    if symbol is None:
        return None
    lines = text.split("\n")
    last = min(symbol.end_line, len(lines)) - 1
    return Span(
        (symbol.start_line - 1, 0), (last, len(lines[last]))
    ), f"{symbol.kind} {symbol.name}"


def widen(folder: Folder, rel: str, text: str, span: Span | None) -> tuple[Span | None, str | None]:
    """An empty range means the enclosing definition."""
    if span is not None and span.empty:
        found = symbol_span(folder, rel, text, span.start[0])
        if found is not None:
            return found
    return span, None


def diagnostics_of(items: list[str | Diagnostic] | None) -> list[str]:
    out = []
    for d in items or []:
        if isinstance(d, str):
            out.append(d)
            continue
        where = f"line {d.range.start.line + 1}: " if d.range is not None else ""
        source = f" ({d.source})" if d.source is not None else ""
        out.append(f"{where}{d.message}{source}")
    return out


# -- requests -------------------------------------------------------------------------------------
def build_request(ws: Workspace, command: str, args: tuple[Any, ...] | list[Any]) -> Target:
    """An agent command's arguments (glm.explain/refactor/fix/ask) as a request on a folder."""
    kind = KINDS[command]
    a = arguments(command, args)
    instruction = getattr(a, "instruction", None) or getattr(a, "question", None) or ""
    thinking = thinking_mode(a.thinking)
    span = Span.of(a.range) if getattr(a, "range", None) is not None else None
    if span is not None and span.end < span.start:
        raise BadArguments(command, "'range' ends before it starts")
    if a.uri is None:
        folder = ws.default_folder()
        if folder is None:
            raise BadArguments(command, "there is no workspace folder to ask about")
        return Target(folder, AgentRequest(kind=kind, instruction=instruction, thinking=thinking))
    folder, rel = resolve_uri(ws, command, a.uri)
    text = folder.read(rel)
    if text is None:
        if (folder.root / rel).is_file():
            raise BadArguments(
                command, f"'uri' {show(a.uri)} is not a text file (binary, or unreadable)"
            )
        raise BadArguments(command, f"'uri' {show(a.uri)} does not exist")
    request = AgentRequest(kind=kind, instruction=instruction, path=rel, thinking=thinking)
    span, symbol = widen(folder, rel, text, span)
    if span is not None and not span.empty:
        (start, _), (end, end_char) = span.start, span.end
        end_line = end if end_char == 0 and end > start else end + 1
        lines = text.splitlines(keepends=True)
        request.start_line, request.end_line = start + 1, end_line
        request.selection = "".join(lines[start:end_line])
        request.symbol = symbol
    if kind == "refactor" and span is not None:
        request.instruction_comment = comment_of(text, span, instruction)
    if request.instruction_comment is not None:
        line = request.instruction_comment.line + 1
        request.notes.append(
            f"The instruction is the `GLM:` comment on line {line} of {rel}; leave that line as it "
            "is: it is removed for you when your edit lands."
        )
    request.outline = format_outline(folder.index.outline(rel, text))
    request.diagnostics = diagnostics_of(getattr(a, "diagnostics", None))
    return Target(folder, request)


def selection_lines(span: Span) -> tuple[int, int]:
    """The 0-based first and last line of a span; one that ends at the start of a line (a
    selection of whole lines) ends on the line before."""
    (start, _), (end, end_char) = span.start, span.end
    return start, end - 1 if end_char == 0 and end > start else end


def comment_of(text: str, span: Span, instruction: str) -> InstructionComment | None:
    """The `GLM:` comment in or above the selection that `instruction` came from, if any: a
    code action's, or the same words typed at a prompt; the edit then removes it."""
    wanted = instruction.strip()
    found = [
        c for c in instruction_comments(text, *selection_lines(span)) if c.instruction == wanted
    ]
    return found[0] if found else None
