"""glm-lsp's own state, opened safely: the thinking log, the KV cache, permissions, sessions, undo
records, MCP logs and token files all go through here.

A workspace is untrusted, so nothing here follows a symbolic link or uses a file or folder another
user owns: such a path is refused with one sentence that says what to do, and is never followed
or chmod-ed. Two places hold state:
- the workspace's state dir (`<workspace>/.glm-lsp`): the log and the KV cache, used only when
  this glm-lsp created it on this machine (recorded in the user's state); a committed, cloned or
  unpacked one is left alone and the conversation is kept in the user's state instead;
- the user's own state (`$XDG_STATE_HOME/glm-lsp`, one folder per workspace keyed by its real
  path, 0700): whatever grants anything (approvals, undo records, session metadata).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import stat
from pathlib import Path
from typing import TextIO

from glm_lsp import textfile
from glm_lsp.errors import UsageError

log = logging.getLogger(__name__)

IGNORE_ALL = "*\n"  # a state dir's .gitignore: never committed
OWNER_FILE = ".owner"  # a random id that ties a state dir to the record in the user's state
CREATED_RECORDS = "state-dirs"  # in the user's state: one file per state dir this glm-lsp made
FALLBACK = "conversation"  # the conversation of a workspace whose .glm-lsp is not ours
_OPEN = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # a planted FIFO must not block a read
# workspace real path -> what the user was told of its state dir (once per process)
_told_foreign: dict[Path, str] = {}


class StateRefused(UsageError):
    """A state path that is a link, not ours, or not a regular file or folder."""


def _refusal(path: Path, why: str) -> StateRefused:
    return StateRefused(
        f"glm-lsp will not use {path}: it is {why}, and glm-lsp keeps its state only in real "
        "files and folders of yours; remove or rename it (nothing it points to was touched)"
    )


def _check(path: Path, info: os.stat_result, want_dir: bool) -> None:
    if stat.S_ISLNK(info.st_mode):
        raise _refusal(path, "a symbolic link")
    if want_dir and not stat.S_ISDIR(info.st_mode):
        raise _refusal(path, "not a folder")
    if not want_dir and not stat.S_ISREG(info.st_mode):
        raise _refusal(path, "not a regular file")
    if info.st_uid != os.getuid():
        raise _refusal(path, f"owned by another user (uid {info.st_uid})")


def check_path(path: Path, *, want_dir: bool) -> bool:
    """Whether `path` exists; raises StateRefused when it is a link or not ours."""
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    _check(path, info, want_dir)
    return True


def private_dir(path: Path, top: Path | None = None) -> Path:
    """`path` as a real folder of ours, created 0700 where missing; every component from `top`
    (default: `path` alone) down is checked, so a linked `sessions/` is refused too."""
    chain = [path]
    while top is not None and chain[-1] != top and top in chain[-1].parents:
        chain.append(chain[-1].parent)
    for folder in reversed(chain):
        if not check_path(folder, want_dir=True):
            folder.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):  # made meanwhile: checked below
                os.mkdir(folder, 0o700)
            check_path(folder, want_dir=True)
    return path


def _open(path: Path, flags: int, *, parent: bool = True) -> int:
    """An fd on a regular file of ours at `path`, never through a link; `parent`: its folder is
    checked too (it must exist)."""
    if parent and not check_path(path.parent, want_dir=True):
        raise FileNotFoundError(errno.ENOENT, "no such folder", str(path.parent))
    try:
        fd = os.open(path, flags | _OPEN, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refusal(path, "a symbolic link") from None
        if exc.errno == errno.ENXIO:  # a FIFO with no reader
            raise _refusal(path, "not a regular file") from None
        raise
    try:
        _check(path, os.fstat(fd), want_dir=False)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bytes(path: Path, *, parent: bool = True) -> bytes | None:
    """The file's bytes, or None when it (or its folder) does not exist."""
    try:
        fd = _open(path, os.O_RDONLY, parent=parent)
    except (FileNotFoundError, NotADirectoryError):
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read()


def read_json(path: Path) -> object | None:
    """Parsed JSON, or None when missing or unreadable (said once in the log)."""
    try:
        data = read_bytes(path)
        return None if data is None else json.loads(data)
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return None


def append(path: Path, data: bytes, keep: int | None = None) -> None:
    """Append `data` (fsynced) to a private file; `keep`: first cut the file to that many bytes
    (a torn tail left by a crash)."""
    fd = _open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        if keep is not None and os.fstat(fd).st_size > keep:
            os.ftruncate(fd, keep)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        os.fchmod(fd, 0o600)  # the fd, never a path: only the file we checked
    finally:
        os.close(fd)


def open_lock(path: Path) -> int:
    """An fd on a private lock file (created 0600) for flock; close-on-exec, like every fd here."""
    fd = _open(path, os.O_RDWR | os.O_CREAT)
    os.fchmod(fd, 0o600)
    return fd


def open_append_text(path: Path) -> TextIO:
    """A private log file opened for appending (an MCP server's stderr)."""
    fd = _open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "a", encoding="utf-8")


def write_private(path: Path, data: bytes) -> None:
    """Replace a private state file in one rename (textfile's atomic writer), refusing a link or
    another user's file in its place."""
    if not check_path(path.parent, want_dir=True):
        raise FileNotFoundError(errno.ENOENT, "no such folder", str(path.parent))
    check_path(path, want_dir=False)
    textfile.atomic_write(path, data, 0o600)


def write_json(path: Path, data: object) -> None:
    write_private(path, (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


# -- the user's own state -------------------------------------------------------------------


def user_state_home() -> Path:
    """$XDG_STATE_HOME/glm-lsp, else ~/.local/state/glm-lsp."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "glm-lsp"


def user_state() -> Path:
    """The user's glm-lsp state folder, created 0700."""
    return private_dir(user_state_home())


def workspace_state(root: Path) -> Path:
    """The user's folder for one workspace: a hash of its real path plus a readable tail, with
    the path recorded inside (`workspace.json`), created 0700."""
    real = root.resolve()
    tail = re.sub(r"[^A-Za-z0-9._-]", "_", real.name)[:40] or "root"
    key = hashlib.sha256(os.fsencode(real)).hexdigest()[:16]
    home = user_state()
    folder = private_dir(home / "workspaces" / f"{tail}-{key}", top=home)
    if not check_path(folder / "workspace.json", want_dir=False):
        write_json(folder / "workspace.json", {"v": 1, "path": str(real)})
    return folder


# -- the workspace's state dir --------------------------------------------------------------


def _identity(state_dir: Path) -> dict[str, object] | None:
    try:
        info = os.lstat(state_dir)
        owner = read_bytes(state_dir / OWNER_FILE)
    except (OSError, StateRefused):
        return None
    if owner is None or not stat.S_ISDIR(info.st_mode):
        return None
    return {"dev": info.st_dev, "ino": info.st_ino, "id": owner.decode("ascii", "replace")}


def _record_path(state_dir: Path) -> Path:
    """One record a state dir, so processes creating different ones never race on one file."""
    name = hashlib.sha256(os.fsencode(_key(state_dir))).hexdigest()[:32]
    return user_state() / CREATED_RECORDS / f"{name}.json"


def created_here(state_dir: Path) -> bool:
    """Whether this glm-lsp created `state_dir` on this machine: the user's record names it with
    the same device, inode and random id (a clone at the same path has none of them)."""
    identity = _identity(state_dir)
    if identity is None:
        return False
    return read_json(_record_path(state_dir)) == {"path": _key(state_dir), **identity}


def _key(state_dir: Path) -> str:
    """The state dir's path with its parent resolved (not itself: it may be a planted link)."""
    return str(state_dir.absolute().parent.resolve() / state_dir.name)


def _record_created(state_dir: Path) -> None:
    append(state_dir / OWNER_FILE, secrets.token_hex(16).encode("ascii"))
    record = _record_path(state_dir)
    private_dir(record.parent)
    write_json(record, {"path": _key(state_dir), **(_identity(state_dir) or {})})


def prepare_state_dir(state_dir: Path) -> Path:
    """The state dir, private, with a .gitignore holding `*` so it never gets committed. Created
    (and recorded as ours) when missing; an existing one that is a link or not ours is refused."""
    if check_path(state_dir, want_dir=True):
        _tighten(state_dir)
    else:
        state_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(state_dir, 0o700)
            _record_created(state_dir)
        except FileExistsError:  # another process made it meanwhile
            check_path(state_dir, want_dir=True)
    ignore = state_dir / ".gitignore"
    if not check_path(ignore, want_dir=False):
        write_private(ignore, IGNORE_ALL.encode("ascii"))
    return state_dir


def _tighten(state_dir: Path) -> None:
    """A state dir of ours left readable by others (a umask of 022) holds the log and the KV
    cache: make it 0700. Any other folder (a stateDir set to a shared one) is reported, never
    chmod-ed."""
    info = os.lstat(state_dir)
    if info.st_mode & 0o077 == 0:
        return
    if created_here(state_dir):
        fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
    else:
        log.warning(
            "state dir %s is readable by other users and holds the thinking log; "
            "run chmod 700 on it or set stateDir to a private folder",
            state_dir,
        )


def conversation_state_dir(candidate: Path, root: Path) -> Path:
    """The state dir to use for `root`: `candidate` unless it is inside the workspace and this
    glm-lsp did not create it (committed, cloned, unpacked): then it is left alone, the user is
    told once, and the conversation is kept in the user's state instead."""
    real_root = root.resolve()
    parent = candidate.absolute().parent.resolve()
    if parent != real_root and real_root not in parent.parents:
        return candidate  # the user's own stateDir, outside the workspace
    if not os.path.lexists(candidate) or created_here(candidate):
        return candidate
    fallback = workspace_state(real_root) / FALLBACK
    if real_root not in _told_foreign:
        _told_foreign[real_root] = told = (
            f"{candidate} was not created by glm-lsp on this machine (committed, cloned or "
            "unpacked), so nothing in it is loaded, followed or changed; this workspace's "
            f"conversation is kept in {fallback} (`glm-lsp log {real_root}` shows it)"
        )
        log.warning("%s", told)
    return fallback


def foreign_note(root: Path) -> str | None:
    """What the user was told about `root`'s state dir not being ours, for a front-end that
    shows it (the LSP's window/showMessage); None when its state dir is its own."""
    return _told_foreign.get(root.resolve())
