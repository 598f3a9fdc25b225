"""Switching conversations (ACP sessions) on one loaded model: the KV cache of the session being
left is saved and dropped, the other's is loaded from disk; against recomputing that session's
context from scratch (what a single in-memory cache would have to do).

Run: python -m benchmarks.bench_session_switch [--tokens N] [--model tiny|medium]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import medium_model, progress, tiny_model
from glm_lsp.core.conversations import ActiveCache
from glm_lsp.runtime.base import CompletionRequest
from glm_lsp.runtime.mlx import MLXModel

ROUNDS = 5


def context(words: int, seed: str) -> str:
    return " ".join(f"{seed}{i % 97}" for i in range(words))


def run(tokens: int = 4000, rounds: int = ROUNDS, size: str = "tiny") -> dict[str, Any]:
    path = medium_model() if size == "medium" else tiny_model()
    model = MLXModel(str(path))
    never = threading.Event()
    with tempfile.TemporaryDirectory() as tmp:
        convs = {}
        for name in ("a", "b"):
            conv = model.conversation(state_dir=Path(tmp) / name, speculative=False)
            text = context(tokens // 2, name)  # about two tokens a word
            conv.complete(CompletionRequest(prompt=text, max_tokens=1), lambda _t: None, never)
            conv.save()
            convs[name] = (conv, text)
        held = len(convs["a"][0].history)
        active = ActiveCache()
        active.activate(convs["a"][0])
        switches, recomputes = [], []
        for i in range(rounds):
            target = "b" if i % 2 == 0 else "a"
            conv, _ = convs[target]
            start = time.perf_counter()
            active.activate(conv)  # saves and drops the other one
            conv._ensure_cache()  # what the next completion does first: load from disk
            switches.append((time.perf_counter() - start) * 1000)
            fresh = model.conversation(state_dir=None, persist=False, speculative=False)
            start = time.perf_counter()
            request = CompletionRequest(prompt=convs[target][1], max_tokens=1)
            fresh.complete(request, lambda _t: None, never)
            recomputes.append((time.perf_counter() - start) * 1000)
        kv_bytes = convs["a"][0].kv_bytes() or convs["b"][0].kv_bytes()
    switch = statistics.median(switches)
    recompute = statistics.median(recomputes)
    return {
        "model": path.name,
        "context_tokens": held,
        "kv_mb": round(kv_bytes / 2**20, 1),
        "switch_ms_median": round(switch, 1),
        "recompute_ms_median": round(recompute, 1),
        "switch_vs_recompute": round(switch / recompute, 3),
        "switch_ms": [round(x, 1) for x in switches],
        "recompute_ms": [round(x, 1) for x in recomputes],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=4000)
    parser.add_argument("--model", choices=("tiny", "medium"), default="tiny")
    args = parser.parse_args()
    progress(f"session switch: two {args.tokens}-token conversations on the {args.model} model")
    print(json.dumps(run(args.tokens, size=args.model), indent=1), flush=True)


if __name__ == "__main__":
    main()
