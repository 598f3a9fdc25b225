"""Command arguments (design section 4): checked field by field, turned into AgentRequests.

Every error names the field and says what it should hold, and goes back as a JSON-RPC
InvalidParams error; the server keeps serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcInvalidParams
from pygls.uris import to_fs_path

from glm_lsp.agent.prompts import AgentRequest
from glm_lsp.workspace import format_outline

if TYPE_CHECKING:
    from glm_lsp.server.app import Folder, GlmServer

THINKING = ("auto", "enabled", "disabled")


def bad(command: str, message: str) -> JsonRpcInvalidParams:
    return JsonRpcInvalidParams(f"{command}: {message}")


def clip(value: Any, limit: int = 80) -> str:
    """A bad value as an error quotes it: enough to recognise, never the whole megabyte."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_object(command: str, args: tuple[Any, ...]) -> dict[str, Any]:
    """The single object argument; no argument at all counts as {}."""
    if not args:
        return {}
    if len(args) > 1 or not isinstance(args[0], dict):
        raise bad(command, 'takes exactly one object argument, e.g. [{"uri": ...}]')
    return args[0]


def text_field(command: str, obj: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = obj.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        what = "is missing" if value is None else f"must be a non-empty string, not {clip(value)}"
        raise bad(command, f"'{name}' {what}")
    return value


def thinking_field(command: str, obj: dict[str, Any]) -> str | None:
    value = obj.get("thinking")
    if value is None:
        return None
    if isinstance(value, bool):
        return "enabled" if value else "disabled"
    if value not in THINKING:
        raise bad(command, f"'thinking' is {clip(value)}; accepted values: auto, enabled, disabled")
    return value


def limit_field(command: str, obj: dict[str, Any]) -> int | None:
    value = obj.get("limit")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad(command, f"'limit' is {clip(value)}; give a whole number >= 1")
    return value


def range_field(command: str, obj: dict[str, Any], *, required: bool) -> lsp.Range | None:
    value = obj.get("range")
    if value is None:
        if required:
            raise bad(command, "'range' is missing; give {start: {line, character}, end: ...}")
        return None
    try:
        start, end = value["start"], value["end"]
        positions = [start["line"], start["character"], end["line"], end["character"]]
    except (TypeError, KeyError):
        raise bad(
            command, "'range' must be {start: {line, character}, end: {line, character}}"
        ) from None
    if not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in positions):
        raise bad(command, "'range' positions must be whole numbers >= 0")
    rng = lsp.Range(
        lsp.Position(positions[0], positions[1]), lsp.Position(positions[2], positions[3])
    )
    if (rng.end.line, rng.end.character) < (rng.start.line, rng.start.character):
        raise bad(command, "'range' ends before it starts")
    return rng


def resolve_uri(
    server: GlmServer, command: str, obj: dict[str, Any], *, required: bool
) -> tuple[Folder, str] | None:
    uri = text_field(command, obj, "uri", required=required)
    if uri is None:
        return None
    if not uri.startswith("file:"):
        raise bad(command, f"'uri' {clip(uri)} is not a file: URI")
    path = to_fs_path(uri)
    found = server.folder_for_path(Path(path)) if path else None
    if found is None:
        raise bad(command, f"'uri' {uri} is outside the workspace folders")
    return found


def symbol_range(folder: Folder, rel: str, text: str, line: int) -> tuple[lsp.Range, str] | None:
    """The innermost function/class around 0-based `line`, as a range of whole lines."""
    symbol = folder.index.enclosing_symbol(rel, text, line + 1)
    if symbol is None:
        return None
    lines = text.split("\n")
    last = min(symbol.end_line, len(lines)) - 1
    rng = lsp.Range(lsp.Position(symbol.start_line - 1, 0), lsp.Position(last, len(lines[last])))
    return rng, f"{symbol.kind} {symbol.name}"


def widen(
    folder: Folder, rel: str, text: str, rng: lsp.Range | None
) -> tuple[lsp.Range | None, str | None]:
    """An empty range means the enclosing definition."""
    if rng is not None and rng.start == rng.end:
        found = symbol_range(folder, rel, text, rng.start.line)
        if found is not None:
            return found
    return rng, None


@dataclass
class Target:
    folder: Folder
    request: AgentRequest


def diagnostics_of(obj: dict[str, Any]) -> list[str]:
    out = []
    for d in obj.get("diagnostics") or []:
        if isinstance(d, str):
            out.append(d)
        elif isinstance(d, dict) and isinstance(d.get("message"), str):
            line = (d.get("range") or {}).get("start", {}).get("line")
            where = f"line {line + 1}: " if isinstance(line, int) else ""
            source = f" ({d['source']})" if isinstance(d.get("source"), str) else ""
            out.append(f"{where}{d['message']}{source}")
    return out


def build_request(server: GlmServer, command: str, kind: str, args: tuple[Any, ...]) -> Target:
    obj = one_object(command, args)
    question_key = {"refactor": "instruction", "explain": "question", "ask": "question"}.get(kind)
    instruction = None
    if question_key:
        instruction = text_field(command, obj, question_key, required=kind in ("refactor", "ask"))
    thinking = thinking_field(command, obj)
    rng = range_field(command, obj, required=kind == "fix")
    found = resolve_uri(server, command, obj, required=kind != "ask")
    if found is None:
        folder = server.default_folder()
        if folder is None:
            raise bad(command, "there is no workspace folder to ask about")
        return Target(
            folder, AgentRequest(kind=kind, instruction=instruction or "", thinking=thinking)
        )
    folder, rel = found
    text = folder.read(rel)
    if text is None:
        raise bad(command, f"'uri' {obj['uri']} does not exist")
    request = AgentRequest(kind=kind, instruction=instruction or "", path=rel, thinking=thinking)
    rng, symbol = widen(folder, rel, text, rng)
    if rng is not None and rng.start != rng.end:
        end_line = (
            rng.end.line
            if rng.end.character == 0 and rng.end.line > rng.start.line
            else rng.end.line + 1
        )
        lines = text.splitlines(keepends=True)
        request.start_line, request.end_line = rng.start.line + 1, end_line
        request.selection = "".join(lines[rng.start.line : end_line])
        request.symbol = symbol
    request.outline = format_outline(folder.index.outline(rel, text))
    request.diagnostics = diagnostics_of(obj)
    return Target(folder, request)
