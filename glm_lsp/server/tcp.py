"""`glm-lsp serve --tcp`: a token-gated listener with one independent language server per
connection.

pygls's own `start_tcp` shares one protocol between connections (a new connection takes over the
writer, so it receives the previous client's messages) and shuts the server down when any client
disconnects. Here each connection gets its own GlmServer (protocol, settings, folders, worker):
nothing is shared but the listening socket, so two editors on the same workspace each load the
model. A connection must present the token in `initializationOptions.token` (GlmProtocol checks
it) before anything it sends reaches a handler.

Before the token a connection costs little: a message body over 64 KiB closes it at the header
(nothing of the body is read), at most 8 wait at once (a new one closes the oldest: a real client
sends initialize at once, so the oldest is a flood's) and each has 10 seconds to authenticate.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import secrets
import signal
import stat
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pygls.io_ import run_async

from glm_lsp import state_files, textfile
from glm_lsp.config import Settings
from glm_lsp.errors import UsageError
from glm_lsp.server.app import GlmServer

log = logging.getLogger(__name__)
TOKEN_ENV = "GLM_LSP_TOKEN"
AUTH_TIMEOUT_ENV = "_GLM_LSP_TCP_AUTH_TIMEOUT_S"  # internal: tests shorten the deadline


@dataclass(frozen=True)
class Limits:
    """What an unauthenticated connection may cost."""

    max_body: int = 64 * 1024  # bytes of one message before the token
    max_pending: int = 8  # unauthenticated connections at once
    auth_timeout_s: float = 10.0  # then it is closed

    @classmethod
    def from_env(cls) -> Limits:
        raw = os.environ.get(AUTH_TIMEOUT_ENV)
        return cls(auth_timeout_s=float(raw)) if raw else cls()


class TooLarge(ConnectionError):
    """An unauthenticated connection announced a body over the limit."""


class Pending:
    """One connection before its token: no language server is built until it sends a line, and
    it can be closed from outside (the deadline, or room for a newer one)."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.server: GlmServer | None = None

    @property
    def authenticated(self) -> bool:
        return self.server is not None and self.server.protocol.authenticated

    def close(self) -> None:
        if self.server is None:
            self.writer.close()  # the reader then sees the end of the stream
        elif not self.server.protocol.authenticated:
            self.server.protocol.refused = True
            self.server.protocol.close_connection()


class GatedReader:
    """pygls's reader over the socket, starting with the line already read: before the token, a
    body over the limit ends the connection at its header, before a byte of it is read."""

    def __init__(self, reader: asyncio.StreamReader, pending: Pending, first: bytes, limit: int):
        self.reader, self.pending, self.first, self.limit = reader, pending, first, limit

    async def readline(self) -> bytes:
        line, self.first = self.first, b""
        return line or await self.reader.readline()

    async def readexactly(self, n: int) -> bytes:
        if n > self.limit and not self.pending.authenticated:
            raise TooLarge(f"{n}-byte message before the token (the limit is {self.limit})")
        return await self.reader.readexactly(n)


@dataclass
class Token:
    value: str
    generated: Path | None = None  # the file we wrote (removed when the server stops)


def check_host(host: str, allow_remote: bool) -> None:
    """Only loopback addresses unless --allow-remote: the token travels in clear text."""
    if allow_remote or host == "localhost":
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    mapped = getattr(address, "ipv4_mapped", None)
    if address is not None and (address.is_loopback or (mapped and mapped.is_loopback)):
        return
    raise UsageError(
        f"--host {host} is not a loopback address, so other machines could reach the server and "
        "the token would cross the network in clear text; use 127.0.0.1 (and an SSH tunnel), "
        "or pass --allow-remote if you mean it"
    )


def read_token(token_file: str | None) -> Token | None:
    """The token from --token-file (it wins: the command line beats the environment) or
    GLM_LSP_TOKEN, whitespace stripped; None when neither is given."""
    if token_file is not None:
        path = Path(token_file).expanduser()
        value = _read_private(path).strip()
        if not value:
            raise UsageError(f"--token-file {path} is empty; put the token on its first line")
        return Token(value)
    if TOKEN_ENV in os.environ:
        value = os.environ[TOKEN_ENV].strip()
        if not value:
            raise UsageError(f"{TOKEN_ENV} is set but empty; set it to a secret or unset it")
        return Token(value)
    return None


def _read_private(path: Path) -> str:
    """The token file's text; refused when it is a symlink (someone else could point it
    elsewhere) or readable by group or others (they could read the token too)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if os.path.islink(path):
            raise UsageError(
                f"--token-file {path} is a symbolic link; pass the file it points to itself"
            ) from None
        raise UsageError(f"cannot read --token-file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as file:
        st = os.fstat(file.fileno())
        mode = st.st_mode
        if not stat.S_ISREG(mode):
            raise UsageError(f"--token-file {path} is not a regular file")
        if st.st_uid != os.getuid():
            raise UsageError(f"--token-file {path} belongs to another user; use a file of your own")
        if mode & 0o077:
            raise UsageError(
                f"--token-file {path} can be read by other users (mode {stat.S_IMODE(mode):o}); "
                f"run chmod 600 {path}"
            )
        try:
            return file.read().decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"cannot read --token-file {path}: not UTF-8 text") from None


def runtime_dir() -> Path:
    """Where a generated token goes: $XDG_RUNTIME_DIR/glm-lsp (private to the user and cleared at
    logout), else $XDG_CACHE_HOME/glm-lsp or ~/.cache/glm-lsp; created 0700."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        base = Path(runtime)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = base / "glm-lsp"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise UsageError(f"{folder} is not a directory of yours; remove it or pass --token-file")
    os.chmod(folder, 0o700)
    return folder


def write_generated_token(value: str, port: int) -> Path:
    """Writes the token to a 0600 file (the one atomic writer: mkstemp, then a rename, so no
    symlink is followed)."""
    target = runtime_dir() / f"tcp-{port}.token"
    textfile.atomic_write(target, (value + "\n").encode("utf-8"), 0o600)
    return target


def remove_generated_token(token: Token) -> None:
    path = token.generated
    with contextlib.suppress(OSError, UnicodeDecodeError, UsageError):
        data = state_files.read_bytes(path, parent=False) if path is not None else None
        if path is not None and data is not None and data.decode().strip() == token.value:
            path.unlink()  # only if a later server on the same port did not replace it


class _Gone:
    """The writer of a closed connection: answers still in flight go nowhere."""

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def serve_tcp(
    settings: Settings,
    host: str,
    port: int,
    token: Token | None,
    build: Callable[[Settings, str], GlmServer],
) -> None:
    """Blocks until SIGINT or SIGTERM; `token` None means: generate one and say where it is."""
    chosen = token or Token(secrets.token_urlsafe(32))
    limits = Limits.from_env()
    try:
        asyncio.run(
            _serve(settings, host, port, chosen, announce=token is None, build=build, limits=limits)
        )
    finally:
        remove_generated_token(chosen)


async def _serve(
    settings: Settings,
    host: str,
    port: int,
    token: Token,
    *,
    announce: bool,
    build: Callable[[Settings, str], GlmServer],
    limits: Limits,
) -> None:
    loop = asyncio.get_running_loop()
    waiting: dict[Pending, None] = {}  # unauthenticated connections, oldest first

    def make_room() -> None:
        for done in [p for p in waiting if p.authenticated]:
            del waiting[done]
        while len(waiting) >= limits.max_pending:
            oldest = next(iter(waiting))
            del waiting[oldest]
            log.warning("closed an unauthenticated TCP connection: too many were waiting")
            oldest.close()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        make_room()
        pending = Pending(writer)
        waiting[pending] = None
        timer = loop.call_later(limits.auth_timeout_s, pending.close)
        try:
            first = await reader.readline()
            if first:
                pending.server = server = build(settings, token.value)
                server.protocol.set_writer(writer)  # type: ignore[arg-type]  # pygls's shape
                await run_async(
                    stop_event=threading.Event(),
                    reader=GatedReader(reader, pending, first, limits.max_body),  # type: ignore[arg-type]
                    protocol=server.protocol,
                    logger=log,
                    error_handler=server.report_server_error,
                )
        except SystemExit:
            pass  # the client's `exit`: pygls exits the process; here it ends this connection
        except TooLarge as exc:
            log.warning("closed an unauthenticated TCP connection: %s", exc)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            log.debug("connection lost: %s", exc)  # ValueError: a header line over 64 KiB
        finally:
            timer.cancel()
            waiting.pop(pending, None)
            if pending.server is not None:
                pending.server.protocol.set_writer(_Gone())
                pending.server.stop()
            writer.close()

    try:
        listener = await asyncio.start_server(connection, host, port)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port"
        ) from None
    bound = listener.sockets[0].getsockname()[1]
    if announce:
        token.generated = write_generated_token(token.value, bound)
        print(
            f"glm-lsp: no {TOKEN_ENV} or --token-file, so a new token is in {token.generated} "
            "(mode 0600); clients send it as initializationOptions.token",
            file=sys.stderr,
        )
    print(
        f"glm-lsp: serving LSP on {host}:{bound} (clients must send initializationOptions.token)",
        file=sys.stderr,
        flush=True,
    )
    serving = asyncio.ensure_future(listener.serve_forever())
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, serving.cancel)
    try:
        await serving
    except asyncio.CancelledError:
        log.debug("stopped by a signal")
    finally:
        listener.close()  # asyncio.run then cancels each connection, whose `finally` stops it
