"""Command arguments (the README's LSP commands): checked field by field, turned into AgentRequests.

Every error names the field and says what it should hold, and goes back as a JSON-RPC
InvalidParams error; the server keeps serving.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

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


def thinking_field(obj: dict[str, Any]) -> str | None:
    """The request's thinking mode (check_arguments vetted it); true/false mean enabled/disabled."""
    value = obj.get("thinking")
    if isinstance(value, bool):
        return "enabled" if value else "disabled"
    return value


def limit_field(obj: dict[str, Any]) -> int | None:
    return obj.get("limit")  # check_arguments vetted it


def range_field(command: str, obj: dict[str, Any], *, required: bool) -> lsp.Range | None:
    value = obj.get("range")  # its shape was vetted by check_arguments
    if value is None:
        if required:
            raise bad(command, "'range' is missing; give {start: {line, character}, end: ...}")
        return None
    start, end = value["start"], value["end"]
    rng = lsp.Range(
        lsp.Position(start["line"], start["character"]), lsp.Position(end["line"], end["character"])
    )
    if (rng.end.line, rng.end.character) < (rng.start.line, rng.start.character):
        raise bad(command, "'range' ends before it starts")
    return rng


# -- argument checks ------------------------------------------------------------------------------
# Run before anything is built from the arguments, so malformed input of any shape gets an InvalidParams
# error naming the field, never an internal error with a traceback, and never an echo of a
# megabyte of junk: every value quoted in a message is clipped.
MAX_TEXT = 100_000  # question / instruction characters (~25k tokens)
MAX_URI = 4_096
MAX_POSITION = 2**31 - 1  # LSP uinteger
TEXT_FIELDS = ("uri", "question", "instruction", "thinking")


def _kind(value: Any) -> str:
    kinds = {dict: "an object", list: "an array", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number" if isinstance(value, (int, float)) else "a value")


def check_arguments(ls: GlmServer, command: str, args: tuple[Any, ...]) -> None:
    if len(args) != 1 or not isinstance(args[0], dict):
        return  # one_object() says what is wrong with the shape
    obj = args[0]
    for name in TEXT_FIELDS:
        value = obj.get(name)
        if value is None or (name == "thinking" and isinstance(value, bool)):
            continue
        if not isinstance(value, str):
            raise bad(command, f"'{name}' must be a string, not {_kind(value)} ({clip(value)})")
        if len(value) > (MAX_URI if name == "uri" else MAX_TEXT):
            raise bad(command, f"'{name}' is {len(value)} characters long, more than accepted")
        check_encodable(command, name, value)
        if name == "thinking" and value not in THINKING:
            raise bad(
                command, f"'thinking' is {clip(value)}; accepted values: auto, enabled, disabled"
            )
    limit = obj.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise bad(command, f"'limit' is {clip(limit)}; give a whole number >= 1")
    if obj.get("uri") is not None:
        check_uri(ls, command, obj["uri"])
    if obj.get("range") is not None:
        check_range(command, "range", obj["range"])
    if obj.get("diagnostics") is not None:
        check_diagnostics(command, obj["diagnostics"])


def check_encodable(command: str, name: str, value: str) -> None:
    """JSON can carry lone UTF-16 surrogates; the tokenizer and the log cannot."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise bad(command, f"'{name}' has an unpaired surrogate at index {exc.start}") from None


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


def check_uri(ls: GlmServer, command: str, uri: str) -> None:
    """A file: URI of a path inside a workspace folder, also after following symlinks: the file
    goes into the prompt, so a link to /etc/passwd must not smuggle it there."""
    if not is_file_uri(uri):
        return  # requests.resolve_uri names the scheme problem
    try:
        path = local_path(uri)
    except ValueError as exc:
        raise bad(command, f"'uri' {clip(uri)} is not a valid URI: {exc}") from None
    if path is None:
        raise bad(command, f"'uri' {clip(uri)} names another host; only local files are served")
    if not path or "\x00" in path:
        raise bad(command, f"'uri' {clip(uri)} does not name a file path")
    if ".." in PurePosixPath(path).parts:
        raise bad(command, f"'uri' {clip(uri)} contains '..'; send the normalised path")
    try:
        real = Path(os.path.realpath(path))
    except (OSError, ValueError) as exc:
        raise bad(command, f"'uri' {clip(uri)} cannot be resolved: {exc}") from None
    if ls.folder_for_path(Path(path)) is not None and ls.folder_for_path(real) is None:
        raise bad(
            command, f"'uri' {clip(uri)} leads outside the workspace folders (a symbolic link)"
        )
    if any(len(part.encode("utf-8", "surrogatepass")) > 255 for part in real.parts):
        raise bad(command, f"'uri' {clip(uri)} has a file name longer than 255 bytes")


def check_range(command: str, name: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise bad(command, f"'{name}' must be an object {{start, end}}, not {_kind(value)}")
    for end in ("start", "end"):
        position = value.get(end)
        if not isinstance(position, dict):
            raise bad(command, f"'{name}.{end}' must be an object {{line, character}}")
        for key in ("line", "character"):
            n = position.get(key)
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_POSITION:
                raise bad(
                    command,
                    f"'{name}.{end}.{key}' is {clip(n)}; give a whole number from 0 to "
                    f"{MAX_POSITION}",
                )


def check_diagnostics(command: str, value: Any) -> None:
    if not isinstance(value, list):
        raise bad(command, f"'diagnostics' must be an array, not {_kind(value)}")
    for i, item in enumerate(value):
        if isinstance(item, str):
            check_encodable(command, f"diagnostics[{i}]", item)
            continue
        if not isinstance(item, dict) or not isinstance(item.get("message"), str):
            raise bad(command, f"'diagnostics[{i}]' must be a string or an object with a message")
        check_encodable(command, f"diagnostics[{i}].message", item["message"])
        if item.get("range") is not None:
            check_range(command, f"diagnostics[{i}].range", item["range"])
        source = item.get("source")
        if source is not None and not isinstance(source, str):
            raise bad(command, f"'diagnostics[{i}].source' must be a string")
        if source is not None:
            check_encodable(command, f"diagnostics[{i}].source", source)


def resolve_uri(
    server: GlmServer, command: str, obj: dict[str, Any], *, required: bool
) -> tuple[Folder, str] | None:
    uri = text_field(command, obj, "uri", required=required)
    if uri is None:
        return None
    if not is_file_uri(uri):
        raise bad(command, f"'uri' {clip(uri)} is not a file: URI")
    path = local_path(uri)
    found = server.folder_for_path(Path(path)) if path else None
    if found is None:
        raise bad(command, f"'uri' {clip(uri)} is outside the workspace folders")
    return found


def accepted_document(server: GlmServer, command: str, uri: str) -> tuple[Folder, str] | None:
    """Folder and path of a document the commands would take, else None: code actions are
    offered only where running them can work."""
    try:
        check_uri(server, command, uri)
        return resolve_uri(server, command, {"uri": uri}, required=True)
    except JsonRpcInvalidParams:
        return None


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
    check_arguments(server, command, args)
    question_key = {"refactor": "instruction", "explain": "question", "ask": "question"}.get(kind)
    instruction = None
    if question_key:
        instruction = text_field(command, obj, question_key, required=kind in ("refactor", "ask"))
    thinking = thinking_field(obj)
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
        if (folder.root / rel).is_file():
            raise bad(
                command, f"'uri' {clip(obj['uri'])} is not a text file (binary, or unreadable)"
            )
        raise bad(command, f"'uri' {clip(obj['uri'])} does not exist")
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
