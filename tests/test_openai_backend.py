"""The OpenAI-compatible backend against a scripted local peer and a real mlx_lm.server."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from glm_lsp.agent.prompts import AgentRequest
from glm_lsp.agent.session import Session
from glm_lsp.config import Settings
from glm_lsp.runtime.base import BackendError, CompletionRequest
from glm_lsp.runtime.openai import OpenAIBackend

FIXTURE = Path(__file__).parent / "fixtures" / "rename"
REASONING = "Let me look at a.py —\n  carefully. ünïcode"


def sse(*events: dict) -> bytes:
    return (
        b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
    )


def delta(**d: object) -> dict:
    return {"choices": [{"index": 0, "delta": d, "finish_reason": None}]}


TOOL_TURN = sse(
    delta(reasoning_content=REASONING[:10]),
    delta(reasoning_content=REASONING[10:]),
    delta(content="Reading."),
    delta(
        tool_calls=[{"index": 0, "id": "x", "function": {"name": "read_file", "arguments": '{"pa'}}]
    ),
    delta(tool_calls=[{"index": 0, "function": {"arguments": 'th": "pkg/a.py"}'}}]),
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    {
        "choices": [],
        "usage": {
            "prompt_tokens": 100,
            "completion_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 60},
        },
    },
)
ANSWER = sse(
    delta(reasoning="Fine."),
    delta(content="a.py doubles x."),
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
)


class Peer:
    """A local server that answers each POST with the next scripted body (or behaviour)."""

    def __init__(self, answers: list[bytes | Callable]) -> None:
        self.answers, self.bodies, self.headers = list(answers), [], []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                peer.bodies.append(json.loads(self.rfile.read(length)))
                peer.headers.append(dict(self.headers))
                answer = peer.answers.pop(0)
                if callable(answer):
                    answer(self)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def peer() -> Iterator[Callable[[list], Peer]]:
    made: list[Peer] = []

    def make(answers: list) -> Peer:
        made.append(Peer(answers))
        return made[-1]

    yield make
    for p in made:
        p.close()


def test_request_bodies_carry_thinking_tools_and_exact_reasoning(
    peer, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("GLM_TEST_KEY", "sk-very-secret")
    server = peer([TOOL_TURN, ANSWER, ANSWER])
    ws = tmp_path / "ws"
    shutil.copytree(FIXTURE, ws)
    settings = Settings(
        backend="openai", baseUrl=server.url, model="glm-4.7", apiKeyEnv="GLM_TEST_KEY"
    )
    session = Session(ws, settings, OpenAIBackend(settings))
    streamed: list[tuple[str, str]] = []
    no_edits = lambda c: (False, None)  # noqa: E731
    out = session.run(
        AgentRequest(kind="refactor", instruction="look"),
        lambda k, t: streamed.append((k, t)),
        threading.Event(),
        no_edits,
    )
    assert out.result.text == "a.py doubles x."
    assert "".join(t for k, t in streamed if k == "reasoning").startswith(REASONING)
    assert out.result.stats.promptTokens == 100 and out.result.stats.reusedTokens == 60
    session.run(
        AgentRequest(kind="ask", instruction="and b.py?"),
        lambda k, t: None,
        threading.Event(),
        no_edits,
    )

    first, _, third = server.bodies
    assert first["stream"] is True and first["tools"][0]["function"]["name"] == "read_file"
    assert first["thinking"] == {"type": "enabled", "clear_thinking": False}
    assert first["chat_template_kwargs"] == {"enable_thinking": True, "clear_thinking": False}
    assert third["thinking"]["type"] == "disabled"  # ask: turn-level thinking off
    earlier = [m for m in third["messages"] if m["role"] == "assistant"]
    assert earlier[0]["reasoning_content"] == REASONING
    assert earlier[0]["tool_calls"][0]["function"] == {
        "name": "read_file",
        "arguments": '{"path": "pkg/a.py"}',
    }
    tool = next(m for m in third["messages"] if m["role"] == "tool")
    assert (
        tool["tool_call_id"] == earlier[0]["tool_calls"][0]["id"] and "def foo" in tool["content"]
    )
    assert server.headers[0]["Authorization"] == "Bearer sk-very-secret"
    assert "sk-very-secret" not in session.log.path.read_text()


def _status_500(h: BaseHTTPRequestHandler) -> None:
    h.send_response(500)
    h.end_headers()
    h.wfile.write(b"model crashed")


def _bad_json(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.end_headers()
    h.wfile.write(b"data: {oops\n\n")


def _dies(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.end_headers()
    h.wfile.write(b"data: " + json.dumps(delta(content="partial")).encode() + b"\n\n")
    h.wfile.flush()
    h.connection.shutdown(socket.SHUT_RDWR)


def _stalls(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.end_headers()
    h.wfile.flush()
    time.sleep(2)


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        (_status_500, "answered HTTP 500: model crashed"),
        (_bad_json, "invalid JSON"),
        (_dies, "ended before the completion finished"),
        (_stalls, "stalled past the timeout"),
    ],
)
def test_backend_failures_are_clear(peer, behaviour, message: str, monkeypatch) -> None:
    monkeypatch.setenv("GLM_LSP_API_KEY", "sk-hidden")
    server = peer([behaviour])
    backend = OpenAIBackend(Settings(backend="openai", baseUrl=server.url), idle_timeout=0.5)
    with pytest.raises(BackendError, match=message) as err:
        backend.complete(
            CompletionRequest(prompt="", messages=[{"role": "user", "content": "x"}]),
            lambda t: None,
            threading.Event(),
        )
    assert "sk-hidden" not in str(err.value)


def test_connection_refused(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = OpenAIBackend(Settings(backend="openai", baseUrl=f"http://127.0.0.1:{port}/v1"))
    with pytest.raises(BackendError, match="connection refused"):
        backend.complete(CompletionRequest(prompt=""), lambda t: None, threading.Event())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_full_request_against_real_mlx_lm_server(tiny_model_dir: Path, tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlx_lm",
            "server",
            "--model",
            str(tiny_model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        ws = tmp_path / "ws"
        shutil.copytree(FIXTURE, ws)
        settings = Settings(
            backend="openai",
            baseUrl=f"http://127.0.0.1:{port}/v1",
            model=str(tiny_model_dir),
            maxTokens=24,
            maxSteps=2,
        )
        session = Session(ws, settings, OpenAIBackend(settings))
        out = session.run(
            AgentRequest(kind="ask", instruction="What is in pkg?"),
            lambda k, t: None,
            threading.Event(),
            lambda c: (False, None),
        )
        assert out.result.stats.promptTokens > 0 and out.result.stats.generatedTokens > 0
        assert session.log.records()[0]["messages"][0]["role"] == "user"
    finally:
        proc.kill()
        proc.wait(timeout=30)
