"""`--distributed pipeline|tensor`: one model spread over the ranks of an MLX launcher.

Every rank loads its shard with mlx-lm's `sharded_load`. Rank 0 runs the front-end (LSP, `run`,
ACP), the agent, the log and the tools; its conversations are `DistributedConversation`s, which
tell the other ranks each step of every generation call (load, prompt tokens and sampling
settings, continue or stop, trim, save). The other ranks run `follow_rank0`: they mirror each
conversation's KV cache slice and run the same token generator in lockstep, and return when rank 0
exits. Persistence is per rank: each saves its own slice, beside rank 0's token history.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mlx_lm.models.cache import (
    make_prompt_cache,
)

from glm_lsp.config import Settings
from glm_lsp.errors import EXIT_BACKEND, UsageError
from glm_lsp.runtime.base import (
    BackendError,
    Cancelled,
    Completion,
    CompletionRequest,
    OnText,
)
from glm_lsp.runtime.cluster import MODES, Cluster, init_group
from glm_lsp.runtime.follower import cache_file, checksum, follow_rank0, sha
from glm_lsp.runtime.history import Plan, TokenHistory
from glm_lsp.runtime.mlx import MLXConversation, MLXModel
from glm_lsp.runtime.model_loader import read_config, resolve_model_dir

log = logging.getLogger(__name__)
_ids = itertools.count(1)


def entry(mode: str | None, settings: Settings, main: Callable[[], int]) -> int:
    """How a command (serve, run, acp) runs: without `mode`, just main(). With it, under a
    launcher: every rank loads its shard; rank 0 runs main() and the others follow it."""
    if mode is None:
        return main()
    if mode not in MODES:
        raise UsageError(f"--distributed is {mode!r}; accepted values: {', '.join(MODES)}")
    if settings.backend != "mlx":
        raise UsageError(
            "--distributed spreads the embedded MLX model over several ranks; with "
            "--backend openai the server does that (see the README's Teams)"
        )
    group = init_group()
    cluster = Cluster(group, mode)
    loaded = load_sharded(settings.model, mode, group)
    cluster.handshake()
    if cluster.rank > 0:
        print(
            f"glm-lsp: rank {cluster.rank} of {cluster.size} ({mode}, pid {os.getpid()}) "
            "follows rank 0",
            file=sys.stderr,
            flush=True,
        )
        return follow_rank0(cluster, MLXModel(settings.model, loaded))
    from glm_lsp.runtime import factory

    factory.pin_model(settings.model, DistributedModel(settings.model, loaded, cluster))
    cluster.watch()
    print(
        f"glm-lsp: rank 0 of {cluster.size} ({mode}, pid {os.getpid()}) serves",
        file=sys.stderr,
        flush=True,
    )
    _on_launcher_stop(cluster)
    try:
        code = main()
    except BackendError as exc:
        if not cluster.lost:
            raise
        _exit_lost(f"glm-lsp: error: {exc}", EXIT_BACKEND)
    if cluster.lost:  # a generation thread may still sit in a collective: do not wait for it
        _exit_lost(None, code)
    try:
        cluster.run(lambda: cluster.share({"op": "exit"}))
    except BackendError as exc:
        log.warning("the other ranks did not hear the exit: %s", exc)
    return code


def _on_launcher_stop(cluster: Cluster) -> None:
    """mlx.launch stops every rank when one exits: say why rather than vanish. (serve --tcp
    replaces this with its own graceful stop.)"""

    def stop(_signum: int, _frame: Any) -> None:
        deadline = time.monotonic() + 1.0
        while cluster.lost is None and time.monotonic() < deadline:
            time.sleep(0.05)  # the watch names the rank that exited, if it was one
        why = cluster.lost_message() if cluster.lost else "the launcher stopped rank 0"
        _exit_lost(f"glm-lsp: error: {why}", EXIT_BACKEND)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


def _exit_lost(message: str | None, code: int) -> None:
    if message:
        print(message, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def load_sharded(model: str, mode: str, group: Any) -> tuple[Any, Any, Path]:
    """This rank's shard via mlx-lm's sharded_load, with one clear error when it cannot be."""
    model_dir = resolve_model_dir(model)
    read_config(model_dir)
    from mlx_lm.utils import sharded_load

    try:
        loaded, tokenizer = sharded_load(
            str(model_dir),
            pipeline_group=group if mode == "pipeline" else None,
            tensor_group=group if mode == "tensor" else None,
        )
    except Exception as exc:
        raise BackendError(
            f"rank {group.rank()} could not load a {mode} shard of {model_dir} over "
            f"{group.size()} ranks: {type(exc).__name__}: {exc}"
        ) from None
    return loaded, tokenizer, model_dir


class DistributedModel(MLXModel):
    """Rank 0's shard: the tokenizer and the front of the conversation protocol."""

    def __init__(self, name: str, loaded: tuple[Any, Any, Path], cluster: Cluster) -> None:
        super().__init__(name, loaded)
        self.cluster = cluster
        self.pass_cost = None  # every rank must choose the same draft lengths: no timings

    def conversation(self, **kwargs: Any) -> DistributedConversation:
        return DistributedConversation(self, **kwargs)


class DistributedConversation(MLXConversation):
    """A workspace's conversation on rank 0; each step is shared with the other ranks."""

    name = "mlx"

    def __init__(self, model: DistributedModel, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.cluster = model.cluster
        self.cid = next(_ids)
        self.state_dir = kwargs.get("state_dir") if kwargs.get("persist", True) else None
        if self.cache_path:
            self.cache_path = self.cache_path.with_name(cache_file(self.cluster.layout))
        self._active = False  # a generation call the other ranks are running too
        self._stop_sent = False

    def _note(self, op: str) -> dict[str, Any]:
        return {
            "op": op,
            "conv": self.cid,
            "dir": str(self.state_dir) if self.state_dir else None,
            "kv_bits": self.kv_bits,
        }

    def _identity(self) -> dict[str, str]:
        return {**super()._identity(), "layout": self.cluster.layout}

    # -- every call runs on the cluster's one thread, bounded by the watch ------------------------
    def complete(
        self, request: CompletionRequest, on_text: OnText, cancel: threading.Event
    ) -> Completion:
        return self.cluster.run(lambda: MLXConversation.complete(self, request, on_text, cancel))

    def save(self) -> None:
        if self.cache_path and self.cache is not None:
            self.cluster.run(self._save)

    def _save(self) -> None:
        self.cluster.share(self._note("save"))
        MLXConversation.save(self)

    def close(self) -> None:
        if not self.cluster.lost:
            self.cluster.run(lambda: self.cluster.share(self._note("close")))
        self.cache = None

    # -- the cache: every rank loads its slice, and all keep them or none ------------------------
    def _ensure_cache(self) -> list[Any]:
        if self.cache is None:
            loaded = self._load_persisted()
            tokens = self.history.tokens if loaded is not None else None
            note = self._note("load") | {
                "sha": sha(tokens) if tokens is not None else None,
                "length": len(tokens or ()),
            }
            self.cluster.share(note)
            agreed = self.cluster.flag(int(loaded is not None)) == self.cluster.size
            if loaded is not None and not agreed:
                log.warning("a rank's KV cache slice did not match; recomputing on every rank")
            if not agreed:
                loaded, self.history = None, TokenHistory()
            self.cache = loaded or make_prompt_cache(self.m.model)
        return self.cache

    def _reset(self) -> None:
        self.cache, self.history = make_prompt_cache(self.m.model), TokenHistory()

    # -- generation hooks --------------------------------------------------------------------------
    def _seed(self) -> int:
        return random.getrandbits(31)

    def _begin(
        self,
        plan: Plan,
        kept: list[int],
        forced: list[int] | None,
        request: CompletionRequest,
        seed: int | None,
    ) -> None:
        call = self._note("call") | {
            "keep": plan.keep,
            "sha": sha(kept),
            "new": plan.new_tokens,
            "forced": forced,
            "max_tokens": request.max_tokens if forced is None else len(forced),
            "temperature": request.temperature,
            "top_p": request.top_p,
            "seed": seed,
            "speculative": self.speculative,
            "draft_tokens": self.draft_tokens,
        }
        self.cluster.share(call)
        if self.cluster.flag(0):  # a rank's cache is not the one rank 0 planned on
            self._reset()
            raise BackendError(
                "the ranks' KV caches were out of step; they were cleared on every rank, "
                "so the next request recomputes the conversation"
            )
        self._active, self._stop_sent = True, False

    def _stop_requested(self, cancel: threading.Event) -> bool:
        stop = cancel.is_set()
        self.cluster.flag(int(stop))
        self._stop_sent = self._stop_sent or stop
        return stop

    def _steps(self, steps: Iterator[int], cancel: threading.Event) -> Iterator[int]:
        """Before each token every rank hears whether to go on: they take the same steps."""
        ended = False
        try:
            while True:
                if self._stop_requested(cancel):
                    raise Cancelled()
                try:
                    token = next(steps)
                except StopIteration:
                    ended = True
                    return
                yield token
        finally:
            steps.close()  # type: ignore[attr-defined]
            if not ended and not self._stop_sent and not self.cluster.lost:
                self.cluster.flag(1)  # rank 0 left early (a stop token, an error): all stop
                self._stop_sent = True

    def _end(self, generated: list[int], *, failed: bool) -> None:
        if not self._active:
            return
        self._active = False
        mine = checksum(generated)
        shared = self.cluster.vector([len(self.history), mine] + [0] * self.cluster.size)
        if any(shared[2 + r] != mine for r in range(1, self.cluster.size)):
            self._reset()
            if not failed:
                raise BackendError(
                    "the ranks generated different tokens; their KV caches were cleared, so "
                    "retry the request (report this with `glm-lsp doctor --distributed`)"
                )
