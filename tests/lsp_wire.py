"""A raw JSON-RPC client for `glm-lsp serve` over stdio or TCP, for tests that need what a
well-behaved client library will not do: malformed params, bursts of requests and cancels, kill -9,
a wrong token, two clients at once.

Synchronous on purpose: hypothesis drives it from a plain test function, and every wait has a
timeout. A reader thread answers the server's own requests (applyEdit, progress, registration).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

TIMEOUT = 60.0
CAPABILITIES = {
    "window": {"workDoneProgress": True},
    "workspace": {
        "applyEdit": True,
        "workspaceEdit": {
            "documentChanges": True,
            "resourceOperations": ["create", "rename", "delete"],
        },
    },
    "experimental": {"glm": {"stream": True}},  # as our plugins: glm/stream, results awaited
}


def serve_argv(model: Path | str, *flags: str) -> list[str]:
    return [sys.executable, "-m", "glm_lsp.cli", "serve", "--model", str(model), *flags]


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps({"jsonrpc": "2.0", **message}).encode("utf-8")


def _frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class RpcError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = error.get("code")
        self.message = str(error.get("message"))


class RpcConnection:
    """One JSON-RPC connection over a pair of byte streams; a reader thread dispatches messages."""

    def __init__(self, incoming: BinaryIO, outgoing: BinaryIO) -> None:
        self._in, self._out = incoming, outgoing
        self._write_lock = threading.Lock()
        self._cond = threading.Condition()
        self._responses: dict[Any, dict[str, Any]] = {}
        self.answer_counts: dict[Any, int] = {}  # a request answered twice is a bug too
        self._next = 0
        self.notifications: list[dict[str, Any]] = []
        self.edits: list[dict[str, Any]] = []  # workspace/applyEdit params the server sent
        self.server_requests: list[str] = []
        self.progress_tokens: list[Any] = []  # from window/workDoneProgress/create
        # What the client answers to applyEdit; the default declines so nothing is written.
        self.on_apply_edit: Callable[[dict[str, Any]], dict[str, Any]] = lambda _p: {
            "applied": False,
            "failureReason": "declined by the test client",
        }
        self.closed = threading.Event()
        self._reader = threading.Thread(target=self._read_loop, daemon=True, name="wire-reader")
        self._reader.start()

    # -- framing -------------------------------------------------------------------------------
    def send(self, message: dict[str, Any]) -> None:
        self.send_raw(_encode(message))

    def send_all(self, messages: list[dict[str, Any]]) -> None:
        """Several messages in one write, as a client pipelining them does: the server has them
        all before it can answer or hang up (separate writes could meet a closed socket)."""
        self._write(b"".join(_frame(_encode(m)) for m in messages))

    def send_raw(self, body: bytes) -> None:
        self._write(_frame(body))

    def _write(self, data: bytes) -> None:
        with self._write_lock:
            self._out.write(data)
            self._out.flush()

    def _read_loop(self) -> None:
        out = self._in
        try:
            while True:
                length = None
                while True:
                    try:
                        line = out.readline()
                    except OSError:  # a reset connection ends like a closed one
                        return
                    if not line:
                        return
                    line = line.strip()
                    if not line:
                        break
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                if length is None:
                    continue
                self._dispatch(json.loads(out.read(length)))
        finally:
            self.closed.set()
            with self._cond:
                self._cond.notify_all()

    def _dispatch(self, msg: dict[str, Any]) -> None:
        if "method" in msg and "id" in msg:  # the server asks the client something
            method = msg["method"]
            self.server_requests.append(method)
            result: Any = None
            if method == "window/workDoneProgress/create":
                self.progress_tokens.append(msg["params"]["token"])
            if method == "workspace/applyEdit":
                self.edits.append(msg["params"])
                result = self.on_apply_edit(msg["params"])
            self.send({"id": msg["id"], "result": result})
        elif "method" in msg:
            with self._cond:
                self.notifications.append(msg)
                self._cond.notify_all()
        else:
            with self._cond:
                self._responses[msg.get("id")] = msg
                self.answer_counts[msg.get("id")] = self.answer_counts.get(msg.get("id"), 0) + 1
                self._cond.notify_all()

    # -- requests ------------------------------------------------------------------------------
    def request_async(self, method: str, params: Any = None, *, msg_id: Any = None) -> Any:
        with self._cond:
            self._next += 1
            msg_id = msg_id if msg_id is not None else self._next
        message: dict[str, Any] = {"id": msg_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return msg_id

    def wait(self, msg_id: Any, timeout: float = TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while msg_id not in self._responses:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no answer to request {msg_id!r} within {timeout} s")
                if self.closed.is_set():
                    raise ConnectionError(self._closed_message())
                self._cond.wait(min(left, 0.5))
            return self._responses.pop(msg_id)

    def request(self, method: str, params: Any = None, timeout: float = TIMEOUT) -> Any:
        """The result, or RpcError with the JSON-RPC error."""
        answer = self.wait(self.request_async(method, params), timeout)
        if "error" in answer:
            raise RpcError(answer["error"])
        return answer.get("result")

    def command(self, name: str, *arguments: Any, timeout: float = TIMEOUT) -> Any:
        return self.request(
            "workspace/executeCommand", {"command": name, "arguments": list(arguments)}, timeout
        )

    def notify(self, method: str, params: Any = None) -> None:
        message: dict[str, Any] = {"method": method}
        if params is not None:
            message["params"] = params
        self.send(message)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                assert left > 0, "timed out waiting"
                self._cond.wait(min(left, 0.2))

    def streamed(self, kind: str | None = None) -> str:
        return "".join(
            n["params"]["text"]
            for n in list(self.notifications)
            if n["method"] == "glm/stream" and (kind is None or n["params"]["kind"] == kind)
        )

    def messages(self) -> list[str]:
        """window/showMessage texts."""
        return [
            n["params"]["message"]
            for n in list(self.notifications)
            if n["method"] == "window/showMessage"
        ]

    # -- lifecycle -----------------------------------------------------------------------------
    def initialize(
        self, root: Path, options: dict[str, Any] | None = None, timeout: float = TIMEOUT
    ) -> dict[str, Any]:
        result = self.request(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": root.as_uri(),
                "workspaceFolders": [{"uri": root.as_uri(), "name": root.name}],
                "capabilities": CAPABILITIES,
                "initializationOptions": options,
            },
            timeout,
        )
        self.notify("initialized", {})
        return result

    def _closed_message(self) -> str:
        return "the server closed the connection"


class WireClient(RpcConnection):
    """`glm-lsp serve` (stdio) as a child process."""

    def __init__(
        self, argv: list[str], *, stderr_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.stderr_path = stderr_path
        # A file, so a chatty server never blocks on a full pipe; closed by kill()/close().
        self._stderr = open(stderr_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        super().__init__(self.proc.stdout, self.proc.stdin)

    def _closed_message(self) -> str:
        return f"the server closed stdout (exit {self.proc.poll()})"

    def kill(self) -> None:
        """kill -9: no shutdown, no flush, nothing the server could do about it."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._stderr.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.request("shutdown", None, timeout=15)
                self.notify("exit")
                self.proc.wait(timeout=15)
            except (TimeoutError, ConnectionError, OSError, RpcError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._stderr.close()

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")


class SocketClient(RpcConnection):
    """One TCP connection to `glm-lsp serve --tcp`."""

    def __init__(self, host: str, port: int, timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(None)  # the reader thread blocks; every wait has its own timeout
        super().__init__(self.sock.makefile("rb"), self.sock.makefile("wb"))

    def close(self) -> None:
        """Drops the connection at once: no shutdown, as an editor that crashed would."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.closed.wait(TIMEOUT)
        self._in.close()
        self._out.close()


def start_server(
    tmp: Path,
    model: Path | str,
    root: Path,
    replies: list[str],
    *flags: str,
    env: dict[str, str] | None = None,
    options: dict[str, Any] | None = None,
) -> WireClient:
    """`glm-lsp serve` on `root` with these scripted replies, initialized; stderr in tmp."""
    n = len(list(tmp.glob("replies-*.json")))
    script = tmp / f"replies-{n}.json"
    script.write_text(json.dumps(replies))
    argv = serve_argv(model, "--scripted-replies", str(script), *flags)
    client = WireClient(argv, stderr_path=tmp / f"stderr-{n}.txt", env=env)
    try:
        client.initialize(root, options)
    except BaseException:
        client.close()
        raise
    return client
