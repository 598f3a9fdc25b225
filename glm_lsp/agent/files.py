"""The workspace as the tools see it: confined paths, and file text from buffers or disk."""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from glm_lsp import textfile
from glm_lsp.textfile import Decoded

MAX_READ_BYTES = 32_000_000  # past this a file is not loaded at all; tools truncate what they show
MAX_SHOWN_PATH = 160  # error texts quote at most this much of a hostile path
# Code points HFS+ ignores in names, so ".g\u200cit" is ".git" there (git's CVE-2014-9390 list).
_IGNORABLE = dict.fromkeys(
    map(
        ord,
        "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u206a\u206b"
        "\u206c\u206d\u206e\u206f\ufeff",
    )
)
_DRIVE = re.compile(r"^[A-Za-z]:(/|$)")

Buffers = Callable[[str], "tuple[str, int] | None"]  # rel path -> (text, version) of an open buffer


class ToolError(Exception):
    """A tool call that cannot be done; the message goes back to the model as the tool result."""


def shown(path: str) -> str:
    """A path as error texts quote it: bounded, so a huge hostile path cannot flood the model."""
    return path if len(path) <= MAX_SHOWN_PATH else path[:MAX_SHOWN_PATH] + f"…({len(path)} chars)"


# Version control internals (hooks run code); each with its 8.3 short name on Windows.
_VCS_DIRS = {".git": "git~1", ".hg": "hg~1", ".jj": "jj~1", ".svn": "svn~1"}
_VCS_NAMES = {alias: name for name, short in _VCS_DIRS.items() for alias in (name, short)}


def vcs_dir(part: str) -> str | None:
    """Which version-control directory (`.git`, `.hg`, `.jj`, `.svn`) a name is on some file
    system: any case (macOS, Windows), HFS+ ignorable code points, trailing dots or spaces
    (Windows), the 8.3 short name (GIT~1); None for any other name."""
    name = unicodedata.normalize("NFC", part.translate(_IGNORABLE)).casefold().rstrip(". ")
    return _VCS_NAMES.get(name)


def _under(path: Path, base: Path) -> bool:
    """path is base or below it, compared case-insensitively: on macOS and Windows `.GLM-LSP`
    is the state dir, and a false alarm on a case-sensitive disk only refuses a write."""
    p, b = os.path.normcase(str(path)).casefold(), os.path.normcase(str(base)).casefold()
    return p == b or p.startswith(b.rstrip(os.sep) + os.sep)


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
            raise ToolError(f"the path {shown(path)!r} contains a NUL byte")
        raw = path.strip()
        posix = raw.replace("\\", "/")  # models write Windows paths too: treat \ as a separator
        parts = PurePosixPath(posix).parts
        normal = "/".join(parts)  # "./~" is "~" once normalised: check both spellings
        if (
            os.path.isabs(raw)
            or any(p.startswith(("/", "~")) or _DRIVE.match(p) for p in (posix, normal))
            or PurePosixPath(posix).is_absolute()
        ):
            raise ToolError(
                f"'{shown(raw)}' is absolute: use a path relative to the workspace root"
            )
        if ".." in parts:
            raise ToolError(f"'{shown(raw)}' uses '..': paths must stay inside the workspace")
        target = self.root.joinpath(*parts)
        try:
            resolved = target.resolve()  # follows every symlink on the way
        except RuntimeError:  # Python < 3.13 reports a symlink loop this way
            raise ToolError(f"'{shown(raw)}' is a symbolic link loop") from None
        except OSError as exc:
            raise ToolError(f"'{shown(raw)}' cannot be resolved: {exc.strerror}") from None
        if resolved != self.root and self.root not in resolved.parents:
            raise ToolError(
                f"'{shown(raw)}' leads outside the workspace (through a symbolic link to "
                f"{shown(str(resolved))})"
            )
        rel = resolved.relative_to(self.root).as_posix() if resolved != self.root else "."
        if writing:
            self._check_writable(shown(raw), parts, resolved, rel)
        return rel

    def _check_writable(self, raw: str, parts: tuple[str, ...], resolved: Path, rel: str) -> None:
        if rel == ".":
            raise ToolError(f"'{raw}' is the workspace root itself, not a file")
        # Both spellings: the one asked for and the one a symlink leads to.
        vcs = next(filter(None, map(vcs_dir, (*parts, *rel.split("/")))), None)
        if vcs is not None:
            raise ToolError(f"'{raw}' is inside {vcs}: tools never write version control internals")
        if self._in_state_dir(resolved):
            raise ToolError(f"'{raw}' is inside glm-lsp's state directory: tools never write there")
        try:
            info = resolved.lstat()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ToolError(f"'{raw}' cannot be written: {exc.strerror}") from None
        if not stat.S_ISREG(info.st_mode):
            raise ToolError(f"'{raw}' exists and is not a regular file (a directory or device)")
        if info.st_nlink > 1:
            # The editor writes in place: a hard link would carry the edit to its other names,
            # which may lie outside the workspace.
            raise ToolError(
                f"'{raw}' is a hard link with {info.st_nlink} names (another may be outside the "
                "workspace): tools never write through hard links"
            )

    def _in_state_dir(self, resolved: Path) -> bool:
        state = self.state_dir.resolve() if self.state_dir.exists() else self.state_dir
        if _under(resolved, state):
            return True
        try:  # by inode too, for spellings a string compare misses (Unicode normalisation)
            state_id = os.stat(state)
        except OSError:
            return False
        for ancestor in (resolved, *resolved.parents):
            if ancestor == self.root or self.root not in ancestor.parents:
                break
            try:
                if os.path.samestat(os.stat(ancestor), state_id):
                    return True
            except OSError:
                continue
        return False

    def abs(self, rel: str) -> Path:
        return self.root / rel

    def load(self, rel: str) -> Decoded | None:
        """Open buffer first (the editor decoded it and will encode it), then disk; None when the
        file does not exist."""
        buffer = self.buffers(rel)
        if buffer is not None:
            return Decoded(buffer[0], textfile.UTF8)
        return load_disk(self.abs(rel), rel)

    def read_base(self, rel: str) -> str | None:
        loaded = self.load(rel)
        return None if loaded is None else loaded.text

    def version(self, rel: str) -> int | None:
        buffer = self.buffers(rel)
        return None if buffer is None else buffer[1]


def load_disk(path: Path, rel: str) -> Decoded | None:
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
        return textfile.read(path)
    except OSError as exc:
        raise ToolError(f"'{rel}' cannot be read: {exc.strerror}") from None
    except textfile.NotText as exc:
        raise ToolError(f"'{rel}' is {exc}; only text files can be read or edited") from None
