"""Reading files as text (skipping binary, huge and special files) and finding matching lines."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterable

BINARY_PROBE = 8192  # a NUL byte in this many leading bytes marks a binary file
_MAX_LINE = 300  # hits are clipped: one minified line would flood the model's context
# Regex features that make a whole-file pre-check disagree with per-line matching.
_NO_PREFILTER = ("\\A", "\\Z", "\\z", "(?<", "(?!")

Matcher = Callable[[str], Iterable[tuple[int, str]]]


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
    if len(data) > max_bytes or b"\0" in data[:BINARY_PROBE]:
        return None
    return data.decode("utf-8", errors="replace")


def compile_matcher(pattern: str, regex: bool) -> Matcher:
    """text -> (1-based line, line) for each matching line; ValueError for a bad pattern."""
    if not pattern:
        raise ValueError("search pattern is empty")
    if not regex:
        return lambda text: _literal_hits(text, pattern)
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    # One search over the whole file rejects most files without splitting them into lines.
    pre = None if any(s in pattern for s in _NO_PREFILTER) else re.compile(pattern, re.MULTILINE)

    def hits(text: str) -> Iterable[tuple[int, str]]:
        if pre is not None and not pre.search(text):
            return ()
        return ((i, s) for i, s in enumerate(text.split("\n"), 1) if rx.search(s))

    return hits


def format_hit(rel: str, line_no: int, line: str) -> str:
    line = line.rstrip()
    if len(line) > _MAX_LINE:
        line = line[:_MAX_LINE] + "…"
    return f"{rel}:{line_no}: {line}"


def _literal_hits(text: str, pattern: str) -> Iterable[tuple[int, str]]:
    # str.find over the whole text, counting newlines only up to each hit: fast on big files.
    idx, line_no, counted = text.find(pattern), 1, 0
    while idx >= 0:
        line_no += text.count("\n", counted, idx)
        counted = idx
        start = text.rfind("\n", 0, idx) + 1
        end = text.find("\n", idx)
        end = len(text) if end < 0 else end
        yield line_no, text[start:end]
        idx = text.find(pattern, end + 1) if end < len(text) else -1
