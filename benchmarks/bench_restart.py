"""The first request after a restart: prefilled / prompt tokens, persistKvCache on and off.

glm-lsp: the scripted session's workspace (its log and persisted KV cache in .glm-lsp) is copied
twice and a new process (`glm-lsp run`, the same Session and runtime as `serve`) asks one question
on each copy, with --persist-kv-cache and --no-persist-kv-cache. The question is answered in one
completion, so the request's stats are that completion's.

Anchor: mlx_lm.server is warmed with the session's conversation, killed, started again, and sent
the same follow-up; its prompt cache lives only in memory, so it prefills everything.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ENV, ROOT, MlxServer, cached_tokens, chat_body, progress
from benchmarks.scripted_session import ScriptedSession
from glm_lsp.agent.prompts import SYSTEM_PROMPT
from glm_lsp.glm.tool_schemas import TOOLS
from glm_lsp.runtime.base import CompletionRequest

QUESTION = "What does Cart.total return for an empty cart?"
ANSWER = "It returns 0.0: compute_total sums no prices and rounds the taxed subtotal."
_STATS = re.compile(r"turn (\d+): (\d+) prompt tokens \((\d+) reused, (\d+) prefilled\)")


def glm_after_restart(session: ScriptedSession, workdir: Path, persist: bool) -> dict[str, Any]:
    ws = workdir / ("ws-persist" if persist else "ws-no-persist")
    shutil.copytree(session.root, ws)
    replies = workdir / f"replies-{persist}.json"
    replies.write_text(json.dumps([ANSWER]))
    flag = "--persist-kv-cache" if persist else "--no-persist-kv-cache"
    cmd = [sys.executable, "-m", "glm_lsp.cli", "run", str(ws), QUESTION, "--kind", "ask"]
    cmd += ["--model", str(session.model.path), "--scripted-replies", str(replies), flag]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=ENV, cwd=ROOT)
    wall = time.perf_counter() - start
    match = _STATS.search(out.stderr)
    if out.returncode != 0 or not match:
        raise RuntimeError(f"glm-lsp run failed ({out.returncode}): {out.stderr[-1500:]}")
    _turn, prompt, reused, prefilled = (int(g) for g in match.groups())
    return {
        "prompt": prompt,
        "reused": reused,
        "prefilled": prefilled,
        "fraction": round(prefilled / prompt, 4),
        "process_wall_s": round(wall, 2),
        "workspace": ws,
    }


def follow_up_request(ws: Path) -> CompletionRequest:
    """The follow-up exactly as the restarted daemon sent it: logged history + its user message."""
    lines = (ws / ".glm-lsp" / "thinking.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    history = [m for r in records[:-1] for m in r["messages"]]
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, *history, records[-1]["messages"][0]]
    return CompletionRequest(prompt="", messages=messages, tools=TOOLS, enable_thinking=False)


def server_after_restart(session: ScriptedSession, follow_up: CompletionRequest) -> dict[str, Any]:
    model = session.model.path
    with MlxServer(model) as server:  # the daemon before the restart has seen the conversation
        server.chat(chat_body(model, session.steps[-1].request, 1))
    with MlxServer(model) as server:
        usage = server.chat(chat_body(model, follow_up, 1))["usage"]
    prompt, cached = usage["prompt_tokens"], cached_tokens(usage)
    return {
        "prompt": prompt,
        "cached": cached,
        "prefilled": prompt - cached,
        "fraction": round((prompt - cached) / prompt, 4),
    }


def measure(session: ScriptedSession) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="glm-lsp-bench-restart-") as tmp:
        progress("restart: glm-lsp run in a new process, persistKvCache on")
        on = glm_after_restart(session, Path(tmp), persist=True)
        progress("restart: glm-lsp run in a new process, persistKvCache off")
        off = glm_after_restart(session, Path(tmp), persist=False)
        follow_up = follow_up_request(on.pop("workspace"))
        off.pop("workspace")
        progress("restart: mlx_lm.server warmed, restarted, sent the same follow-up")
        server = server_after_restart(session, follow_up)
    return {
        "restart_prefill_fraction": on["fraction"],
        "anchor": server["fraction"],
        "raw": {"persist_on": on, "persist_off": off, "mlx_server": server},
    }
