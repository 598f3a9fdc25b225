"""The OpenAI backend under a peer that misbehaves: a reasoning stream that never ends is cut at
what maxTokens allows; a key with a trailing `\\r` (a CRLF key file) is stripped and works, and no
key ever shows up in an error, on stderr or in a traceback, whatever path the error takes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from glm_lsp.cli import main
from glm_lsp.config import Settings
from glm_lsp.runtime.base import BackendError, CompletionRequest
from glm_lsp.runtime.openai import CHARS_PER_TOKEN, OpenAIBackend
from tests.lsp_wire import RpcError, WireClient
from tests.test_backend_failures import (
    BACKEND_ERROR,
    KEY,
    KEY_ENV,
    Peer,
    answer,
    delta,
    sse,
    workspace,
)

CAP = 16 << 20  # the endless peer gives up after this many bytes; a bounded client never sees it
MAX_TOKENS = 64
CHUNK = sse(*[delta(reasoning_content="and then I think some more ") for _ in range(200)])[
    : -len(b"data: [DONE]\n\n")
]


class Endless:
    """A behaviour that streams reasoning deltas until the client hangs up (or CAP)."""

    def __init__(self) -> None:
        self.sent = 0
        self.hung_up = threading.Event()

    def __call__(self, h: BaseHTTPRequestHandler) -> None:
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()
        try:
            while self.sent < CAP:
                h.wfile.write(CHUNK)
                self.sent += len(CHUNK)
            # Today's reader gets here: let it finish instead of hanging the test.
            h.wfile.write(sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        except OSError:
            self.hung_up.set()
            raise


@pytest.fixture
def peer() -> Iterator[Peer]:
    p = Peer()
    yield p
    p.close()


def run_cli(root: Path, peer: Peer, key: str, *flags: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "glm_lsp.cli", "-v", "run", str(root), "simplify"]
    argv += ["--backend", "openai", "--base-url", peer.url, "--model", "glm-4.7"]
    argv += ["--api-key-env", KEY_ENV, *flags]
    env = {**os.environ, KEY_ENV: key, "GLM_LSP_HTTP_TIMEOUT": "5"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)


def test_endless_reasoning_stream_ends_as_length(peer: Peer) -> None:
    endless = Endless()
    peer.answers.append(endless)
    backend = OpenAIBackend(Settings(backend="openai", baseUrl=peer.url))
    request = CompletionRequest(
        prompt="", messages=[{"role": "user", "content": "x"}], max_tokens=MAX_TOKENS
    )
    completion = backend.complete(request, lambda t: None, threading.Event())
    assert completion.finish_reason == "length"
    assert completion.text.startswith("and then I think some more")
    assert len(completion.text) <= MAX_TOKENS * CHARS_PER_TOKEN + len(CHUNK)
    assert endless.hung_up.wait(30), "the client never closed the connection"
    assert endless.sent < CAP


def test_endless_stream_through_the_cli_stops_at_max_tokens(tmp_path: Path, peer: Peer) -> None:
    root = workspace(tmp_path)
    endless = Endless()
    peer.answers.append(endless)
    proc = run_cli(root, peer, KEY, "--max-tokens", str(MAX_TOKENS))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"note: the model reached maxTokens ({MAX_TOKENS}) in one completion" in proc.stderr
    assert endless.hung_up.wait(30) and endless.sent < CAP


def test_crlf_key_is_stripped_and_never_printed(tmp_path: Path, peer: Peer) -> None:
    root = workspace(tmp_path)
    peer.answers.append(answer("Nothing to simplify."))
    proc = run_cli(root, peer, KEY + "\r")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Nothing to simplify." in proc.stdout
    assert peer.headers[0]["Authorization"] == f"Bearer {KEY}"
    assert KEY not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr


def test_unsendable_key_is_a_clear_error_without_the_key(tmp_path: Path, peer: Peer) -> None:
    root = workspace(tmp_path)
    proc = run_cli(root, peer, KEY + "\nX-Injected: 1")
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert f"the API key in ${KEY_ENV} holds a space, line break" in proc.stderr
    assert KEY not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
    assert peer.headers == []  # nothing was sent


def test_server_with_crlf_key_works_and_a_bad_key_errors_without_it(
    tmp_path: Path, peer: Peer
) -> None:
    root = workspace(tmp_path)
    other_env = KEY_ENV + "_OTHER"
    env = {KEY_ENV: KEY + "\r", other_env: KEY + "\x1b[0m", "GLM_LSP_HTTP_TIMEOUT": "5"}
    argv = [sys.executable, "-m", "glm_lsp.cli", "-v", "serve"]
    options = {"backend": "openai", "baseUrl": peer.url, "model": "glm-4.7"}
    # apiKeyEnv is the user's own (issue 25): one server per key, each from initializationOptions
    for key_env in (KEY_ENV, other_env):
        client = WireClient(argv, stderr_path=tmp_path / f"{key_env}.txt", env=env)
        try:
            client.initialize(root, {**options, "apiKeyEnv": key_env})
            if key_env == KEY_ENV:
                peer.answers.append(answer("Hello."))
                assert client.command("glm.ask", {"question": "hi"})["text"] == "Hello."
                assert peer.headers[0]["Authorization"] == f"Bearer {KEY}"
                continue
            with pytest.raises(RpcError) as err:
                client.command("glm.ask", {"question": "again"})
            assert err.value.code == BACKEND_ERROR
            assert f"the API key in ${other_env} holds" in err.value.message
            assert KEY not in err.value.message and "Traceback" not in client.stderr()
            assert KEY not in client.stderr() and KEY not in json.dumps(client.notifications)
            assert len(peer.headers) == 1
        finally:
            client.close()


def test_any_exception_in_the_backend_is_masked(
    peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GLM_LSP_API_KEY", KEY + "\r\n")

    def leak(self: OpenAIBackend, request: CompletionRequest) -> dict:
        raise RuntimeError(f"header {os.environ['GLM_LSP_API_KEY']!r} and {KEY}")

    monkeypatch.setattr(OpenAIBackend, "body", leak)
    backend = OpenAIBackend(Settings(backend="openai", baseUrl=peer.url))
    with pytest.raises(BackendError) as err:
        backend.complete(CompletionRequest(prompt=""), lambda t: None, threading.Event())
    message = str(err.value)
    assert message.startswith(f"the request to {peer.url} failed: RuntimeError: header '***")
    assert KEY not in message and err.value.__cause__ is None and err.value.__suppress_context__


def test_cli_last_resort_masks_secrets(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("GLM_LSP_API_KEY", KEY)
    monkeypatch.setenv("GLM_LSP_TOKEN", "tok-" + KEY[::-1])

    def broken(settings: Settings, root: Path) -> int:
        raise RuntimeError(f"bug with {KEY} and {os.environ['GLM_LSP_TOKEN']}")

    monkeypatch.setattr("glm_lsp.commands.doctor.doctor", broken)
    assert main(["-v", "doctor"]) == 3  # the exit codes stay 0/2/3
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: bug with *** and ***" in err
    assert KEY not in err and KEY[::-1] not in err
    assert err.endswith("(run with -v for the traceback)\n")
