"""KV cache bytes and decode speed with kvBits 8 vs unquantised, at an ~8k-token context.

Tiny model. Each setting prefills the same ~8k-token prompt once into its own conversation; then
rounds (interleaved) decode DECODE_TOKENS free-running tokens on top of it: the prompt is reused
from the cache each round, so only decode at ~8k context is timed. Bytes are the keys and values
held (MLXConversation.kv_bytes: up to the offset, scales and biases included).
"""

from __future__ import annotations

import statistics
import threading
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten
from mlx_lm.models.cache import KVCache

from benchmarks.common import progress, tiny_model
from glm_lsp.glm.format import render_prompt
from glm_lsp.runtime.base import CompletionRequest
from glm_lsp.runtime.mlx import KV_GROUP_SIZE, MLXConversation, MLXModel

TARGET_TOKENS = 8192
DECODE_TOKENS = 64


def long_prompt(m: MLXModel, target: int = TARGET_TOKENS) -> str:
    """A user message of code-like lines: the longest such prompt of at most `target` tokens."""

    def render(n: int) -> str:
        lines = "\n".join(f"symbol_{i} = compute({i}, value)" for i in range(n))
        return render_prompt([{"role": "user", "content": lines}])

    lo, hi = 1, 64
    while len(m.encode(render(hi))) <= target:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # the most lines that stay within target
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if len(m.encode(render(mid))) <= target else (lo, mid)
    return render(lo)


def _decode_tps(m: MLXModel, conv: MLXConversation, prompt: str) -> dict[str, Any]:
    # Stop tokens would end a random model's text early; sample the full length.
    stops, m.stop_text = m.stop_text, {}
    try:
        c = conv.complete(
            CompletionRequest(prompt=prompt, max_tokens=DECODE_TOKENS),
            lambda _t: None,
            threading.Event(),
        )
    finally:
        m.stop_text = stops
    return c.stats.to_dict()


def _state_bytes(cache: Any) -> int:
    return sum(a.nbytes for _, a in tree_flatten(cache.state) if isinstance(a, mx.array))


def bf16_bytes_ratio(cache: list[Any]) -> float:
    """The same keys and values held as bfloat16 (GLM-4.7's dtype; the tiny model computes in
    float32, which flatters 8-bit: scales and biases weigh less next to 4-byte elements)."""
    plain = quantised = 0
    for layer in cache:
        b = KVCache()
        b.keys, b.values = layer.keys.astype(mx.bfloat16), layer.values.astype(mx.bfloat16)
        b.offset = layer.offset
        plain += _state_bytes(b)
        quantised += _state_bytes(b.to_quantized(group_size=KV_GROUP_SIZE, bits=8))
    return quantised / plain


def measure(rounds: int = 3) -> dict[str, Any]:
    m = MLXModel(str(tiny_model()))
    prompt = long_prompt(m)
    convs = {bits: m.conversation(kv_bits=bits) for bits in (None, 8)}
    first: dict[Any, dict[str, Any]] = {}
    size: dict[Any, int] = {}
    for bits, conv in convs.items():
        progress(f"kv8: prefill {len(m.encode(prompt))} tokens, kvBits {bits}")
        first[bits] = _decode_tps(m, conv, prompt)
        size[bits] = conv.kv_bytes()
    tps: dict[Any, list[float]] = {None: [], 8: []}
    for r in range(rounds):
        for bits in (None, 8) if r % 2 == 0 else (8, None):  # alternate order against drift
            stats = _decode_tps(m, convs[bits], prompt)
            assert stats["prefilledTokens"] <= 1, stats  # the prompt came from the cache
            tps[bits].append(stats["decodeTps"])
    none, eight = statistics.median(tps[None]), statistics.median(tps[8])
    return {
        "kv8_bytes_ratio": round(size[8] / size[None], 3),
        "kv8_decode_ratio": round(eight / none, 3),
        "raw": {
            "prompt_tokens": first[None]["promptTokens"],
            "kv_bytes_none": size[None],
            "kv_bytes_8": size[8],
            "kv_dtype": str(convs[None].cache[0].keys.dtype),
            "bf16_equivalent_bytes_ratio": round(bf16_bytes_ratio(convs[None].cache), 3),
            "decode_tps_none": tps[None],
            "decode_tps_8": tps[8],
            "prefill_s_none": round(first[None]["ttftMs"] / 1000, 1),
            "prefill_s_8": round(first[8]["ttftMs"] / 1000, 1),
            "decode_tokens": DECODE_TOKENS,
        },
    }
