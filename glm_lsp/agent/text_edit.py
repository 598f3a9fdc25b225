"""edit_file and write_file on native text: the model writes `\\n`, the file keeps its `\\r\\n` and
its BOM, and every byte outside the replaced span stays as it was."""

from __future__ import annotations

from dataclasses import dataclass

from glm_lsp import textfile
from glm_lsp.agent.files import ToolError

MAX_WRITE_CHARS = 2_000_000  # one write_file content or edit_file new_text
MAX_REPORTED = 20  # line numbers an ambiguous old_text report lists


@dataclass(frozen=True)
class Replaced:
    text: str
    line: int  # 1-based line where the replaced text started
    old_lines: int
    new_lines: int


@dataclass(frozen=True)
class Ambiguous:
    count: int
    lines: list[int]  # the first MAX_REPORTED occurrences


def check_content(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise ToolError(f"{name} must be a string")
    if len(value) > MAX_WRITE_CHARS:
        raise ToolError(
            f"{name} is {len(value):,} characters; one write takes at most {MAX_WRITE_CHARS:,}: "
            "write the file in smaller parts"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ToolError(
            f"{name} holds a lone surrogate at {exc.start}, which is not text"
        ) from None


def replace_once(text: str, old_text: str, new_text: str) -> Replaced | Ambiguous | None:
    """Replace the one occurrence of old_text: as written, else with its line endings read as
    the file's (`\\n` matching `\\r\\n`). None when it does not occur."""
    count = text.count(old_text)
    if count == 1:
        start = text.index(old_text)
        return _replaced(text, start, start + len(old_text), old_text, new_text)
    if count > 1:
        return Ambiguous(count, _lines_of(text, old_text))
    view, old_view = text.replace("\r\n", "\n"), old_text.replace("\r\n", "\n")
    if view == text and old_view == old_text:
        return None
    count = view.count(old_view)
    if count == 0:
        return None
    if count > 1:
        return Ambiguous(count, _lines_of(view, old_view))
    at = view.index(old_view)
    start, end = _native_span(text, at, at + len(old_view))
    return _replaced(text, start, end, old_view, new_text)


def with_style_of(old: str, content: str) -> str:
    """write_file over an existing file: keep its BOM and its `\\r\\n` line endings."""
    if textfile.eol_of(old) == "\r\n":
        content = content.replace("\r\n", "\n").replace("\n", "\r\n")
    if old.startswith(textfile.BOM) and not content.startswith(textfile.BOM):
        content = textfile.BOM + content
    return content


def _replaced(text: str, start: int, end: int, old_text: str, new_text: str) -> Replaced:
    new = new_text.replace("\r\n", "\n")
    if _eol_at(text, start) == "\r\n":
        new = new.replace("\n", "\r\n")
    line = text.count("\n", 0, start) + 1
    old_n, new_n = old_text.count("\n") + 1, new_text.count("\n") + 1
    return Replaced(text[:start] + new + text[end:], line, old_n, new_n)


def _eol_at(text: str, pos: int) -> str:
    """The line ending of the line holding `pos` (a mixed file keeps each part's own)."""
    newline = text.find("\n", pos)
    if newline == -1:
        return textfile.eol_of(text)
    return "\r\n" if newline > 0 and text[newline - 1] == "\r" else "\n"


def _native_span(text: str, start: int, end: int) -> tuple[int, int]:
    """Positions in `text` of the span [start, end) of its CRLF-normalised form."""
    shifts: list[int] = []  # view position of the "\n" of each CRLF, in order
    at = text.find("\r\n")
    while at != -1 and at - len(shifts) < end:
        shifts.append(at - len(shifts))
        at = text.find("\r\n", at + 2)
    before_start = sum(1 for p in shifts if p < start)
    return start + before_start, end + len(shifts)


def _lines_of(text: str, needle: str) -> list[int]:
    """Lines of the first MAX_REPORTED occurrences, in one pass over the text."""
    lines, line, counted, at = [], 1, 0, text.find(needle)
    while at != -1 and len(lines) < MAX_REPORTED:
        line += text.count("\n", counted, at)
        counted = at
        lines.append(line)
        at = text.find(needle, at + max(len(needle), 1))
    return lines
