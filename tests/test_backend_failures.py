"""Backend failures through the real server: a scripted OpenAI-compatible peer on 127.0.0.1 that
dies mid-stream, refuses connections, answers 500, sends invalid JSON or stalls; and an embedded
model that fails to load. Each failure: a clear JSON-RPC error, nothing applied (no applyEdit,
files untouched, nothing logged), and the server goes on serving. The API key never shows up in
stderr (debug logging on), the log, the state dir or any error; the state files are private.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.lsp_wire import RpcError, WireClient

A_PY = "def foo(x):\n    return 2 * x\n"
BACKEND_ERROR = -32001
TIMEOUT_S = 1.5  # GLM_LSP_HTTP_TIMEOUT for the server under test
KEY = "sk-test-" + secrets.token_hex(16)
KEY_ENV = "GLM_TEST_SECRET_KEY"

Behaviour = Callable[[BaseHTTPRequestHandler], None]


def sse(*events: dict[str, Any], done: bool = True) -> bytes:
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return body + (b"data: [DONE]\n\n" if done else b"")


def delta(**d: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": d, "finish_reason": None}]}


def finish(reason: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}


def stream(body: bytes, *, then: Callable[[BaseHTTPRequestHandler], None] | None = None):
    def behave(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()
        h.wfile.write(body)
        h.wfile.flush()
        if then:
            then(h)

    return behave


def answer(text: str) -> Behaviour:
    return stream(sse(delta(content=text), finish("stop")))


EDIT = stream(
    sse(
        delta(content="Editing."),
        delta(
            tool_calls=[
                {
                    "index": 0,
                    "id": "c1",
                    "function": {
                        "name": "edit_file",
                        "arguments": json.dumps(
                            {"path": "pkg/a.py", "old_text": "2 * x", "new_text": "x + x"}
                        ),
                    },
                }
            ]
        ),
        finish("tool_calls"),
    )
)


def status(code: int, body: bytes) -> Behaviour:
    def behave(h: BaseHTTPRequestHandler) -> None:
        h.send_response(code)
        h.send_header("Content-Type", "text/plain")
        h.end_headers()
        h.wfile.write(body)

    return behave


def echo_key_401(h: BaseHTTPRequestHandler) -> None:
    """A proxy that quotes the header it rejected: the key must not travel on."""
    status(401, f"invalid credentials: {h.headers.get('Authorization')}".encode())(h)


def close_now(h: BaseHTTPRequestHandler) -> None:
    h.wfile.flush()
    h.connection.shutdown(socket.SHUT_RDWR)


def sleep_past_timeout(h: BaseHTTPRequestHandler) -> None:
    time.sleep(TIMEOUT_S * 2.5)


def stall_before_headers(h: BaseHTTPRequestHandler) -> None:
    time.sleep(TIMEOUT_S * 2.5)
    status(200, b"")(h)


class Peer:
    """An OpenAI-compatible server on 127.0.0.1 answering each POST with the next behaviour."""

    def __init__(self, port: int = 0) -> None:
        self.answers: list[Behaviour] = []
        self.headers: list[dict[str, str]] = []
        self.bodies: list[Any] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                peer.headers.append(dict(self.headers))
                peer.bodies.append(json.loads(body))
                behave = peer.answers.pop(0) if peer.answers else status(500, b"no answer left")
                with contextlib.suppress(OSError):  # the client gave up first: fine
                    behave(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = Peer()
    yield p
    p.close()


def workspace(tmp: Path) -> Path:
    root = tmp / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text(A_PY)
    return root


def serve(
    tmp: Path, root: Path, options: dict[str, Any], *flags: str, name: str = "stderr"
) -> WireClient:
    """A server whose settings come from `options` (its initializationOptions): the backend
    settings are the user's own (issue 25), so another backend is another server."""
    argv = [sys.executable, "-m", "glm_lsp.cli", "-v", "serve", *flags]  # -v: debug logging
    env = {KEY_ENV: KEY, "GLM_LSP_HTTP_TIMEOUT": str(TIMEOUT_S)}
    client = WireClient(argv, stderr_path=tmp / f"{name}.txt", env=env)
    client.initialize(root, options)
    return client


def assert_private(root: Path) -> None:
    state = root / ".glm-lsp"
    assert stat.S_IMODE(state.stat().st_mode) & 0o077 == 0, oct(state.stat().st_mode)
    for path in state.rglob("*"):
        if path.is_file() and path.name != ".gitignore":
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))


def assert_no_key_anywhere(client: WireClient, root: Path, errors: list[str]) -> None:
    assert KEY not in client.stderr()
    assert KEY not in json.dumps(client.notifications)
    for message in errors:
        assert KEY not in message
    for path in (root / ".glm-lsp").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


OPENAI_FAILURES: list[tuple[str, Behaviour, str]] = [
    ("HTTP 500", status(500, b"model crashed: out of memory"), "answered HTTP 500: model crashed"),
    ("HTTP 401 echoing the key", echo_key_401, "answered HTTP 401"),
    ("invalid JSON", stream(b"data: {oops\n\n"), "invalid JSON"),
    ("not an object", stream(b"data: [1, 2]\n\n"), "unexpected stream event"),
    ("error event", stream(sse({"error": {"message": "overloaded"}})), "reported an error"),
    (
        "dies mid-stream",
        stream(sse(delta(content="partial"), done=False), then=close_now),
        "ended before the completion finished",
    ),
    ("closes at once", close_now, "cannot reach the server"),
    (
        "stalls mid-stream",
        stream(sse(delta(content="thinking..."), done=False), then=sleep_past_timeout),
        "stalled past the timeout",
    ),
    ("stalls before headers", stall_before_headers, "did not answer within the timeout"),
]


def test_openai_peer_failures_through_the_server(tmp_path: Path, peer: Peer) -> None:
    root = workspace(tmp_path)
    options = {"backend": "openai", "baseUrl": peer.url, "model": "glm-4.7", "apiKeyEnv": KEY_ENV}
    client = serve(tmp_path, root, options)
    uri = (root / "pkg" / "a.py").as_uri()
    errors: list[str] = []
    try:
        peer.answers.append(answer("Warm."))
        assert client.command("glm.ask", {"question": "hello?"})["text"] == "Warm."
        assert peer.headers[0]["Authorization"] == f"Bearer {KEY}"  # the key is really used
        turns = 1
        for label, behaviour, expected in OPENAI_FAILURES:
            peer.answers[:] = [EDIT, behaviour]  # an edit is proposed, then the backend fails
            started = time.monotonic()
            with pytest.raises(RpcError) as err:
                client.command("glm.refactor", {"uri": uri, "instruction": "simplify"})
            errors.append(err.value.message)
            assert err.value.code == BACKEND_ERROR, (label, err.value)
            assert err.value.message.startswith("glm.refactor failed: "), label
            assert expected in err.value.message, (label, err.value.message)
            assert time.monotonic() - started < 30, label  # a stall ends at the timeout
            assert client.edits == [], label  # nothing of the failed request was applied
            assert (root / "pkg" / "a.py").read_text() == A_PY
            status_now = client.command("glm.status", {}, timeout=10)
            assert status_now["busy"] is False and status_now["turns"] == turns, label
            peer.answers[:] = [answer(f"Recovered from {label}.")]
            assert client.command("glm.ask", {"question": "still there?"})["text"] == (
                f"Recovered from {label}."
            )
            turns += 1
        assert "***" in next(m for m in errors if "401" in m)  # the echoed key was masked

        assert_no_key_anywhere(client, root, errors)
    finally:
        client.close()
    assert KEY not in client.stderr()

    # Connection refused, then the server comes up at that address: the next request works.
    # The base URL has credentials in it: they are not repeated in the error either.
    port = dead_port()
    url = f"http://u:{KEY}@127.0.0.1:{port}/v1"
    client = serve(tmp_path, root, {**options, "baseUrl": url}, name="refused")
    revived: Peer | None = None
    try:
        with pytest.raises(RpcError) as err:
            client.command("glm.refactor", {"uri": uri, "instruction": "simplify"})
        errors.append(err.value.message)
        assert err.value.code == BACKEND_ERROR and "connection refused" in err.value.message
        assert "***@127.0.0.1" in err.value.message
        revived = Peer(port)
        revived.answers[:] = [answer("Back.")]
        assert client.command("glm.ask", {"question": "back?"})["text"] == "Back."
        assert client.edits == [] and (root / "pkg" / "a.py").read_text() == A_PY

        # The log holds only the requests that completed.
        log = [
            json.loads(x) for x in (root / ".glm-lsp" / "thinking.jsonl").read_text().splitlines()
        ]
        assert len(log) == turns + 1 and all(r["command"] == "glm.ask" for r in log)
        assert_no_key_anywhere(client, root, errors)
        assert_private(root)
    finally:
        client.close()
        if revived is not None:
            revived.close()
    assert KEY not in client.stderr()


def bad_models(tmp: Path, good: Path) -> list[tuple[str, Path, str]]:
    no_config = tmp / "no-config"
    no_config.mkdir()
    bad_json = tmp / "bad-json"
    bad_json.mkdir()
    (bad_json / "config.json").write_text("{not json")
    llama = tmp / "llama"
    llama.mkdir()
    (llama / "config.json").write_text(json.dumps({"model_type": "llama"}))
    torn = tmp / "torn-weights"
    shutil.copytree(good, torn)
    weights = torn / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    no_tokenizer = tmp / "no-tokenizer"
    shutil.copytree(good, no_tokenizer)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (no_tokenizer / name).unlink()
    return [
        ("missing", tmp / "does-not-exist", "was not found"),
        ("no config.json", no_config, "has no config.json"),
        ("config.json not JSON", bad_json, "is not valid JSON"),
        ("not a GLM model", llama, "needs a GLM-4.x model"),
        ("torn weights", torn, "could not load the model"),
        ("no tokenizer", no_tokenizer, "could not load the model"),
    ]


def test_embedded_model_that_fails_to_load(tmp_path: Path, tiny_model_dir: Path) -> None:
    from glm_lsp.runtime.base import BackendError
    from glm_lsp.runtime.model_loader import load_model

    root = workspace(tmp_path)
    (missing, _, not_found), *cases = bad_models(tmp_path, tiny_model_dir)
    # Every way a model fails to load has its own message (the loader the server's backend uses;
    # a server per model would cost a process start each, now that model is the user's own).
    for label, model_dir, expected in cases:
        with pytest.raises(BackendError) as raised:
            load_model(str(model_dir))
        assert expected in str(raised.value), (label, str(raised.value))
    script = tmp_path / "replies.json"
    script.write_text(json.dumps(["Loaded at last."]))
    uri = (root / "pkg" / "a.py").as_uri()
    errors: list[str] = []
    # Through the server: a clear error and the server goes on; a restart with a good model works.
    for model_dir in (missing, tiny_model_dir):
        options = {"model": str(model_dir)}
        client = serve(tmp_path, root, options, "--scripted-replies", str(script))
        try:
            if model_dir == tiny_model_dir:
                answer = client.command("glm.explain", {"uri": uri}, timeout=120)
                assert answer["text"] == "Loaded at last."
                assert client.edits == [] and (root / "pkg" / "a.py").read_text() == A_PY
                assert (root / ".glm-lsp" / "kv-cache.safetensors").exists()
                continue
            with pytest.raises(RpcError) as err:
                client.command("glm.explain", {"uri": uri}, timeout=120)
            errors.append(err.value.message)
            assert err.value.code == BACKEND_ERROR, err.value
            assert not_found in err.value.message and "Traceback" not in err.value.message
            assert client.command("glm.status", {}, timeout=10)["busy"] is False
        finally:
            client.close()
        assert_no_key_anywhere(client, root, errors)
    assert_private(root)


def test_cli_run_never_prints_the_key(tmp_path: Path, peer: Peer) -> None:
    """`glm-lsp -v run` against a peer that quotes the key back: exit 3, a clear error, no key."""
    root = workspace(tmp_path)
    peer.answers[:] = [EDIT, echo_key_401]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "glm_lsp.cli",
            "-v",
            "run",
            str(root),
            "simplify",
            "--apply",
            "--backend",
            "openai",
            "--base-url",
            peer.url,
            "--model",
            "glm-4.7",
            "--api-key-env",
            KEY_ENV,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, KEY_ENV: KEY, "GLM_LSP_HTTP_TIMEOUT": str(TIMEOUT_S)},
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "answered HTTP 401" in proc.stderr and "***" in proc.stderr
    assert KEY not in proc.stderr + proc.stdout
    assert peer.headers[0]["Authorization"] == f"Bearer {KEY}"
    assert (root / "pkg" / "a.py").read_text() == A_PY  # --apply, but the request failed
