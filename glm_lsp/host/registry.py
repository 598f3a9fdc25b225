"""Where the host is found: `$XDG_RUNTIME_DIR/glm-lsp/` (host.sock, host.json, host.token).

Like opencode's shared daemon, a registration file names the running host (pid, version, socket,
OpenAI URL) and a private token proves a client is the user's. The folder is 0700 and every file
0600, opened without following links (state_files), so another user can neither read the token
nor plant a registration. A registration whose pid is gone or whose version differs is stale.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from glm_lsp import __version__, state_files
from glm_lsp.runtime.pids import alive

SOCKET, INFO, TOKEN, LOCK, LOG = "host.sock", "host.json", "host.token", "host.lock", "host.log"


@dataclass
class Registration:
    pid: int
    version: str
    socket: str
    openai: str | None = None  # the OpenAI-compatible endpoint's base URL, when it listens
    started: float = 0.0

    @property
    def current(self) -> bool:
        """A live host of this glm-lsp version (another version speaks another protocol)."""
        return self.version == __version__ and alive(self.pid)


def host_dir() -> Path:
    """The host's private folder: under $XDG_RUNTIME_DIR (per login, cleared at logout), else
    under the user's state home."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    folder = Path(runtime) / "glm-lsp" if runtime else state_files.user_state_home() / "run"
    state_files.private_dir(folder)
    os.chmod(folder, 0o700)  # ours (checked above): nobody else may list or enter it
    return folder


def read() -> Registration | None:
    """The registration as written, live or not; None when there is none or it is unreadable."""
    data = state_files.read_json(host_dir() / INFO)
    if not isinstance(data, dict):
        return None
    try:
        return Registration(
            pid=int(data["pid"]),
            version=str(data["version"]),
            socket=str(data["socket"]),
            openai=data.get("openai") if isinstance(data.get("openai"), str) else None,
            started=float(data.get("started", 0.0)),
        )
    except (KeyError, TypeError, ValueError):
        return None


def live() -> Registration | None:
    """The running host of this version, or None."""
    reg = read()
    return reg if reg is not None and reg.current else None


def write(reg: Registration) -> None:
    state_files.write_json(host_dir() / INFO, asdict(reg))


def remove(pid: int) -> None:
    """Remove the registration and socket if they are still this host's (a new host may have
    replaced them already)."""
    reg = read()
    if reg is not None and reg.pid != pid:
        return
    folder = host_dir()
    for name in (INFO, SOCKET):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folder / name)


def token(create: bool = False) -> str | None:
    """The host's bearer token (0600); made on first need when `create`."""
    path = host_dir() / TOKEN
    raw = state_files.read_bytes(path)
    if raw is not None and raw.strip():
        return raw.decode("ascii", "replace").strip()
    if not create:
        return None
    value = secrets.token_urlsafe(32)
    state_files.write_private(path, (value + "\n").encode("ascii"))
    return value


@contextlib.contextmanager
def start_lock(timeout: float = 120.0) -> Iterator[None]:
    """Held while a host is being started, so two front-ends starting at once make one host."""
    path = host_dir() / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError("another glm-lsp is still starting the host") from None
                time.sleep(0.05)  # a bounded wait on another process's start
        yield
    finally:
        os.close(fd)  # closing releases the lock
