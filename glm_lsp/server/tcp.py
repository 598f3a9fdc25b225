"""`glm-lsp serve --tcp`: a token-gated listener with one independent language server per
connection.

pygls's own `start_tcp` shares one protocol between connections (a new connection takes over the
writer, so it receives the previous client's messages) and shuts the server down when any client
disconnects. Here each connection gets its own GlmServer (protocol, settings, folders, worker):
nothing is shared but the listening socket, so two editors on the same workspace each load the
model. A connection must present the token in `initializationOptions.token` (GlmProtocol checks
it) before anything it sends reaches a handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
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
AUTH_TIMEOUT_S = 30.0  # a connection that has not presented the token by then is closed


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
        try:  # never through a link, never another user's file (state_files refuses them)
            data = state_files.read_bytes(path, parent=False)
            if data is None:
                raise FileNotFoundError(errno.ENOENT, "No such file or directory")
            value = data.decode("utf-8").strip()
            mode = os.lstat(path).st_mode
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise UsageError(f"cannot read --token-file {path}: {reason}") from None
        if not value:
            raise UsageError(f"--token-file {path} is empty; put the token on its first line")
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("--token-file %s is readable by other users; chmod 600 it", path)
        return Token(value)
    if TOKEN_ENV in os.environ:
        value = os.environ[TOKEN_ENV].strip()
        if not value:
            raise UsageError(f"{TOKEN_ENV} is set but empty; set it to a secret or unset it")
        return Token(value)
    return None


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
    try:
        asyncio.run(_serve(settings, host, port, chosen, announce=token is None, build=build))
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
) -> None:
    loop = asyncio.get_running_loop()
    servers: set[GlmServer] = set()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server = build(settings, token.value)
        servers.add(server)
        server.protocol.set_writer(writer)  # type: ignore[arg-type]  # pygls's AsyncWriter shape
        timer = loop.call_later(AUTH_TIMEOUT_S, _close_unless_authenticated, server)
        try:
            await run_async(
                stop_event=threading.Event(),
                reader=reader,
                protocol=server.protocol,
                logger=log,
                error_handler=server.report_server_error,
            )
        except SystemExit:
            pass  # the client's `exit`: pygls exits the process; here it ends this connection
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.debug("connection lost: %s", exc)
        finally:
            timer.cancel()
            servers.discard(server)
            server.protocol.set_writer(_Gone())
            server.stop()
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


def _close_unless_authenticated(server: GlmServer) -> None:
    if not server.protocol.authenticated:
        server.protocol.refused = True
        server.protocol.close_connection()
