"""Speculative decoding with prompt-lookup drafts, exact: the tokens it yields are the ones plain
decoding (mlx-lm's `generate_step`) would sample, greedy token for token, sampled in distribution.

Each round feeds the last token and a draft (lookup.py) through the model in one forward pass over
the live KV cache. At every position the sampler draws from the processed distribution; a draft
token is accepted while it equals the draw, and the first draw that differs is emitted instead
(for a deterministic draft that is exactly "accept t with probability p(t), else sample p without
t"). Rejected positions are trimmed from the cache. The structure (prefill, step, rewind) follows
mlx-lm's `speculative_generate_step`, which needs a draft model.

Like `generate_step`, a token is yielded only once its keys and values are in the cache, and the
next forward pass is already running while the caller handles the yielded tokens.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
from mlx_lm.generate import generation_stream, maybe_quantize_kv_cache
from mlx_lm.models.cache import trim_prompt_cache

from glm_lsp.runtime.lookup import DraftLength, NgramIndex

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
    lengths: DraftLength,
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
    hold the whole context, cached tokens and `prompt`; it is extended with what is generated."""
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
        history = mx.array(prompt[:-1], mx.uint32) if logits_processors else None

        def launch(head: int | mx.array, draft: list[int], seen: mx.array | None) -> _Round:
            """One forward pass over head + draft; the draws stay lazy (computed asynchronously)."""
            if isinstance(head, int):
                fed = mx.array([head, *draft], mx.uint32)
            else:  # the previous round's draw, not evaluated yet
                fed = mx.concatenate(
                    [head.reshape(1).astype(mx.uint32), mx.array(draft, mx.uint32)]
                )
            logits = model(fed[None], cache=cache)[0]  # (positions, vocab)
            quantize(cache)
            if logits_processors:
                assert seen is not None
                rows = []
                for i in range(len(draft) + 1):
                    before = mx.concatenate([seen, fed[: i + 1]])
                    row = logits[i : i + 1]
                    for processor in logits_processors:
                        row = processor(before, row)
                    rows.append(row)
                logits = mx.concatenate(rows)
            logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
            drawn = sampler(logprobs)
            mx.async_eval(drawn)
            stats.passes += 1
            return _Round(fed, draft, drawn, seen)

        x, x_generated = prompt[-1], False  # the token fed by the pending round, and whose it is
        limit = min(lengths.next(), max_tokens)
        pending = launch(x, index.draft(limit) if limit else [], history)
        emitted = 0  # tokens yielded, or decided and about to be
        while True:
            # A round without a draft whose successor will likely have none either (nothing in
            # the context matches, or drafting is backing off): chain the next single-token step
            # on the lazy draw before waiting for it, as generate_step does, so building the
            # graph overlaps the computation.
            chained = None
            after_pending = emitted + (1 if x_generated else 0)
            quiet = not pending.draft and (lengths.skip > 0 or not index.draft(1))
            if quiet and after_pending < max_tokens and x not in stop_tokens:
                lengths.next()
                chained = launch(pending.drawn[0], [], _extend(pending.seen, pending.fed))

            drawn = pending.drawn.tolist()
            draft = pending.draft
            accepted = 0
            while accepted < len(draft) and drawn[accepted] == draft[accepted]:
                accepted += 1
            if accepted < len(draft):
                trim_prompt_cache(cache, len(draft) - accepted)
            stats.proposed += len(draft)
            stats.accepted += accepted
            lengths.update(len(draft), accepted)
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
                seen = _extend(pending.seen, pending.fed[: accepted + 1])
                room = max_tokens - emitted - 1  # x itself takes one
                limit = 0 if x in stop_tokens or room <= 0 else min(lengths.next(), room)
                pending = launch(x, index.draft(limit) if limit else [], seen)
            if stats.passes % 256 == 0:
                mx.clear_cache()
            yield from out


@dataclass
class _Round:
    fed: mx.array  # the head token and the draft, as fed
    draft: list[int]
    drawn: mx.array  # the sampler's draw at each position (lazy until evaluated)
    seen: mx.array | None  # what logits processors saw before this round


def _extend(seen: mx.array | None, fed: mx.array) -> mx.array | None:
    return None if seen is None else mx.concatenate([seen, fed])
