"""A front-end's side of the host: find it (start one if none), and `HostBackend`, the Backend
(runtime/base.py) that runs a conversation's completions in the host instead of in-process.

The worker thread that calls a backend blocks anyway, so the connection is a plain blocking socket
read with a short timeout: between reads it notices a cancel and tells the host, which stops
between two tokens.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from glm_lsp import state_files
from glm_lsp.config import Settings
from glm_lsp.host import registry
from glm_lsp.host.protocol import decode, encode
from glm_lsp.runtime.base import BackendError, Cancelled, Completion, CompletionRequest, OnText
from glm_lsp.runtime.pids import alive
from glm_lsp.wire.converter import converter
from glm_lsp.wire.records import Stats

START_TIMEOUT_S = 60.0  # a host registers before it loads the model: this is Python + MLX start-up
CANCEL_GRACE_S = 5.0  # after a cancel, how long the host may take to say so before we hang up
POLL_S = 0.05  # how often a blocked read looks at the cancel flag


class HostGone(BackendError):
    """The host closed the connection (stopped or was killed)."""


class Connection:
    """One authenticated connection; one request at a time (the caller's worker thread)."""

    def __init__(self, reg: registry.Registration, client: str) -> None:
        self.reg = reg
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5.0)
        try:
            self.sock.connect(reg.socket)
        except OSError:
            self.sock.close()
            raise
        self.buffer = bytearray()
        self.ids = itertools.count(1)
        token = registry.token() or ""
        self._send({"op": "hello", "token": token, "client": client, "pid": os.getpid()})
        answer = self._next(10.0) or {"error": "no answer within 10 s"}
        if "hello" not in answer:
            self.close()
            raise BackendError(f"the glm-lsp host refused this client: {answer.get('error')}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    @property
    def open(self) -> bool:
        """False once the host has hung up (seen without waiting: a peek that does not block)."""
        self.sock.settimeout(0)  # with a timeout set, Python would wait for data despite DONTWAIT
        try:
            return self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self.sock.sendall(encode(message))
        except OSError as exc:
            raise self._gone() from exc

    def _gone(self) -> HostGone:
        return HostGone(
            f"the glm-lsp host (pid {self.reg.pid}) stopped during this request; "
            "nothing was written, and the next request starts a new host"
        )

    def _next(self, timeout: float | None) -> dict[str, Any] | None:
        """The next message, or None when `timeout` passes first."""
        while (end := self.buffer.find(b"\n")) < 0:
            self.sock.settimeout(timeout)
            try:
                chunk = self.sock.recv(1 << 16)
            except TimeoutError:
                return None
            except OSError:
                raise self._gone() from None
            if not chunk:
                raise self._gone()
            self.buffer += chunk
        line = bytes(self.buffer[: end + 1])
        del self.buffer[: end + 1]
        return decode(line)

    def request(
        self,
        op: str,
        payload: dict[str, Any],
        cancel: threading.Event | None = None,
        on_text: OnText | None = None,
        on_status: Any = None,
    ) -> Any:
        rid = next(self.ids)
        self._send({"op": op, "id": rid, **payload})
        cancelled_at: float | None = None
        while True:
            if cancel is not None and cancel.is_set() and cancelled_at is None:
                cancelled_at = time.monotonic()
                self._send({"op": "cancel", "target": rid})
            if cancelled_at is not None and time.monotonic() - cancelled_at > CANCEL_GRACE_S:
                self.close()  # hanging up cancels too
                raise Cancelled()
            message = self._next(POLL_S if cancel is not None else None)
            if message is None or message.get("id") != rid:
                continue  # a timeout, or the tail of an earlier, abandoned request
            if "text" in message:
                if on_text is not None:
                    on_text(message["text"])
            elif "status" in message:
                if on_status is not None:
                    on_status(message["status"], message.get("percent"))
            elif "done" in message:
                return message["done"]
            elif "error" in message:
                if message.get("kind") == "cancelled":
                    raise Cancelled()
                raise BackendError(str(message["error"]))


def answers(reg: registry.Registration) -> bool:
    try:
        Connection(reg, "probe").close()
        return True
    except (OSError, BackendError):
        return False


def attach(settings: Settings, *, start: bool = True) -> registry.Registration:
    """The running host, or one started now (its registration appears before its model loads)."""
    reg = registry.live()
    if reg is not None and answers(reg):
        return reg
    if not start:
        raise BackendError("no glm-lsp host is running; `glm-lsp host start` starts one")
    with registry.start_lock():
        reg = registry.live()
        if reg is not None and answers(reg):
            return reg
        _retire(registry.read())
        return _spawn(settings)


def _retire(old: registry.Registration | None) -> None:
    """A host of another version (or a hung one) is replaced: it saves its caches and stops."""
    if old is None or not alive(old.pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(old.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while alive(old.pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # bounded: a host saving its caches


def spawn_command(settings: Settings) -> list[str]:
    return [
        sys.executable,
        "-m",
        "glm_lsp.cli",
        "host",
        "start",
        "--foreground",  # no --model: the first request loads it, and its editor shows the load
        "--keep-alive",
        str(settings.keepAlive),
        "--host-cache-gb",
        str(settings.hostCacheGB),
    ]


def _spawn(settings: Settings) -> registry.Registration:
    """Start a host in its own session (it outlives the editor that started it) and wait for its
    registration."""
    log_path = registry.host_dir() / registry.LOG
    log_file = state_files.open_append_text(log_path)
    with log_file:
        child = subprocess.Popen(
            spawn_command(settings),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
            close_fds=True,
        )
    return wait_for_host(child, log_path)


def wait_for_host(child: subprocess.Popen[bytes], log_path: Path) -> registry.Registration:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        reg = registry.live()
        if reg is not None and reg.pid == child.pid and answers(reg):
            return reg
        if child.poll() is not None:
            raise BackendError(
                f"the glm-lsp host exited at start (code {child.returncode}): "
                f"{_tail(log_path)}; see {log_path}"
            )
        time.sleep(0.05)  # bounded by START_TIMEOUT_S: the host's Python and MLX start-up
    child.terminate()
    raise BackendError(
        f"the glm-lsp host did not start within {START_TIMEOUT_S:.0f} s; see {log_path}"
    )


def _tail(path: Path) -> str:
    data = state_files.read_bytes(path) or b""
    lines = [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1][-300:] if lines else "no output"


class HostBackend:
    """A conversation whose KV cache and generation live in the host (see runtime/base.py)."""

    name = "mlx"

    def __init__(
        self,
        settings: Settings,
        state_dir: Path | None,
        *,
        client: str,
        scripted: Any = None,
    ) -> None:
        self.settings = settings
        self.model_name = settings.model
        self.client = client
        self.scripted = scripted
        self.speculative = settings.speculativeDecoding
        self.draft_tokens = settings.draftTokens
        self.spec = {
            "dir": str(state_dir.resolve()) if state_dir is not None else None,
            "persist": settings.persistKvCache,
            "kvBits": settings.kvBits,
        }
        self.conn: Connection | None = None
        self.connect()  # the front-end is ready once attached; the model may still be loading

    def connect(self) -> Connection:
        if self.conn is not None and not self.conn.open:
            self.conn.close()  # the host went away between two requests: attach again, quietly
            self.conn = None
        if self.conn is None:
            reg = attach(self.settings)
            try:
                self.conn = Connection(reg, self.client)
            except OSError as exc:
                raise BackendError(
                    f"could not reach the glm-lsp host at {reg.socket}: {exc}"
                ) from None
        return self.conn

    def _call(self, op: str, payload: dict[str, Any], **kwargs: Any) -> Any:
        conn = self.connect()
        try:
            return conn.request(op, payload, **kwargs)
        except HostGone:
            conn.close()
            self.conn = None  # the next request attaches again (and starts a new host)
            raise

    def complete(
        self, request: CompletionRequest, on_text: OnText, cancel: threading.Event
    ) -> Completion:
        reply = self.scripted.next() if self.scripted is not None else None
        try:
            done = self._call(
                "complete",
                {
                    "model": self.model_name,
                    "conversation": self.spec,
                    "request": {
                        "prompt": request.prompt,
                        "max_tokens": request.max_tokens,
                        "temperature": request.temperature,
                        "top_p": request.top_p,
                    },
                    "scripted": reply,
                    "speculative": self.speculative,
                    "draftTokens": self.draft_tokens,
                },
                cancel=cancel,
                on_text=on_text,
                on_status=request.on_status,
            )
        except BaseException:
            if self.scripted is not None:
                self.scripted.unread()
            raise
        stats = converter.structure(done["stats"], Stats)
        return Completion(text=done["text"], stats=stats, finish_reason=done["finish"])

    def count_tokens(self, text: str) -> int:
        return int(self._call("count", {"model": self.model_name, "text": text}))

    def save(self) -> None:
        if self.spec["dir"] and self.spec["persist"]:
            self._call("save", {"model": self.model_name, "conversation": self.spec})

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def host_request(op: str, payload: dict[str, Any] | None = None) -> Any:
    """One request to the running host (status, stop) from the command line."""
    reg = registry.live()
    if reg is None:
        raise BackendError("no glm-lsp host is running")
    conn = Connection(reg, "cli")
    try:
        return conn.request(op, payload or {})
    finally:
        conn.close()


__all__ = ["HostBackend", "attach", "host_request"]
