"""Speculative decoding with prompt-lookup drafts, exact: the tokens it yields are the ones plain
decoding (mlx-lm's `generate_step`) would sample, greedy token for token, sampled in distribution.

Each round feeds the last token and a draft (lookup.py) through the model in one forward pass over
the live KV cache. At every position the sampler draws from the processed distribution; a draft
token is accepted while it equals the draw, and the first draw that differs is emitted instead
(for a deterministic draft that is exactly "accept t with probability p(t), else sample p without
t"). Rejected positions are trimmed from the cache. The structure (prefill, step, rewind) follows
mlx-lm's `speculative_generate_step`, which needs a draft model.

Like `generate_step`, a token is yielded only once its keys and values are in the cache, and the
next forward pass is already running while the caller handles the yielded tokens. How long each
draft is comes from draft_policy.py, which is told each round's acceptance and wall time.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Collection, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
from mlx_lm.generate import generation_stream, maybe_quantize_kv_cache
from mlx_lm.models.cache import trim_prompt_cache

from glm_lsp.runtime.draft_policy import DraftPolicy
from glm_lsp.runtime.lookup import NgramIndex

PREFILL_STEP = 2048  # generate_step's default chunk

Processor = Callable[[mx.array, mx.array], mx.array]


@dataclass
class DraftStats:
    proposed: int = 0  # draft tokens fed to verification passes
    accepted: int = 0  # of those, the ones the sampler agreed with
    passes: int = 0  # decode forward passes (not prefill chunks)


def speculative_generate_step(
    prompt: Sequence[int],
    model: Any,
    cache: list[Any],
    *,
    index: NgramIndex,
    policy: DraftPolicy,
    max_tokens: int,
    sampler: Callable[[mx.array], mx.array],
    logits_processors: list[Processor] | None = None,
    kv_bits: int | None = None,
    kv_group_size: int = 64,
    prompt_progress_callback: Callable[[int, int], None] | None = None,
    stop_tokens: Collection[int] = (),
    stats: DraftStats | None = None,
) -> Generator[int, None, None]:
    """Yield up to max_tokens tokens after `prompt` (the tokens not yet in `cache`). `index` must
    hold the whole context, cached tokens and `prompt`; it is extended with what is generated.
    `policy` chooses each draft's length and learns from each round's acceptance and time."""
    stats = stats if stats is not None else DraftStats()
    progress = prompt_progress_callback or (lambda *_: None)
    quantize = functools.partial(
        maybe_quantize_kv_cache,
        quantized_kv_start=0,
        kv_group_size=kv_group_size,
        kv_bits=kv_bits,
    )
    total = len(prompt)
    with mx.stream(generation_stream):
        # Prefill all but the last prompt token, in chunks, as generate_step does.
        done = 0
        progress(0, total)
        while total - done > 1:
            n = min(PREFILL_STEP, total - done - 1)
            model(mx.array(prompt[done : done + n])[None], cache=cache)
            quantize(cache)
            mx.eval([c.state for c in cache])
            done += n
            progress(done, total)
            mx.clear_cache()

        # What logits processors see before a position, as in generate_step: the prompt's new
        # tokens and the generated ones (the token fed at that position included).
        # Processors with a `positions(history_length, rows)` method (ForcedTokens) need only the
        # length and take a whole pass at once; any other gets each position's tokens.
        by_length = all(callable(getattr(p, "positions", None)) for p in logits_processors or ())
        tokens = None if by_length else mx.array(prompt[:-1], mx.uint32)
        history = _Seen(len(prompt) - 1, tokens)

        def launch(head: int | mx.array, draft: list[int], match: int, seen: _Seen) -> _Round:
            """One forward pass over head + draft; the draws stay lazy (computed asynchronously)."""
            if isinstance(head, int):
                fed = mx.array([head, *draft], mx.uint32)
            else:  # the previous round's draw, not evaluated yet
                fed = mx.concatenate(
                    [head.reshape(1).astype(mx.uint32), mx.array(draft, mx.uint32)]
                )
            logits = model(fed[None], cache=cache)[0]  # (positions, vocab)
            quantize(cache)
            if logits_processors and by_length:
                for processor in logits_processors:
                    logits = processor.positions(seen.length + 1, logits)  # type: ignore[attr-defined]
            elif logits_processors:
                assert seen.tokens is not None
                rows = []
                for i in range(len(draft) + 1):
                    before = mx.concatenate([seen.tokens, fed[: i + 1]])
                    row = logits[i : i + 1]
                    for processor in logits_processors:
                        row = processor(before, row)
                    rows.append(row)
                logits = mx.concatenate(rows)
            logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
            drawn = sampler(logprobs)
            mx.async_eval(drawn)
            stats.passes += 1
            return _Round(fed, draft, match, drawn, seen)

        def plan(room: int, decided: int | None = None) -> tuple[list[int], int]:
            """The next round's draft, as long as pays (or as `decided`), and its match length."""
            if room <= 0:
                return [], 0
            if decided is not None:
                return index.lookup(min(decided, room))
            candidate, match = index.lookup(min(policy.maximum, room))
            return candidate[: policy.choose(match, len(candidate))], match

        x, x_generated = prompt[-1], False  # the token fed by the pending round, and whose it is
        pending = launch(x, *plan(max_tokens), history)
        emitted = 0  # tokens yielded, or decided and about to be
        last = time.perf_counter()
        while True:
            # A round without a draft whose successor will likely have none either: chain the
            # next single-token step on the lazy draw before waiting for it, as generate_step
            # does, so building the graph overlaps the computation. The successor's draft is
            # guessed from the context without the pending draw.
            chained, decided = None, None
            after_pending = emitted + (1 if x_generated else 0)
            if not pending.draft and after_pending < max_tokens and x not in stop_tokens:
                candidate, match = index.lookup(policy.maximum)
                decided = policy.choose(match, len(candidate))
                if decided == 0:
                    seen = pending.seen.extend(pending.fed, len(pending.fed))
                    chained = launch(pending.drawn[0], [], 0, seen)

            drawn = pending.drawn.tolist()
            now = time.perf_counter()
            if policy.cost is not None:
                policy.cost.observe(len(pending.draft) + 1, now - last)
            last = now
            draft = pending.draft
            accepted = 0
            while accepted < len(draft) and drawn[accepted] == draft[accepted]:
                accepted += 1
            if accepted < len(draft):
                trim_prompt_cache(cache, len(draft) - accepted)
            stats.proposed += len(draft)
            stats.accepted += accepted
            policy.update(pending.match, len(draft), accepted)
            if not x_generated:
                progress(total, total)  # the first token is out: a last chance to cancel

            # This round's tokens, all in the cache now: the fed token (unless it was the
            # prompt's) and the accepted draft. The next draw is fed in the next round.
            out = ([x] if x_generated else []) + draft[:accepted]
            out = out[: max_tokens - emitted]
            stop_at = next((i for i, t in enumerate(out) if t in stop_tokens), None)
            if stop_at is not None:
                out = out[: stop_at + 1]
            emitted += len(out)
            if stop_at is not None or emitted >= max_tokens:
                yield from out
                return

            x, x_generated = drawn[accepted], True
            index.extend(draft[:accepted])
            index.append(x)
            if chained is not None:
                pending = chained
            else:
                seen = pending.seen.extend(pending.fed, accepted + 1)
                room = 0 if x in stop_tokens else max_tokens - emitted - 1  # x takes one
                pending = launch(x, *plan(room, decided), seen)
            if stats.passes % 256 == 0:
                mx.clear_cache()
            yield from out


@dataclass
class _Round:
    fed: mx.array  # the head token and the draft, as fed
    draft: list[int]
    match: int  # the suffix length the draft was found from (0: none)
    drawn: mx.array  # the sampler's draw at each position (lazy until evaluated)
    seen: _Seen  # what logits processors saw before this round


@dataclass(frozen=True)
class _Seen:
    """What logits processors saw before a round: how many tokens, and the tokens themselves
    unless every processor needs only the number (then no array grows round by round)."""

    length: int
    tokens: mx.array | None

    def extend(self, fed: mx.array, count: int) -> _Seen:
        more = None if self.tokens is None else mx.concatenate([self.tokens, fed[:count]])
        return _Seen(self.length + count, more)
