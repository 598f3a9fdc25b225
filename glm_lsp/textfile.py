"""Files as text and back, byte-exactly: the one reader and the one atomic writer.

Text is kept in the file's native form: a UTF-8 BOM stays as U+FEFF at the start and line endings
stay as they are (`\\r\\n` included), so encoding the text gives back the file's bytes. Tools show
the model `view()` of it. Files that are not UTF-8 are decoded with charset-normalizer so they can
be read, and marked with their encoding so nothing writes them back as UTF-8.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

BOM = "\ufeff"
UTF8 = "utf-8"
BINARY_PROBE = 8192  # a NUL byte in this many leading bytes marks a binary file
_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff")  # UTF-32 BOMs start with these too


class NotText(ValueError):
    """Bytes that are not text in any encoding charset-normalizer recognises (or binary)."""


@dataclass(frozen=True)
class Decoded:
    text: str  # native form: BOM as U+FEFF, line endings as in the file
    encoding: str  # "utf-8" (with or without BOM) or charset-normalizer's name, e.g. "cp1252"

    @property
    def editable(self) -> bool:
        return self.encoding == UTF8


_WESTERN = ("cp1252", "latin_1", "iso8859_15")  # preferred, in this order, among ties


def decode(data: bytes) -> Decoded:
    """Strict UTF-8 first; anything else is decoded by charset-normalizer, never with U+FFFD."""
    if b"\x00" in data[:BINARY_PROBE] and not data.startswith(_UTF16_32_BOMS):
        raise NotText("a binary file")
    try:
        return Decoded(data.decode(UTF8), UTF8)  # "utf-8" keeps a BOM as U+FEFF
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes  # imported late: only non-UTF-8 files need it

    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        raise NotText("neither UTF-8 nor an encoding charset-normalizer recognises")
    # Short Western text fits many single-byte code pages equally well (café: cp1250, cp1257,
    # even cp1006); among equally good guesses the most common one names it.
    tied = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    for name in _WESTERN:
        for match in tied:
            if name in match.could_be_from_charset:
                return Decoded(str(match), name)
    return Decoded(str(best), best.encoding)


def read(path: Path) -> Decoded | None:
    """A file's text, or None when it does not exist. OSError and NotText pass to the caller."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return decode(data)


def read_native(path: Path) -> str | None:
    """For comparisons against what the agent read (stale and undo checks): the native text, or
    None when the file is missing or not a regular text file."""
    try:
        if not path.is_file():
            return None
        decoded = read(path)
    except (OSError, NotText):
        return None
    return None if decoded is None else decoded.text


def read_view(path: Path) -> str | None:
    """A file as an editor shows it (no BOM, `\n` line ends), for request context; None when
    missing or not text."""
    text = read_native(path)
    return None if text is None else view(text)


def encode(text: str) -> bytes:
    """Native text back to the file's bytes (only UTF-8 files are ever written)."""
    return text.encode(UTF8)


def view(text: str) -> str:
    """What the model is shown: no BOM, `\\r\\n` as `\\n` (line numbers are unchanged)."""
    return text.removeprefix(BOM).replace("\r\n", "\n")


def eol_of(text: str) -> str:
    """The line ending most lines of `text` use."""
    crlf = text.count("\r\n")
    return "\r\n" if crlf and crlf * 2 >= text.count("\n") else "\n"


def default_mode() -> int:
    """The mode a new file gets from the umask, as `open()` would give it."""
    try:  # Linux says it without changing it: os.umask() would, for every thread, for a moment
        with open("/proc/self/status", encoding="ascii") as f:
            mask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def write_temp(path: Path, data: bytes, mode: int) -> Path:
    """`data` in a fsynced temp file beside `path` (same directory, so a rename is atomic)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace `path` with `data` in one rename. The mode is `mode`, else the existing file's,
    else the umask's (mkstemp's 0600 would make every new file private)."""
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = default_mode()
    tmp = write_temp(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def digest(text: str | None) -> str | None:
    """The identity of a text (None for no file): what stale checks and the shadow compare."""
    return (
        None if text is None else hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    )
