"""The per-user host (issue 26): what sharing one loaded model buys, and what it costs per token.

- `host_second_ttft_ratio`: a second front-end on a workspace (`glm-lsp run`, a fresh process, as
  a restarted language server is) from its start to its first streamed text: attached to a host
  that holds the model and the workspace's KV, over the same with `--no-host`, which loads its own
  copy of the model and the workspace's KV from disk. Each side has its own workspace, warmed by
  one request first; interleaved rounds, median. The "larger" model (hidden 512, 4 layers, 8-bit).
- `host_attach_ms`: of that, the attach itself (connect, token, hello) measured in-process.
- `host_decode_ratio`: client-side decode rate (generated tokens over the time from the first
  streamed text to the completion's return) through the host (another process, its socket) over the same completion run
  in-process on the same model; tiny model, where a per-token overhead shows most. Target >= 0.97.

- `host_restart_prefill_fraction`: the first request after a host restart through its OpenAI
  endpoint (a follow-up to a conversation the host answered before the restart): prefilled /
  prompt tokens, from its `usage`. Anchor: `mlx_lm.server`, warmed with the same first request,
  restarted, sent the same follow-up. The larger model; scripted replies on the host.

Everything runs in a private $XDG_RUNTIME_DIR, and the host is stopped at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.common import ENV, MODEL_CACHE, ROOT, progress, tiny_model
from glm_lsp.tiny_model import ensure_tiny_model

REPLY = "A is one. " * 150  # ~450 tokens of scripted answer
PROMPT_TEXT = "<|system|>\nYou help.<|user|>\nWhat is A?<|assistant|>\n"


def _env(runtime: Path, host: bool) -> dict[str, str]:
    env = {**ENV, "XDG_RUNTIME_DIR": str(runtime), "PYTHONPATH": str(ROOT)}
    env.pop("GLM_LSP_HOST", None)
    if not host:
        env["GLM_LSP_HOST"] = "off"
    return env


def _first_text_s(model: Path, ws: Path, replies: Path, env: dict[str, str]) -> float:
    """Seconds from starting `glm-lsp run` to the first byte of its answer on stdout."""
    cmd = [sys.executable, "-m", "glm_lsp.cli", "run", str(ws), "What is A?", "--kind", "ask"]
    cmd += ["--model", str(model), "--scripted-replies", str(replies)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    first = proc.stdout.read(1)  # the answer is printed as it comes
    elapsed = time.perf_counter() - start
    proc.stdout.read()
    if proc.wait(timeout=600) != 0 or not first:
        raise RuntimeError(f"glm-lsp run failed ({proc.returncode})")
    return elapsed


def second_frontend(rounds: int) -> dict[str, Any]:
    model = ensure_tiny_model(MODEL_CACHE, hidden=512, layers=4)
    work = Path(tempfile.mkdtemp(prefix="glm-bench-host-"))
    runtime = work / "run"
    runtime.mkdir(mode=0o700)
    replies = work / "replies.json"
    replies.write_text('["A is 1."]')
    host_env = _env(runtime, host=True)
    progress("host: a host with the larger model; two workspaces warmed by one request each")
    subprocess.run(
        [sys.executable, "-m", "glm_lsp.cli", "host", "start", "--model", str(model)],
        env=host_env, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    try:
        hosted_ws, own_ws = _workspace(work, "hosted"), _workspace(work, "own")
        _first_text_s(model, hosted_ws, replies, host_env)  # the host loads it and prefills
        _first_text_s(model, own_ws, replies, _env(runtime, False))  # its KV goes to disk
        hosted, own = [], []
        for i in range(rounds):
            hosted.append(_first_text_s(model, hosted_ws, replies, host_env))
            own.append(_first_text_s(model, own_ws, replies, _env(runtime, False)))
            progress(f"host: round {i + 1}: {hosted[-1]:.2f} s attached, {own[-1]:.2f} s own load")
        attach_ms = _attach_ms(runtime)
    finally:
        subprocess.run([sys.executable, "-m", "glm_lsp.cli", "host", "stop"], env=host_env,
                       capture_output=True, timeout=120, check=False)  # fmt: skip
        shutil.rmtree(work, ignore_errors=True)
    h, o = statistics.median(hosted), statistics.median(own)
    return {
        "host_second_ttft_s": round(h, 3),
        "own_load_ttft_s": round(o, 3),
        "host_second_ttft_ratio": round(h / o, 3),
        "host_attach_ms": attach_ms,
        "rounds_hosted_s": [round(x, 3) for x in hosted],
        "rounds_own_s": [round(x, 3) for x in own],
    }


def _workspace(work: Path, name: str) -> Path:
    ws = work / name
    ws.mkdir()
    (ws / "a.py").write_text("A = 1\n")
    return ws


def _attach_ms(runtime: Path) -> float:
    """connect + token + hello to the running host, in this process, median of 20."""
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    from glm_lsp.host import registry
    from glm_lsp.host.client import Connection

    reg = registry.live()
    assert reg is not None
    times = []
    for _ in range(20):
        start = time.perf_counter()
        Connection(reg, "bench").close()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2)


def _decode_rate(complete: Any) -> float:
    """Generated tokens per second from the first streamed text to the completion's return,
    client side (the host sends text in batches, so pieces are not tokens)."""
    stamps: list[float] = []
    completion = complete(lambda _piece: stamps.append(time.perf_counter()))
    return (completion.stats.generatedTokens - 1) / (time.perf_counter() - stamps[0])


def decode_overhead(rounds: int) -> dict[str, Any]:
    from glm_lsp.config import Settings
    from glm_lsp.host.client import HostBackend
    from glm_lsp.host.engine import OneReply
    from glm_lsp.runtime.base import CompletionRequest
    from glm_lsp.runtime.mlx import MLXModel

    model = tiny_model()
    work = Path(tempfile.mkdtemp(prefix="glm-bench-host-decode-"))
    runtime = work / "run"
    runtime.mkdir(mode=0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    os.environ.pop("GLM_LSP_HOST", None)
    settings = Settings(model=str(model), persistKvCache=False, speculativeDecoding=False)
    progress("host: decode through the host vs in-process, tiny model, interleaved")
    hosted_backend = HostBackend(settings, None, client="run")  # starts the host
    local_model = MLXModel(str(model))
    try:
        hosted, local = [], []
        for _ in range(rounds + 1):  # the first round warms both up and is dropped
            request = CompletionRequest(prompt=PROMPT_TEXT, max_tokens=1000)
            cancel = threading.Event()
            hosted_backend.scripted = OneReply(REPLY)
            hosted.append(
                _decode_rate(lambda on, r=request, c=cancel: hosted_backend.complete(r, on, c))
            )
            conv = local_model.conversation(persist=False, speculative=False)
            conv.scripted = OneReply(REPLY)
            local.append(_decode_rate(lambda on, v=conv, r=request, c=cancel: v.complete(r, on, c)))
        hosted, local = hosted[1:], local[1:]
    finally:
        hosted_backend.close()
        subprocess.run([sys.executable, "-m", "glm_lsp.cli", "host", "stop"],
                       env=_env(runtime, True), capture_output=True, timeout=120, check=False)  # fmt: skip
        shutil.rmtree(work, ignore_errors=True)
    ratios = [h / loc for h, loc in zip(hosted, local, strict=True)]
    return {
        "host_decode_ratio": round(statistics.median(ratios), 4),
        "host_tokens_per_s": round(statistics.median(hosted), 1),
        "in_process_tokens_per_s": round(statistics.median(local), 1),
        "round_ratios": [round(r, 4) for r in ratios],
    }


def _post(url: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(request, timeout=900) as response:
        return json.load(response)


def openai_restart() -> dict[str, Any]:
    from benchmarks.common import MlxServer, cached_tokens
    from glm_lsp.agent.prompts import SYSTEM_PROMPT
    from glm_lsp.glm.tool_schemas import TOOLS

    model = ensure_tiny_model(MODEL_CACHE, hidden=512, layers=4)
    work = Path(tempfile.mkdtemp(prefix="glm-bench-host-openai-"))
    runtime = work / "run"
    runtime.mkdir(mode=0o700)
    env = _env(runtime, True) | {"XDG_STATE_HOME": str(work / "state")}
    replies = work / "replies.json"
    replies.write_text(json.dumps(["I look at the module.</think>A is 1."]))
    first = {
        "model": str(model),
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": "What is A in pkg/a.py?"},
        ],
        "tools": TOOLS,
        "max_tokens": 64,
    }
    glm = [sys.executable, "-m", "glm_lsp.cli"]
    start = [*glm, "host", "start", "--model", str(model), "--openai-port", "0"]
    start += ["--scripted-replies", str(replies)]

    def follow_up(answer: dict[str, Any]) -> dict[str, Any]:
        assistant = {"role": "assistant", "content": answer.get("content") or ""}
        if answer.get("reasoning_content"):
            assistant["reasoning_content"] = answer["reasoning_content"]
        messages = [*first["messages"], assistant, {"role": "user", "content": "And B?"}]
        return {**first, "messages": messages}

    progress("host: OpenAI endpoint, a conversation, a host restart, its follow-up")
    try:
        subprocess.run(start, env=env, check=True, capture_output=True, timeout=600)
        url, token = _endpoint(runtime, env)
        answer = _post(f"{url}/chat/completions", first, token)["choices"][0]["message"]
        second = follow_up(answer)
        subprocess.run(
            [*glm, "host", "stop"], env=env, check=True, capture_output=True, timeout=600
        )
        subprocess.run(start, env=env, check=True, capture_output=True, timeout=600)
        url, token = _endpoint(runtime, env)
        usage = _post(f"{url}/chat/completions", second, token)["usage"]
    finally:
        subprocess.run(
            [*glm, "host", "stop"], env=env, capture_output=True, timeout=600, check=False
        )
    glm_prompt, glm_cached = usage["prompt_tokens"], cached_tokens(usage)
    progress("host: the same through mlx_lm.server, restarted between the two requests")
    with MlxServer(model) as server:
        server.chat(first)
    with MlxServer(model) as server:
        anchor = server.chat(second)["usage"]
    shutil.rmtree(work, ignore_errors=True)
    return {
        "host_restart_prefill_fraction": round((glm_prompt - glm_cached) / glm_prompt, 4),
        "mlx_server_restart_prefill_fraction": round(
            (anchor["prompt_tokens"] - cached_tokens(anchor)) / anchor["prompt_tokens"], 4
        ),
        "host_restart_usage": usage,
        "mlx_server_restart_usage": anchor,
    }


def _endpoint(runtime: Path, env: dict[str, str]) -> tuple[str, str]:
    info = json.loads((runtime / "glm-lsp" / "host.json").read_text())
    token = subprocess.run(
        [sys.executable, "-m", "glm_lsp.cli", "host", "token"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    return info["openai"], token


def measure(rounds: int = 5) -> dict[str, Any]:
    return {
        **second_frontend(max(rounds // 2, 2)),
        **decode_overhead(rounds),
        **openai_restart(),
    }


if __name__ == "__main__":
    print(json.dumps(measure(), indent=1))
