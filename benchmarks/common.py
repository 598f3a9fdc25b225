"""Shared by the benchmarks: models, a real mlx_lm.server on 127.0.0.1, stats helpers, progress."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from glm_lsp.runtime.base import CompletionRequest
from glm_lsp.runtime.openai import to_openai_messages
from glm_lsp.tiny_model import ensure_tiny_model

MODEL_CACHE = Path(tempfile.gettempdir()) / "glm-lsp-bench-models"  # shared with bench_decode
ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "glm_lsp" / "demo_data" / "workspace"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
_T0 = time.monotonic()


def progress(message: str) -> None:
    """One line per stage on stderr, so stdout stays the table."""
    elapsed = int(time.monotonic() - _T0)
    print(f"[bench {elapsed // 60:02d}:{elapsed % 60:02d}] {message}", file=sys.stderr, flush=True)


def tiny_model() -> Path:
    return ensure_tiny_model(MODEL_CACHE)


def medium_model() -> Path:
    return ensure_tiny_model(MODEL_CACHE, hidden=1024, layers=8)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation): p99 of 200 samples is the 2nd largest."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def stop_after(text: str) -> str:
    """The stop token a scripted reply ends with (as MLXConversation._scripted_stop picks it)."""
    return "<|observation|>" if text.rstrip().endswith("</tool_call>") else "<|user|>"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chat_body(model: Path, request: CompletionRequest, max_tokens: int) -> dict[str, Any]:
    """The same conversation glm-lsp rendered, as an OpenAI chat request."""
    return {
        "model": str(model),
        "messages": to_openai_messages(list(request.messages)),
        "tools": list(request.tools or []),
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "chat_template_kwargs": {
            "enable_thinking": request.enable_thinking,
            "clear_thinking": request.clear_thinking,
        },
    }


class MlxServer:
    """A real `mlx_lm.server` subprocess on 127.0.0.1: bounded start-up wait, killed on exit."""

    def __init__(self, model: Path, startup_timeout: float = 180.0) -> None:
        self.model = model
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.startup_timeout = startup_timeout
        fd, name = tempfile.mkstemp(prefix="mlx-server-", suffix=".log")
        os.close(fd)
        self.log = Path(name)
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> MlxServer:
        cmd = [sys.executable, "-m", "mlx_lm", "server", "--model", str(self.model)]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log, "wb") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, env=ENV)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.__exit__()
                raise RuntimeError(f"mlx_lm.server exited at start-up:\n{self._log_tail()}")
            try:
                urllib.request.urlopen(f"{self.url}/models", timeout=2).close()
                return self
            except OSError:
                time.sleep(0.5)
        self.__exit__()
        raise RuntimeError(f"mlx_lm.server did not answer within {self.startup_timeout:.0f} s")

    def __exit__(self, *_exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.log.unlink(missing_ok=True)

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def post(self, path: str, body: dict[str, Any], timeout: float = 900.0) -> dict[str, Any]:
        request = urllib.request.Request(
            f"{self.url}/{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"mlx_lm.server answered {exc.code}: {exc.read()[:300]!r}") from None

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.post("chat/completions", body)

    def prime(self, text: str) -> dict[str, Any]:
        """Make the server process `text` as a prompt (its KV lands in the server's prompt cache)."""
        return self.post(
            "completions",
            {"model": str(self.model), "prompt": text, "max_tokens": 1, "temperature": 0.0},
        )

    def stream_ttft(self, body: dict[str, Any], timeout: float = 900.0) -> tuple[float, dict]:
        """Seconds from sending a streamed chat request to its first data event, and its usage."""
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        request = urllib.request.Request(
            f"{self.url}/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        start = time.perf_counter()
        first, usage = 0.0, {}
        with urllib.request.urlopen(request, timeout=timeout) as response:
            for line in response:  # ": keepalive" comments during prefill are not tokens
                if not line.startswith(b"data:"):
                    continue
                first = first or time.perf_counter()
                data = line[5:].strip()
                if data == b"[DONE]":
                    break
                usage = json.loads(data).get("usage") or usage
        return first - start, usage


def cached_tokens(usage: dict[str, Any]) -> int:
    return int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
