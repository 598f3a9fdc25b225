"""LSP responsiveness: textDocument/codeAction and glm.status round trips, idle and while a long
generation runs, against the real `glm-lsp serve` over stdio (pygls's client, as the demo).

The generation is a glm.refactor whose scripted reply is a few thousand tokens of reasoning forced
through the tiny model; samples are taken only while it streams, and it is cancelled afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient

from benchmarks.common import FIXTURE, percentile, progress, tiny_model
from glm_lsp.server.client_edits import client_converter

TIMEOUT = 120.0
GAP_S = 0.03  # between rounds: spreads samples over the generation, as an editor spreads requests


class Client:
    def __init__(self) -> None:
        self.client = LanguageClient("glm-lsp-bench", "1", converter_factory=client_converter)
        self.streamed = 0

        @self.client.feature("glm/stream")
        def on_stream(_params: Any) -> None:
            self.streamed += 1

    async def code_action(self, uri: str) -> float:
        params = lsp.CodeActionParams(
            text_document=lsp.TextDocumentIdentifier(uri=uri),
            range=lsp.Range(start=lsp.Position(18, 8), end=lsp.Position(18, 8)),
            context=lsp.CodeActionContext(diagnostics=[]),
        )
        start = time.perf_counter()
        actions = await asyncio.wait_for(
            self.client.text_document_code_action_async(params), TIMEOUT
        )
        elapsed = time.perf_counter() - start
        assert actions, "no code actions"
        return elapsed * 1000

    async def command(self, name: str, arg: dict[str, Any]) -> Any:
        params = lsp.ExecuteCommandParams(command=name, arguments=[arg])
        return await asyncio.wait_for(self.client.workspace_execute_command_async(params), TIMEOUT)

    async def status(self) -> tuple[float, bool]:
        start = time.perf_counter()
        result = await self.command("glm.status", {})
        return (time.perf_counter() - start) * 1000, bool(result["busy"])


async def _samples(c: Client, uri: str, n: int, *, while_busy: bool) -> dict[str, list[float]]:
    """n rounds of (codeAction, glm.status); when while_busy, stop once generation has ended."""
    out: dict[str, list[float]] = {"codeAction": [], "glm.status": []}
    for _ in range(n):
        action_ms = await c.code_action(uri)
        status_ms, busy = await c.status()
        if while_busy and not busy:
            break  # this round may have straddled the end: drop it
        out["codeAction"].append(action_ms)
        out["glm.status"].append(status_ms)
        await asyncio.sleep(GAP_S)
    return out


async def _run(root: Path, model: Path, script: Path, samples: int) -> dict[str, Any]:
    c = Client()
    cmd = [sys.executable, "-m", "glm_lsp.cli", "serve", "--model", str(model)]
    await c.client.start_io(*cmd, "--scripted-replies", str(script))
    try:
        await asyncio.wait_for(
            c.client.initialize_async(
                lsp.InitializeParams(
                    # as our plugins: glm/stream, and the command waits for its result
                    capabilities=lsp.ClientCapabilities(experimental={"glm": {"stream": True}}),
                    root_uri=root.as_uri(),
                    workspace_folders=[lsp.WorkspaceFolder(uri=root.as_uri(), name="ws")],
                )
            ),
            TIMEOUT,
        )
        c.client.initialized(lsp.InitializedParams())
        cart = root / "shop" / "cart.py"
        uri = cart.as_uri()
        c.client.text_document_did_open(
            lsp.DidOpenTextDocumentParams(
                lsp.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text=cart.read_text()
                )
            )
        )
        await _samples(c, uri, 10, while_busy=False)  # warm-up: imports, grammar load
        progress(f"lsp_latency: {samples} idle rounds")
        idle = await _samples(c, uri, samples, while_busy=False)
        job = asyncio.ensure_future(
            c.command("glm.refactor", {"uri": uri, "instruction": "Think about it at length."})
        )
        deadline = time.monotonic() + TIMEOUT  # model load + 1.8k-token prefill come first
        while not c.streamed and not job.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if not c.streamed:
            raise RuntimeError("the long generation never started streaming")
        progress(f"lsp_latency: up to {samples} rounds while the generation streams")
        busy = await _samples(c, uri, samples, while_busy=True)
        finished_early = job.done()
        await c.command("glm.cancel", {})
        with contextlib.suppress(Exception):
            await asyncio.wait_for(job, TIMEOUT)
        await asyncio.wait_for(c.client.shutdown_async(None), 30)
        c.client.exit(None)
        return {
            "idle": idle,
            "busy": busy,
            "streamed_notifications": c.streamed,
            "generation_ended_before_sampling_did": finished_early,
        }
    finally:
        # pygls has no public handle on the server process it started: see commands/demo.py.
        process = c.client._server
        if process is not None and process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
        await c.client.stop()


def _summary(samples: dict[str, list[float]]) -> dict[str, Any]:
    both = samples["codeAction"] + samples["glm.status"]
    out: dict[str, Any] = {"n": len(both)}
    if both:
        out |= {
            "p50_ms": round(statistics.median(both), 2),
            "p99_ms": round(percentile(both, 0.99), 2),
        }
        out |= {"max_ms": round(max(both), 2)}
    for name, values in samples.items():
        if values:
            out[name] = {
                "n": len(values),
                "p50_ms": round(statistics.median(values), 2),
                "p99_ms": round(percentile(values, 0.99), 2),
            }
    return out


def measure(samples: int = 100, reasoning_words: int = 3000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="glm-lsp-bench-lsp-") as tmp:
        root = Path(tmp) / "ws"
        shutil.copytree(FIXTURE, root)
        script = Path(tmp) / "replies.json"
        # refactor thinks (thinking "auto"): all of this streams as reasoning
        script.write_text(json.dumps(["word " * reasoning_words + "</think>Done."]))
        raw = asyncio.run(_run(root, tiny_model(), script, samples))
    idle, busy = _summary(raw["idle"]), _summary(raw["busy"])
    if not busy["n"]:
        raise RuntimeError("the generation ended before any sample was taken")
    return {
        "lsp_latency_p50_ms": busy["p50_ms"],
        "lsp_latency_p99_ms": busy["p99_ms"],
        "anchor_p50": idle["p50_ms"],
        "anchor_p99": idle["p99_ms"],
        "raw": {
            "busy": busy,
            "idle": idle,
            "streamed_notifications": raw["streamed_notifications"],
            "generation_ended_before_sampling_did": raw["generation_ended_before_sampling_did"],
            "reasoning_words": reasoning_words,
        },
    }
