"""Decode speed through glm-lsp's runtime vs raw mlx_lm.stream_generate, interleaved in one run.

Run: python -m benchmarks.bench_decode   (not a test; prints ratios against the raw mlx-lm anchor)
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from mlx_lm import stream_generate
from mlx_lm.models.cache import make_prompt_cache
from mlx_lm.sample_utils import make_sampler

from glm_lsp.glm.format import render_prompt
from glm_lsp.runtime.base import CompletionRequest
from glm_lsp.runtime.mlx import MLXModel
from glm_lsp.tiny_model import ensure_tiny_model

TOKENS = 128
ROUNDS = 3


def _raw_tps(m: MLXModel, prompt: str) -> float:
    """mlx-lm's own generation_tps for the same prompt, sampler and length."""
    responses = list(
        stream_generate(
            m.model,
            m.tokenizer,
            prompt,
            max_tokens=TOKENS,
            sampler=make_sampler(0.7, 1.0),
            prompt_cache=make_prompt_cache(m.model),
        )
    )
    return responses[-1].generation_tps


def _ours_tps(m: MLXModel, prompt: str) -> float:
    conv = m.conversation()
    # Stop tokens end a completion early; keep sampling by treating none as stop for the measurement.
    stops, m.stop_text = m.stop_text, {}
    try:
        c = conv.complete(
            CompletionRequest(prompt=prompt, max_tokens=TOKENS), lambda t: None, threading.Event()
        )
    finally:
        m.stop_text = stops
    return c.stats.decodeTps


def measure(model_dir: Path) -> dict[str, Any]:
    m = MLXModel(str(model_dir))
    # A short prompt without the tool list: this measures decode, and the 8-bit MoE's prefill runs at
    # about 10 tokens/s on this CPU, so the full 1.8k-token agent prompt would only add minutes.
    prompt = render_prompt([{"role": "user", "content": "Explain the cache module."}])
    _raw_tps(m, prompt), _ours_tps(m, prompt)  # warm-up both paths
    raw, ours = [], []
    for _ in range(ROUNDS):  # interleaved so drift hits both sides alike
        raw.append(_raw_tps(m, prompt))
        ours.append(_ours_tps(m, prompt))
    r, o = statistics.median(raw), statistics.median(ours)
    rounds = {
        "raw_rounds": [round(x, 1) for x in raw],
        "glm_lsp_rounds": [round(x, 1) for x in ours],
    }
    return {"raw_tps": round(r, 1), "glm_lsp_tps": round(o, 1), "ratio": round(o / r, 3), **rounds}


def run() -> dict[str, float]:
    cache = Path(tempfile.gettempdir()) / "glm-lsp-bench-models"
    tiny = measure(ensure_tiny_model(cache))
    medium = measure(ensure_tiny_model(cache, hidden=1024, layers=8))
    for name, res in (("tiny", tiny), ("medium (--hidden 1024 --layers 8)", medium)):
        verdict = "PASS" if res["ratio"] >= 0.95 else "MISS"
        print(
            f"{name:36} raw {res['raw_tps']:8.1f} tok/s  glm-lsp {res['glm_lsp_tps']:8.1f} tok/s  "
            f"ratio {res['ratio']:.3f}  (target >= 0.95) {verdict}"
        )
    return {"decode_ratio_tiny": tiny["ratio"], "decode_ratio_medium": medium["ratio"]}


if __name__ == "__main__":
    t = time.perf_counter()
    run()
    print(f"({time.perf_counter() - t:.0f} s)")
