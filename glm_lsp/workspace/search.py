"""Reading files as text (skipping binary, huge and special files) and finding matching lines.

Regular expressions run on RE2 (linear time, and it releases the GIL), never on Python's
backtracking `re`: a model's `(a+)+$` on a long line must not freeze the server.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Callable, Iterable

import re2

from glm_lsp.textfile import NotText, decode, view

BINARY_PROBE = 8192  # a NUL byte in this many leading bytes marks a binary file
_MAX_LINE = 300  # hits are clipped: one minified line would flood the model's context
SEARCH_SECONDS = 10.0  # one search's time bound, over all files
MAX_PATTERN = 1000  # characters of a regex
# RE2 is linear in the text but also in its program: a huge program (`.{0,5000}`) could still
# take minutes on one 2 MB line, so its size is bounded too.
MAX_PROGRAM = 2000
_BLOCK = 1 << 16  # lines are pre-checked in blocks of about this many characters
# Regex features that make a block pre-check disagree with per-line matching.
_NO_PREFILTER = re.compile(r"\\[AzZ]|\(\?[a-zA-Z]*-")
# Python regex syntax RE2 lacks, named for the model (checked only when RE2 refuses a pattern).
_UNSUPPORTED = [
    ("(?=", "lookahead (?=...)"),
    ("(?!", "negative lookahead (?!...)"),
    ("(?<=", "lookbehind (?<=...)"),
    ("(?<!", "negative lookbehind (?<!...)"),
    ("(?P=", "backreference (?P=name)"),
    ("(?>", "atomic group (?>...)"),
    ("(?(", "conditional group (?(...)...)"),
    ("*+", "possessive quantifier *+"),
    ("++", "possessive quantifier ++"),
    ("?+", "possessive quantifier ?+"),
    ("\\Z", "\\Z (use \\z or $)"),
]
_BACKREF = re.compile(r"(?<!\\)(?:\\\\)*\\[1-9]")

Matcher = Callable[[str], Iterable[tuple[int, str]]]


class SearchStopped(Exception):
    """The search's time bound passed; the hits found so far stand."""


class Deadline:
    """A monotonic time bound shared by every file of one search."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._at = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() >= self._at:
            raise SearchStopped(f"[search stopped after {self.seconds:g} s; narrow the path]")


class SearchHits(list[str]):
    """Matching lines; `note` says why the search ended early, for the model to read."""

    note: str | None = None


def read_text_file(path: str, max_bytes: int) -> str | None:
    """Text of a regular file, or None if unreadable, binary or larger than `max_bytes`."""
    try:
        # O_NONBLOCK: opening a FIFO that replaced a file must not hang the agent.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes:
            return None
        # Sized to the file: a max_bytes-sized read would allocate 2 MB for every small file.
        data = os.read(fd, st.st_size + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        return None
    try:  # the tools' own reader: a cp1252 file is searched as read_file shows it, never U+FFFD
        return view(decode(data).text)
    except NotText:
        return None


def compile_matcher(pattern: str, regex: bool, deadline: Deadline | None = None) -> Matcher:
    """text -> (1-based line, line) for each matching line; ValueError for a bad pattern.
    With a deadline, matching raises SearchStopped once it has passed."""
    if not pattern:
        raise ValueError("search pattern is empty")
    check = deadline.check if deadline is not None else _no_check
    if not regex:
        return lambda text: _literal_hits(text, pattern, check)
    line_rx = _compile_re2(pattern)
    # A search over a block of lines rejects most of a file without splitting it into lines.
    block_rx = None if _NO_PREFILTER.search(pattern) else _compile_re2("(?m)" + pattern)
    return lambda text: _regex_hits(text, line_rx, block_rx, check)


def _compile_re2(pattern: str) -> re2._Regexp:
    if len(pattern) > MAX_PATTERN:
        raise ValueError(
            f"the regular expression has {len(pattern)} characters; at most {MAX_PATTERN}"
        )
    options = re2.Options()
    options.never_capture = True  # only "does this line match" is asked: no submatch work
    options.log_errors = False  # a bad pattern is the model's answer, not a line on stderr
    try:
        rx = re2.compile(pattern, options)
    except re2.error as exc:
        raise ValueError(_refusal(pattern, exc)) from None
    if rx.programsize > MAX_PROGRAM:
        raise ValueError(
            f"the regular expression {pattern[:80]!r} is too complex for search "
            f"(program size {rx.programsize}, at most {MAX_PROGRAM}); simplify it"
        )
    return rx


def _refusal(pattern: str, exc: re2.error) -> str:
    shown = repr(pattern) if len(pattern) <= 80 else repr(pattern[:80]) + "…"
    feature = next((name for token, name in _UNSUPPORTED if token in pattern), "")
    if not feature and _BACKREF.search(pattern):
        feature = "a backreference \\N"
    if feature:
        return (
            f"the regular expression {shown} uses {feature}, which search does not support: "
            "it takes RE2 syntax (no lookaround, no backreferences); rewrite the pattern"
        )
    raw = exc.args[0] if exc.args else exc
    detail = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return f"invalid regular expression {shown}: {detail}"


def _no_check() -> None:
    pass


def _regex_hits(
    text: str, line_rx: re2._Regexp, block_rx: re2._Regexp | None, check: Callable[[], None]
) -> Iterable[tuple[int, str]]:
    lines = text.split("\n")
    start = 0
    while start < len(lines):
        end, size = start + 1, len(lines[start])
        while end < len(lines) and size + len(lines[end]) < _BLOCK:
            size += len(lines[end]) + 1
            end += 1
        check()
        if block_rx is None or block_rx.search("\n".join(lines[start:end])):
            for number in range(start, end):
                check()
                if line_rx.search(lines[number]):
                    yield number + 1, lines[number]
        start = end


def format_hit(rel: str, line_no: int, line: str) -> str:
    line = line.rstrip()
    if len(line) > _MAX_LINE:
        line = line[:_MAX_LINE] + "…"
    return f"{rel}:{line_no}: {line}"


def _literal_hits(text: str, pattern: str, check: Callable[[], None]) -> Iterable[tuple[int, str]]:
    # str.find over the whole text, counting newlines only up to each hit: fast on big files.
    idx, line_no, counted = text.find(pattern), 1, 0
    while idx >= 0:
        check()
        line_no += text.count("\n", counted, idx)
        counted = idx
        start = text.rfind("\n", 0, idx) + 1
        end = text.find("\n", idx)
        end = len(text) if end < 0 else end
        yield line_no, text[start:end]
        idx = text.find(pattern, end + 1) if end < len(text) else -1
