"""The workspace as the tools see it: confined paths, and file text from buffers or disk."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path, PurePosixPath

MAX_READ_BYTES = 32_000_000  # past this a file is not loaded at all; tools truncate what they show

Buffers = Callable[[str], "tuple[str, int] | None"]  # rel path -> (text, version) of an open buffer


class ToolError(Exception):
    """A tool call that cannot be done; the message goes back to the model as the tool result."""


def digest(text: str | None) -> str | None:
    return (
        None if text is None else hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    )


class Workspace:
    """Path confinement for one workspace root. Every tool path goes through `rel()`."""

    def __init__(self, root: Path, state_dir: Path, buffers: Buffers | None = None) -> None:
        self.root = root.resolve()
        self.state_dir = state_dir.resolve() if state_dir.exists() else state_dir.absolute()
        self.buffers: Buffers = buffers or (lambda _rel: None)

    def rel(self, path: object, *, writing: bool = False) -> str:
        """The normalised workspace-relative path, or ToolError when it points anywhere else."""
        if not isinstance(path, str) or not path.strip():
            raise ToolError("the path must be a non-empty string relative to the workspace root")
        if "\x00" in path:
            raise ToolError(f"the path {path!r} contains a NUL byte")
        raw = path.strip()
        if os.path.isabs(raw) or raw.startswith("~") or PurePosixPath(raw).is_absolute():
            raise ToolError(f"'{raw}' is absolute: use a path relative to the workspace root")
        parts = PurePosixPath(raw.replace("\\", "/")).parts
        if ".." in parts:
            raise ToolError(f"'{raw}' uses '..': paths must stay inside the workspace")
        target = self.root.joinpath(*parts)
        resolved = target.resolve()  # follows every symlink on the way
        if resolved != self.root and self.root not in resolved.parents:
            raise ToolError(f"'{raw}' leads outside the workspace (through a symbolic link)")
        rel = resolved.relative_to(self.root).as_posix() if resolved != self.root else "."
        if writing:
            self._check_writable(raw, resolved, rel)
        return rel

    def _check_writable(self, raw: str, resolved: Path, rel: str) -> None:
        if rel == "." or rel.split("/")[0] == ".git":
            raise ToolError(f"'{raw}' is inside .git (or the root itself): tools never write there")
        state = self.state_dir.resolve() if self.state_dir.exists() else self.state_dir
        if resolved == state or state in resolved.parents:
            raise ToolError(f"'{raw}' is inside glm-lsp's state directory: tools never write there")
        if resolved.exists() and not resolved.is_file():
            raise ToolError(f"'{raw}' exists and is not a regular file")

    def abs(self, rel: str) -> Path:
        return self.root / rel

    def read_base(self, rel: str) -> str | None:
        """Open buffer first, then disk; None when the file does not exist."""
        buffer = self.buffers(rel)
        if buffer is not None:
            return buffer[0]
        return read_disk(self.abs(rel), rel)

    def version(self, rel: str) -> int | None:
        buffer = self.buffers(rel)
        return None if buffer is None else buffer[1]


def read_disk(path: Path, rel: str) -> str | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ToolError(f"'{rel}' cannot be read: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ToolError(f"'{rel}' is a directory: use list_files")
    if not stat.S_ISREG(info.st_mode):
        raise ToolError(f"'{rel}' is not a regular file (device, socket or pipe)")
    if info.st_size > MAX_READ_BYTES:
        raise ToolError(
            f"'{rel}' is {info.st_size // 1_000_000} MB, too large to load; "
            "use search to find what you need in it"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ToolError(f"'{rel}' cannot be read: {exc.strerror}") from None
    if b"\x00" in data[:8192]:
        raise ToolError(f"'{rel}' is a binary file; only text files can be read or edited")
    return data.decode("utf-8", errors="replace")
