"""Time to first token of a follow-up request on the medium model: glm-lsp vs mlx_lm.server.

One conversation (system prompt, a question, the answer) is processed by both: glm-lsp's runtime
completes it with the answer scripted; mlx_lm.server answers it itself and is then primed with the
same answer (prompt + answer + stop through /v1/completions), so both hold the same history. Then
each round sends a new follow-up question to both, interleaved, timing the first token as a client
sees it: glm-lsp from complete() to its first streamed text, the server from the HTTP request to
its first streamed data event. The first round is a warm-up for both and not counted: MLX's first
prefill at a non-zero cache offset in a process costs seconds once, and the server's priming
request would otherwise have paid that for it alone.

The tool list is left out of the prompt: the medium 8-bit MoE prefills about 10 tokens/s on this
CPU, and the 1.8k-token tool header would add minutes to both sides without changing the
comparison (both reuse it).
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

from benchmarks.common import MlxServer, cached_tokens, medium_model, progress, stop_after
from glm_lsp.agent.prompts import SYSTEM_PROMPT
from glm_lsp.glm.format import completion_text, render_prompt
from glm_lsp.runtime.base import CompletionRequest
from glm_lsp.runtime.mlx import MLXModel
from glm_lsp.runtime.scripted import ScriptedReplies

FIRST = [
    {"role": "system", "content": SYSTEM_PROMPT},
    {"role": "user", "content": "Explain Cart.total in shop/cart.py: what does it return?"},
]
ANSWER = {
    "role": "assistant",
    "reasoning_content": "Cart.total calls compute_total with the prices and tax rate.",
    "content": "It returns the taxed sum of the prices, rounded to cents.",
}
FOLLOW_UPS = [
    "And for an empty cart?",
    "Where is tax_rate set?",
    "Is rounding done once?",
    "Can prices be negative?",
    "Who calls Cart.add?",
    "Is Cart a dataclass?",
]
REPLY = "Yes.</think>Fine."


def _glm_ttft(conv: Any, messages: list[dict[str, Any]]) -> tuple[float, dict[str, Any]]:
    """From rendering the prompt (the server renders its template too) to the first text."""
    start, first = time.perf_counter(), []
    prompt = render_prompt(messages)

    def on_text(_piece: str) -> None:
        if not first:
            first.append(time.perf_counter())

    c = conv.complete(CompletionRequest(prompt=prompt), on_text, threading.Event())
    return first[0] - start, c.stats.to_dict()


def _body(model: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "model": model,
        "messages": messages,
        "max_tokens": 1,
        "temperature": 0.0,
        "chat_template_kwargs": {"enable_thinking": True, "clear_thinking": False},
    }


def measure(rounds: int = 4) -> dict[str, Any]:
    path = medium_model()
    follow_ups = FOLLOW_UPS[: rounds + 1]  # the first is the warm-up
    m = MLXModel(str(path))
    answer = completion_text(ANSWER)
    conv = m.conversation(scripted=ScriptedReplies([answer] + [REPLY] * len(follow_ups)))
    first_prompt = render_prompt(FIRST)
    progress(f"ttft: glm-lsp first request ({len(m.encode(first_prompt))} tokens, medium model)")
    _glm_ttft(conv, FIRST)
    glm, server_s, rows = [], [], []
    with MlxServer(path) as server:
        progress("ttft: mlx_lm.server first request, then primed with the same answer")
        server.chat(_body(str(path), FIRST))
        server.prime(first_prompt + answer + stop_after(answer))
        for i, question in enumerate(follow_ups):
            messages = [*FIRST, ANSWER, {"role": "user", "content": question}]
            order = ("glm", "server") if i % 2 == 0 else ("server", "glm")
            row: dict[str, Any] = {"question": question}
            for side in order:  # alternate who goes first so drift hits both alike
                if side == "glm":
                    seconds, stats = _glm_ttft(conv, messages)
                    glm.append(seconds * 1000)
                    row |= {
                        "glm_ms": round(seconds * 1000, 1),
                        "glm_prefilled": stats["prefilledTokens"],
                        "glm_prompt": stats["promptTokens"],
                        "glm_stats_ttft_ms": stats["ttftMs"],  # runtime's own: to the first token
                    }
                else:
                    seconds, usage = server.stream_ttft(_body(str(path), messages))
                    server_s.append(seconds * 1000)
                    row |= {
                        "server_ms": round(seconds * 1000, 1),
                        "server_prefilled": usage.get("prompt_tokens", 0) - cached_tokens(usage),
                        "server_prompt": usage.get("prompt_tokens"),
                    }
            rows.append(row)
            progress(f"ttft: round {i}/{rounds}{' (warm-up)' if i == 0 else ''}: {row}")
    return {
        "ttft_followup_ms": round(statistics.median(glm[1:]), 1),
        "anchor": round(statistics.median(server_s[1:]), 1),
        "raw": {"warmup": rows[0], "rounds": rows[1:], "model": path.name},
    }
