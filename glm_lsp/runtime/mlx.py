"""The embedded MLX backend: one loaded model, one KV-cached conversation per workspace.

Generation is mlx-lm's own `stream_generate` (sampler, prefill chunks, KV quantisation, wired
memory limit), or our exact prompt-lookup speculation (speculative.py); what this
module adds is the conversation: the cache lives across completions, requests and restarts, and a
prompt only prefills the tokens the model has never processed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten
from mlx_lm.generate import generation_stream, stream_generate, wired_limit
from mlx_lm.models.cache import (
    make_prompt_cache,
    trim_prompt_cache,
)
from mlx_lm.sample_utils import make_sampler

from glm_lsp.glm.format import STOP_TOKENS
from glm_lsp.runtime.base import (
    BackendError,
    Cancelled,
    Completion,
    CompletionRequest,
    OnText,
    Stats,
)
from glm_lsp.runtime.cache_store import load_cache, save_cache
from glm_lsp.runtime.draft_policy import DraftPolicy, PassCost
from glm_lsp.runtime.history import Plan, TokenHistory
from glm_lsp.runtime.lookup import NgramIndex
from glm_lsp.runtime.model_loader import load_model
from glm_lsp.runtime.scripted import ForcedTokens, ScriptedReplies
from glm_lsp.runtime.speculative import DraftStats, speculative_generate_step

log = logging.getLogger(__name__)
CACHE_FILE = "kv-cache.safetensors"
KV_GROUP_SIZE = 64


def weights_fingerprint(model_dir: Path) -> str:
    """Changes when a model is re-converted in place (same path, other weights), so a KV cache
    computed by the old weights is not reused: the config, and each weight file's size and time."""
    digest = hashlib.sha256()
    config = model_dir / "config.json"
    digest.update(config.read_bytes() if config.is_file() else b"")
    for weights in sorted(model_dir.glob("*.safetensors")):
        info = weights.stat()
        digest.update(f"{weights.name}:{info.st_size}:{info.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


class MLXModel:
    """A loaded model and tokenizer, shared by every workspace's conversation."""

    def __init__(self, model: str, loaded: tuple[Any, Any, Path] | None = None) -> None:
        # `loaded`: a model already loaded elsewhere (a distributed shard), else mlx_lm.load.
        self.model, self.tokenizer, self.path = loaded or load_model(model)
        self.name = model
        self.fingerprint = weights_fingerprint(self.path)
        self.lock = threading.Lock()  # one generation at a time on the device
        # What a forward pass costs by tokens fed, learnt while decoding: speculation drafts only
        # as far as it pays on this hardware (draft_policy.py).
        self.pass_cost: PassCost | None = PassCost()
        vocab = self.tokenizer.get_vocab()
        self.stop_text = {vocab[t]: t for t in STOP_TOKENS if t in vocab}
        for eos in self.tokenizer.eos_token_ids or ():
            self.stop_text.setdefault(eos, self.tokenizer.decode([eos]))
        # GLM-4.7 also stops on <|user|> and <|observation|>: stream_generate ends at eos ids.
        self.tokenizer.eos_token_ids = set(self.stop_text)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def conversation(self, **kwargs: Any) -> MLXConversation:
        return MLXConversation(self, **kwargs)


class MLXConversation:
    """A Backend (see base.py) for one workspace: the KV cache and its token history."""

    name = "mlx"

    def __init__(
        self,
        model: MLXModel,
        *,
        kv_bits: int | None = None,
        state_dir: Path | None = None,
        persist: bool = True,
        scripted: ScriptedReplies | None = None,
        speculative: bool = True,
        draft_tokens: int = 8,
    ) -> None:
        if draft_tokens < 1:
            raise ValueError("draft_tokens must be a positive integer")
        self.m = model
        self.speculative = speculative
        self.draft_tokens = draft_tokens
        self.lookup = NgramIndex()  # drafts come from this conversation's own tokens
        self.model_name = model.name
        self.kv_bits = kv_bits
        self.cache_path = state_dir / CACHE_FILE if state_dir and persist else None
        self.scripted = scripted
        self.history = TokenHistory()
        self.cache: list[Any] | None = None

    # -- the cache ---------------------------------------------------------------------------
    def _identity(self) -> dict[str, str]:
        return {
            "model": str(self.m.path.resolve()),
            "weights": self.m.fingerprint,
            "kv_bits": str(self.kv_bits),
        }

    def _ensure_cache(self) -> list[Any]:
        if self.cache is None:
            self.cache = self._load_persisted() or make_prompt_cache(self.m.model)
        return self.cache

    def _load_persisted(self) -> list[Any] | None:
        if not self.cache_path or not self.cache_path.exists():
            return None
        try:
            cache, meta = load_cache(self.cache_path)
            tokens = json.loads(meta["tokens"])
            segments = [(t, n) for t, n in json.loads(meta["segments"])]
            if any(meta.get(k) != v for k, v in self._identity().items()):
                raise ValueError("it was made with another model or kvBits")
            if cache[0].offset != len(tokens) or sum(n for _, n in segments) != len(tokens):
                raise ValueError("its token history does not match its size")
        except Exception as exc:  # torn or foreign file: recompute rather than trust it
            log.warning("ignoring KV cache %s (%s); it will be recomputed", self.cache_path, exc)
            return None
        self.history = TokenHistory(tokens=tokens, segments=segments)
        return cache

    def _trim_to_history(self) -> None:
        extra = self.cache[0].offset - len(self.history) if self.cache else 0
        if extra > 0:
            trim_prompt_cache(self.cache, extra)

    def kv_bytes(self) -> int:
        """Bytes of keys and values actually held (up to the offset, not the allocation)."""
        arrays = (a for c in self.cache or () for _, a in tree_flatten(c.state))
        return sum(a.nbytes for a in arrays if isinstance(a, mx.array))

    def save(self) -> None:
        """Write the cache and its token history atomically (temp file + rename)."""
        if not self.cache_path or not self.cache:
            return
        meta = {
            **self._identity(),
            "tokens": json.dumps(self.history.tokens),
            "segments": json.dumps(self.history.segments, ensure_ascii=False),
        }
        save_cache(self.cache_path, self.cache, meta, self.m.lock)

    def count_tokens(self, text: str) -> int:
        return len(self.m.encode(text))

    def close(self) -> None:
        self.cache = None

    def unload(self) -> None:
        """Another conversation takes the memory: keep this one's cache on disk only (when not
        persisted it is recomputed on next use). The history goes with the cache it describes."""
        if self.cache is None:
            return
        self.save()
        self.cache, self.history = None, TokenHistory()

    # -- generation --------------------------------------------------------------------------
    def complete(
        self, request: CompletionRequest, on_text: OnText, cancel: threading.Event
    ) -> Completion:
        with self.m.lock:
            return self._complete(request, on_text, cancel)

    def _complete(
        self, request: CompletionRequest, on_text: OnText, cancel: threading.Event
    ) -> Completion:
        start = time.perf_counter()
        cache = self._ensure_cache()
        plan = self.history.plan(request.prompt, self.m.encode)
        kept = self.history.tokens[: plan.keep]  # what the cache holds once trimmed
        trim_prompt_cache(cache, cache[0].offset - plan.keep)
        self.history.truncate(plan.keep)

        max_tokens, processors, forced = request.max_tokens, None, None
        if self.scripted is not None:
            reply = self.scripted.next()
            stop = self._scripted_stop(reply)
            forced = [*self.m.encode(reply), stop]
            max_tokens = len(forced)
            processors = [ForcedTokens(forced, prompt_length=len(plan.new_tokens))]

        def check_cancel(_done: int, _total: int) -> None:
            if self._stop_requested(cancel):
                raise Cancelled()

        stats = Stats(promptTokens=plan.prompt_tokens, reusedTokens=plan.keep)
        stats.prefilledTokens = len(plan.new_tokens)
        detokenizer = self.m.tokenizer.detokenizer
        generated: list[int] = []
        text, stop_text, first_at, finish = [], "", 0.0, "length"
        steps = None
        drafts = DraftStats()
        sampler = make_sampler(request.temperature, request.top_p)
        speculative = self.speculative
        try:
            if cancel.is_set():  # before the other ranks hear of this completion
                raise Cancelled()
            if speculative:
                self.lookup.sync(kept + plan.new_tokens)
            self._begin(plan, kept, forced, request, sampler_seed := self._seed())
            steps = self._steps(
                token_steps(
                    self.m.model,
                    self.m.tokenizer,
                    cache,
                    plan.new_tokens,
                    lookup=self.lookup if speculative else None,
                    draft_tokens=self.draft_tokens,
                    pass_cost=self.m.pass_cost,
                    max_tokens=max_tokens,
                    sampler=sampler,
                    processors=processors,
                    kv_bits=self.kv_bits,
                    progress=check_cancel,
                    stop_tokens=set(self.m.stop_text),
                    drafts=drafts,
                    seed=sampler_seed,
                ),
                cancel,
            )
            for token in steps:
                if not generated:
                    first_at = time.perf_counter()
                    self.history.commit_prompt()
                generated.append(token)
                if token in self.m.stop_text:
                    stop_text, finish = self.m.stop_text[token], "stop"
                    break
                detokenizer.add_token(token)
                if piece := detokenizer.last_segment:
                    text.append(piece)
                    on_text(piece)
                if cancel.is_set():
                    raise Cancelled()
        except BaseException:
            # Nothing half-done stays: the cache goes back to the last complete history.
            if self.scripted is not None:
                self.scripted.unread()
            if steps is not None:
                steps.close()
            self._trim_to_history()
            self._end(generated, failed=True)
            raise
        finally:
            # Close mlx-lm's generator here, on this thread: its stream context must not be
            # torn down later by the garbage collector on another one.
            if steps is not None:
                steps.close()
        detokenizer.finalize()
        if piece := detokenizer.last_segment:
            text.append(piece)
            on_text(piece)
        raw = "".join(text)
        self.history.append(raw + stop_text, generated)
        self._trim_to_history()
        self._end(generated, failed=False)
        if cache[0].offset != len(self.history):
            raise BackendError("KV cache and token history disagree; this is a bug in glm-lsp")
        end = time.perf_counter()
        stats.generatedTokens = len(generated)
        stats.draftTokens, stats.draftAcceptedTokens = drafts.proposed, drafts.accepted
        stats.ttftMs = round((first_at - start) * 1000, 2)
        if len(generated) > 1 and end > first_at:
            stats.decodeTps = round((len(generated) - 1) / (end - first_at), 2)
        return Completion(text=raw, stats=stats, finish_reason=finish)

    # -- hooks a distributed rank 0 overrides to keep the other ranks in step ---------------
    def _seed(self) -> int | None:
        """A sampler seed all ranks share; None: leave MLX's random state as it is."""
        return None

    def _begin(
        self,
        plan: Plan,
        kept: list[int],
        forced: list[int] | None,
        request: CompletionRequest,
        seed: int | None,
    ) -> None:
        """The prompt is planned and the cache trimmed to plan.keep; generation starts next."""

    def _steps(self, steps: Iterator[int], cancel: threading.Event) -> Iterator[int]:
        return steps

    def _stop_requested(self, cancel: threading.Event) -> bool:
        return cancel.is_set()

    def _end(self, generated: list[int], *, failed: bool) -> None:
        """The completion is over and the cache is trimmed to the history."""

    def _scripted_stop(self, reply: str) -> int:
        """After a tool call the model yields to the tools, otherwise it hands back to the user."""
        ids = {t: i for i, t in self.m.stop_text.items()}
        want = "<|observation|>" if reply.rstrip().endswith("</tool_call>") else "<|user|>"
        if want not in ids:
            raise BackendError(
                f"the model's tokenizer has no {want} token; it is not a GLM-4.7 tokenizer"
            )
        return ids[want]


def token_steps(
    model: Any,
    tokenizer: Any,
    cache: list[Any],
    new_tokens: list[int],
    *,
    lookup: NgramIndex | None,
    draft_tokens: int,
    max_tokens: int,
    sampler: Any,
    pass_cost: PassCost | None = None,
    processors: list[Any] | None,
    kv_bits: int | None,
    progress: Callable[[int, int], None],
    stop_tokens: set[int],
    drafts: DraftStats,
    seed: int | None = None,
) -> Generator[int, None, None]:
    """The generated token ids after `new_tokens`: prompt-lookup speculative decoding when a lookup
    index is given (it must hold the whole context), else mlx-lm's stream_generate. Every rank of a
    distributed model runs this same generator, so its calls to `progress` line up; there
    `pass_cost` is None, as draft lengths chosen from each rank's own timings would differ."""
    if seed is not None:  # every rank draws the same samples from the same logits
        mx.random.seed(seed)
    if lookup is not None:
        # stream_generate speculates only with a draft model: our exact prompt-lookup loop runs
        # under its wired_limit instead.
        with wired_limit(model, [generation_stream]):
            yield from speculative_generate_step(
                new_tokens,
                model,
                cache,
                index=lookup,
                policy=DraftPolicy(draft_tokens, cost=pass_cost),
                max_tokens=max_tokens,
                sampler=sampler,
                logits_processors=processors,
                kv_bits=kv_bits,
                kv_group_size=KV_GROUP_SIZE,
                prompt_progress_callback=progress,
                stop_tokens=stop_tokens,
                stats=drafts,
            )
        return
    for response in stream_generate(
        model,
        tokenizer,
        new_tokens,
        max_tokens=max_tokens,
        sampler=sampler,
        logits_processors=processors,
        prompt_cache=cache,
        kv_bits=kv_bits,
        kv_group_size=KV_GROUP_SIZE,
        quantized_kv_start=0,
        prompt_progress_callback=progress,
    ):
        yield response.token
