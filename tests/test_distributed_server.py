"""Teams' setup in miniature: a multi-rank OpenAI-compatible server (mlx_lm.server under
mlx.launch, two pipeline ranks on 127.0.0.1) serving glm-lsp's `--backend openai` requests. A
recording proxy between the two shows that the reasoning the server streamed is what the log
holds and what the next request sends back, byte for byte."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.test_distributed import LAUNCHER, _env, _port, logged, single, workspace

pytestmark = pytest.mark.skipif(not LAUNCHER.exists(), reason="mlx.launch is not installed")
TIMEOUT = 400


@contextmanager
def recording_proxy(upstream: str) -> Iterator[tuple[str, list[dict[str, Any]], list[str]]]:
    """Forwards POSTs to `upstream`, keeping each request body and each streamed reasoning."""
    bodies: list[dict[str, Any]] = []
    streamed: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            bodies.append(json.loads(raw))
            forward = urllib.request.Request(
                upstream + self.path.removeprefix("/v1"),
                data=raw,
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(forward, timeout=TIMEOUT) as answer:
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.headers["Content-Type"])
                self.end_headers()
                reasoning = []
                for line in answer:
                    self.wfile.write(line)
                    self.wfile.flush()
                    if line.startswith(b"data: {"):
                        for choice in json.loads(line[6:]).get("choices", []):
                            delta = choice.get("delta") or {}
                            reasoning.append(delta.get("reasoning") or "")
                streamed.append("".join(reasoning))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", bodies, streamed
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def mlx_lm_server_ranks(model: Path, tmp: Path) -> Iterator[str]:
    port = _port()
    err = tmp / "mlx-lm-server.txt"
    argv = [
        str(LAUNCHER), "--hosts", "127.0.0.1,127.0.0.1", "--backend", "ring",
        "--starting-port", str(_port()), "--python", sys.executable,
        "-m", "mlx_lm", "server", "--model", str(model), "--port", str(port), "--pipeline",
    ]  # fmt: skip
    with open(err, "wb") as e:
        proc = subprocess.Popen(
            argv, env=_env(), stdout=e, stderr=e, stdin=subprocess.DEVNULL, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                urllib.request.urlopen(base + "/models", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, err.read_text()
                assert time.monotonic() < deadline, "mlx_lm.server ranks did not listen"
                time.sleep(0.5)
        yield base
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both ranks
        proc.wait(timeout=30)


def test_two_rank_mlx_lm_server_serves_glm_lsp_with_reasoning_intact(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    root = workspace(tmp_path, "ws")
    with (
        mlx_lm_server_ranks(tiny_model_dir, tmp_path) as upstream,
        recording_proxy(upstream) as (base, bodies, streamed),
    ):
        flags = ["--backend", "openai", "--base-url", base, "--model", str(tiny_model_dir)]
        flags += ["--kind", "refactor", "--temperature", "0", "--max-tokens", "24"]
        flags += ["--max-steps", "1", "--thinking", "enabled"]
        for question in ("Rename add.", "Now explain it."):
            out = single("run", str(root), question, *flags)
            assert out.returncode == 0, out.stderr
    turns = logged(root)
    first = [m for m in turns[0] if m["role"] == "assistant"]
    assert first and first[0]["reasoning_content"]  # the model reasoned
    # What the server streamed is what the log holds, byte for byte...
    assert [m["reasoning_content"] for m in first] == streamed[: len(first)]
    # ...and what the next request sent back to the server.
    replayed = [m for m in bodies[-1]["messages"] if m["role"] == "assistant"]
    assert [m["reasoning_content"] for m in replayed[: len(first)]] == streamed[: len(first)]
    assert bodies[-1]["chat_template_kwargs"]["clear_thinking"] is False
