"""Wasted prefill over a scripted agent session: glm-lsp vs a real mlx_lm.server.

Wasted = prompt tokens prefilled that the model had already processed (as prompt or generated).
Per completion: prefilled minus the genuinely new tokens, which are the tokens of the prompt's
suffix after everything processed before (tool results + generation prompt, or a new user message).

mlx_lm.server is sent the same messages (reasoning_content, tool calls, tools, clear_thinking off)
and reports `usage.prompt_tokens_details.cached_tokens` (0.32: the tokens its LRU prompt cache
served), so its prefill is prompt_tokens - cached_tokens. It generates its own random-model text,
so two passes, each on a fresh server:
- primed (the anchor): after each chat request the server is made to process prompt + our scripted
  reply + stop token through /v1/completions, as if it had generated that reply itself; so it holds
  exactly the token history glm-lsp holds;
- unprimed: the chat requests only; the scripted assistant turns are tokens it never processed.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import MlxServer, cached_tokens, chat_body, progress
from benchmarks.scripted_session import ScriptedSession, Step

MAX_TOKENS = 1  # the server's own text is thrown away; one token is enough to answer


def new_tokens(steps: list[Step], k: int, encode) -> tuple[int, bool]:
    """Tokens of completion k's prompt that nothing before it processed; and whether its prompt
    extends the previous history exactly (False: counted by the longest common token prefix)."""
    prompt = steps[k].request.prompt
    if k == 0:
        return len(encode(prompt)), True
    before = steps[k - 1].processed  # prompts are cumulative: the last history covers the rest
    if prompt.startswith(before):
        return len(encode(prompt[len(before) :])), True
    new, old = encode(prompt), encode(before)
    common = next(
        (i for i, (a, b) in enumerate(zip(new, old, strict=False)) if a != b),
        min(len(new), len(old)),
    )
    return len(new) - common, False


def glm_figures(session: ScriptedSession) -> dict[str, Any]:
    encode = session.model.encode
    per, diverged = [], 0
    for k, step in enumerate(session.steps):
        fresh, exact = new_tokens(session.steps, k, encode)
        diverged += not exact
        per.append(
            {
                "prompt": step.stats.promptTokens,
                "prefilled": step.stats.prefilledTokens,
                "reused": step.stats.reusedTokens,
                "new": fresh,
                "wasted": step.stats.prefilledTokens - fresh,
            }
        )
    return {"completions": per, "diverged_prompts": diverged}


def server_pass(session: ScriptedSession, news: list[int], *, primed: bool) -> dict[str, Any]:
    """Replay every completion's request to a fresh mlx_lm.server; return its accounting."""
    per = []
    with MlxServer(session.model.path) as server:
        for k, step in enumerate(session.steps):
            usage = server.chat(chat_body(session.model.path, step.request, MAX_TOKENS))["usage"]
            prompt, cached = usage["prompt_tokens"], cached_tokens(usage)
            per.append(
                {
                    "prompt": prompt,
                    "cached": cached,
                    "prefilled": prompt - cached,
                    "new": news[k],
                    "wasted": prompt - cached - news[k],
                }
            )
            if primed:
                server.prime(step.processed)
    return {"completions": per}


def measure(session: ScriptedSession) -> dict[str, Any]:
    glm = glm_figures(session)
    news = [c["new"] for c in glm["completions"]]
    progress("wasted_prefill: mlx_lm.server, primed with each scripted reply")
    primed = server_pass(session, news, primed=True)
    progress("wasted_prefill: mlx_lm.server, unprimed")
    unprimed = server_pass(session, news, primed=False)
    glm_prompts = [len(session.model.encode(s.request.prompt)) for s in session.steps]
    mismatched = sum(
        c["prompt"] != n for c, n in zip(primed["completions"], glm_prompts, strict=True)
    )
    wasted = [c["wasted"] for c in glm["completions"]]
    return {
        "wasted_prefill_glm": sum(wasted),
        "wasted_prefill_mlx_server": sum(c["wasted"] for c in primed["completions"]),
        "raw": {
            "requests": len(session.requests),
            "completions": len(session.steps),
            "glm_max_wasted_per_completion": max(wasted),
            "glm_prefilled_total": sum(c["prefilled"] for c in glm["completions"]),
            "new_tokens_total": sum(news),
            "prompt_tokens_total": sum(glm_prompts),
            "final_prompt_tokens": glm_prompts[-1],
            "server_prompt_token_mismatches": mismatched,
            "mlx_server_primed_prefilled_total": sum(c["prefilled"] for c in primed["completions"]),
            "mlx_server_unprimed_wasted": sum(c["wasted"] for c in unprimed["completions"]),
            "mlx_server_unprimed_prefilled_total": sum(
                c["prefilled"] for c in unprimed["completions"]
            ),
            "glm": glm,
            "mlx_server_primed": primed,
            "mlx_server_unprimed": unprimed,
        },
    }
