"""The host's engine: its models, every conversation's KV cache, and the one generation thread.

Every front-end (LSP, ACP, `run`, the OpenAI endpoint) hands the engine `Generation`s; they run one
at a time on a single thread, first come first served, so the device never holds two generations
and a model is loaded once. The engine also unloads what has not been used: a model after
`keepAlive` minutes without a request, and KV caches past `hostCacheGB` (saved to disk first, so
the next request restores them as after a restart).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from glm_lsp.runtime.base import BackendError, Cancelled, Completion, CompletionRequest, OnText
from glm_lsp.runtime.mlx import MLXConversation, MLXModel

log = logging.getLogger(__name__)
RECENT = 50  # generations `host status` lists
OnStatus = Callable[[str, "int | None"], None]  # (message, percent or None)


class OneReply:
    """A front-end's scripted reply for one completion, in the shape MLXConversation reads."""

    def __init__(self, text: str) -> None:
        self.text = text

    def next(self) -> str:
        return self.text

    def unread(self) -> None:
        """The front-end gives its reply back itself (it holds the script)."""


@dataclass(eq=False)
class Generation:
    """One completion a client asks for. `conversation` is called on the generation thread with
    the loaded model and returns the conversation to continue (the engine's registry for
    front-ends, a prefix match for the OpenAI endpoint)."""

    model: str
    conversation: Callable[[MLXModel], MLXConversation]
    request: CompletionRequest
    on_text: OnText
    on_status: OnStatus
    cancel: threading.Event = field(default_factory=threading.Event)
    client: str = "lsp"  # lsp | acp | run | openai
    scripted: str | None = None  # this completion's forced text (scripted replies)
    speculative: bool = True
    draft_tokens: int = 8


@dataclass
class ModelSlot:
    name: str
    model: MLXModel | None = None
    loads: int = 0
    tokenizer: Any = None  # kept when the weights are unloaded: counting tokens stays cheap


class Engine:
    def __init__(
        self,
        *,
        keep_alive_min: float = 30,
        cache_gb: float = 8,
        loader: Callable[[str, OnStatus], MLXModel] | None = None,
        pinned: bool = False,
    ) -> None:
        """`loader` loads a model reporting progress (default: MLXModel with progress);
        `pinned`: a distributed rank 0, whose model was loaded at launch and is never unloaded."""
        self.keep_alive_s = keep_alive_min * 60 if keep_alive_min >= 0 else None
        self.cache_bytes = int(cache_gb * 1024**3)
        self.loader = loader or load_with_progress
        self.pinned = pinned
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="glm-host-gen")
        self.lock = threading.Lock()
        self.models: dict[str, ModelSlot] = {}
        self.conversations: OrderedDict[Hashable, MLXConversation] = OrderedDict()  # LRU order
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.pending: list[Generation] = []
        self.running: Generation | None = None
        self.last_used = time.monotonic()

    # -- what clients call (any thread) -------------------------------------------------------
    def submit(self, gen: Generation) -> Future[Completion]:
        """Queue `gen`; its future gives the Completion or raises Cancelled / BackendError."""
        with self.lock:
            ahead = len(self.pending) + (self.running is not None)
            self.pending.append(gen)
            self.last_used = time.monotonic()
        if ahead:
            gen.on_status(f"waiting for the model ({ahead} ahead)", None)
        return self.executor.submit(self._run, gen)

    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run `fn` on the generation thread, in turn (a save, an unload)."""
        return self.executor.submit(fn)

    def conversation(
        self, key: Hashable, model: MLXModel, make: Callable[[], MLXConversation]
    ) -> MLXConversation:
        """The conversation under `key` (generation thread only), made on first use; the most
        recently used ones keep their caches in memory."""
        conv = self.conversations.get(key)
        if conv is None or conv.m is not model:  # new, or its model was unloaded since
            conv = self.conversations[key] = make()
        self.conversations.move_to_end(key)
        return conv

    def tokenizer(self, name: str) -> Any:
        """The tokenizer of model `name` without loading its weights (counting tokens)."""
        slot = self.models.get(name)
        if slot is not None and slot.tokenizer is not None:
            return slot.tokenizer
        from mlx_lm.utils import load_tokenizer

        from glm_lsp.runtime.model_loader import read_config, resolve_model_dir

        path = resolve_model_dir(name)
        read_config(path)
        tokenizer = load_tokenizer(path)
        with self.lock:
            self.models.setdefault(name, ModelSlot(name)).tokenizer = tokenizer
        return tokenizer

    def status(self) -> dict[str, Any]:
        with self.lock:
            return {
                "models": [
                    {"name": s.name, "loaded": s.model is not None, "loads": s.loads}
                    for s in self.models.values()
                    if s.loads or s.model is not None
                ],
                "conversations": len(self.conversations),
                "cachedConversations": sum(
                    1 for c in self.conversations.values() if c.cache is not None
                ),
                "busy": self.running is not None,
                "running": self.running.client if self.running else None,
                "queued": len(self.pending),
                "recent": list(self.recent),
            }

    def idle_for(self) -> float:
        with self.lock:
            busy = self.running is not None or self.pending
            return 0.0 if busy else time.monotonic() - self.last_used

    def unload_if_idle(self) -> None:
        """keepAlive: unload every model once nothing has asked for one that long (called by the
        server's timer; the unload itself runs in turn on the generation thread)."""
        if self.keep_alive_s is None or self.pinned:
            return
        if self.idle_for() >= self.keep_alive_s and any(
            s.model is not None for s in self.models.values()
        ):
            self.call(self._unload_idle)

    def close(self) -> None:
        """Save every cache and stop (the host is stopping)."""
        for gen in [*self.pending, *([self.running] if self.running else [])]:
            gen.cancel.set()
        self.executor.submit(self._save_all).result()
        self.executor.submit(_clear_streams).result()
        self.executor.shutdown(wait=True)

    # -- the generation thread ----------------------------------------------------------------
    def _run(self, gen: Generation) -> Completion:
        with self.lock:
            self.pending.remove(gen)
            self.running = gen
        try:
            if gen.cancel.is_set():
                raise Cancelled()
            model = self._model(gen.model)
            conv = gen.conversation(model)
            conv.speculative, conv.draft_tokens = gen.speculative, gen.draft_tokens
            conv.scripted = OneReply(gen.scripted) if gen.scripted is not None else None
            try:
                completion = conv.complete(gen.request, gen.on_text, gen.cancel)
            finally:
                conv.scripted = None
            self._record(gen, completion)
            self._fit_caches(conv)
            return completion
        finally:
            with self.lock:
                self.running = None
                self.last_used = time.monotonic()

    def preload(self, name: str) -> None:
        """`host start --model`: load before the first request asks (generation thread)."""
        try:
            self._model(name)
        except BackendError as exc:
            log.warning("could not preload %s: %s", name, exc)

    def _model(self, name: str) -> MLXModel:
        with self.lock:
            slot = self.models.setdefault(name, ModelSlot(name))
        if slot.model is None:
            slot.model = self.loader(name, self._broadcast)
            slot.tokenizer = slot.model.tokenizer
            with self.lock:
                slot.loads += 1
        return slot.model

    def _broadcast(self, message: str, percent: int | None) -> None:
        """Loading progress to every client waiting on the model, not only the first."""
        with self.lock:
            waiting = ([self.running] if self.running else []) + list(self.pending)
        for gen in waiting:
            try:
                gen.on_status(message, percent)
            except Exception:  # a client gone meanwhile: its own connection reports that
                log.debug("status not delivered", exc_info=True)

    def _record(self, gen: Generation, completion: Completion) -> None:
        s = completion.stats
        with self.lock:
            self.recent.append(
                {
                    "client": gen.client,
                    "model": gen.model,
                    "promptTokens": s.promptTokens,
                    "reusedTokens": s.reusedTokens,
                    "generatedTokens": s.generatedTokens,
                    "time": time.time(),
                }
            )

    def _fit_caches(self, keep: MLXConversation) -> None:
        """hostCacheGB: the least recently used caches go to disk until the rest fit."""
        if self.pinned:  # a distributed cache is unloaded by every rank or by none
            return
        live = [c for c in self.conversations.values() if c.cache is not None]
        total = sum(c.kv_bytes() for c in live)
        for conv in live:  # oldest first
            if total <= self.cache_bytes:
                break
            if conv is not keep:
                total -= conv.kv_bytes()
                conv.unload()

    def _save_all(self) -> None:
        for conv in self.conversations.values():
            try:
                conv.save()
            except Exception as exc:  # one unwritable cache must not lose the others
                log.warning("could not save a KV cache: %s", exc)

    def _unload_idle(self) -> None:
        if self.idle_for() < (self.keep_alive_s or 0):
            return  # a request came in meanwhile
        for key, conv in list(self.conversations.items()):
            try:
                conv.unload()
            except Exception as exc:
                log.warning("could not save a KV cache: %s", exc)
            del self.conversations[key]
        for slot in self.models.values():
            slot.model = None
        gc.collect()
        import mlx.core as mx

        mx.clear_cache()
        log.info("keepAlive: unloaded the models after %.0f s without a request", self.idle_for())


def _clear_streams() -> None:
    """The generation thread's MLX streams (mlx_lm's generation_stream is thread-local) are
    destroyed here, before the thread ends: left to the thread's own teardown they sometimes abort
    the process as it exits ("terminate called without an active exception", mlx#3126)."""
    import mlx.core as mx

    mx.clear_streams()


def load_with_progress(name: str, on_status: OnStatus) -> MLXModel:
    from glm_lsp.runtime.model_loader import load_model, read_config, resolve_model_dir

    short = name.rstrip("/").split("/")[-1]

    def report(percent: int) -> None:
        on_status(f"loading {short}", percent)

    read_config(resolve_model_dir(name))  # a missing or foreign model: its error alone, no "0%"
    report(0)
    try:
        model = MLXModel(name, load_model(name, progress=report))
    except BackendError:
        raise
    except Exception as exc:
        raise BackendError(f"could not load the model {name}: {exc}") from None
    report(100)
    return model
