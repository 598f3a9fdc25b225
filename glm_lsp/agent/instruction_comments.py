"""Instructions written in the code (issue 27.3): a comment line beginning `GLM:` in or just
above the selection is a refactor instruction a client can run whole from its code-action
menu, and the edit that carries it out takes the comment away."""

from __future__ import annotations

import re
from dataclasses import dataclass

from glm_lsp.agent.edits import Overlay
from glm_lsp.agent.files import ToolError

# A line that is only a comment: Python/shell/Ruby/YAML `#`, C-family/Go/Rust/JS `//`, Lua/SQL/
# Haskell `--`, Lisp/asm `;`, TeX/Erlang `%`, block comments `/* */`, `<!-- -->`, and the `*` of
# a doc block's inner lines. `GLM:` in capitals, so a comment that merely mentions glm is none.
_MARKER = r"(?:#+|//+!?|--+|;+|%+|/\*+|<!--|\*)"
_COMMENT = re.compile(rf"^\s*{_MARKER}")
_INSTRUCTION = re.compile(rf"^\s*{_MARKER}\s*GLM:\s*(?P<text>.*?)\s*(?:\*+/|-->)?\s*$")
LINE_BREAK = re.compile(r"\r\n|\r|\n")  # LSP's line breaks, so line numbers agree with the client's
MAX_ABOVE = 20  # comment lines looked through above the selection


@dataclass(frozen=True)
class InstructionComment:
    line: int  # 0-based
    text: str  # the whole line, as written (without its line break)
    instruction: str


def instruction_of(line: str) -> str | None:
    """The instruction of a `GLM:` comment line, None for any other line."""
    found = _INSTRUCTION.match(line)
    return (found["text"] or None) if found else None


def instruction_comments(text: str, first: int, last: int) -> list[InstructionComment]:
    """The `GLM:` comment lines among 0-based lines first..last and in the run of comment lines
    directly above `first`, top to bottom."""
    lines = LINE_BREAK.split(text)
    if first >= len(lines):  # a range past the end (a stale client's): nothing is there
        return []
    start = first
    while start > 0 and first - start < MAX_ABOVE and _COMMENT.match(lines[start - 1]):
        start -= 1
    out = []
    for n in range(start, min(last, len(lines) - 1) + 1):
        instruction = instruction_of(lines[n])
        if instruction is not None:
            out.append(InstructionComment(n, lines[n], instruction))
    return out


def without_comment(content: str, comment: InstructionComment) -> str | None:
    """`content` without the comment's line if it is still there as written (the line nearest
    where it was, should the edit have moved it); None when it is gone already."""
    lines = re.split(r"(?<=\n)|(?<=\r)(?!\n)", content)  # each line with its break
    same = [n for n, line in enumerate(lines) if line.rstrip("\r\n") == comment.text]
    if not same:
        return None
    n = min(same, key=lambda i: abs(i - comment.line))
    return "".join(lines[:n] + lines[n + 1 :])


def drop_comment(overlay: Overlay, path: str, comment: InstructionComment) -> bool:
    """Take the instruction's comment out of the request's pending edit of `path` (the model
    was told it would be), so the edit that carries out the instruction removes it."""
    content = overlay.read(path)
    kept = without_comment(content, comment) if content is not None else None
    if kept is None:
        return False
    try:
        overlay.write(path, kept)
    except ToolError:  # a file the agent may not edit: the comment stays, nothing else changes
        return False
    return True
