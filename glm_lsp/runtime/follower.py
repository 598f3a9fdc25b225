"""A rank > 0 of a `--distributed` launch: it holds a slice of each of rank 0's conversations
and runs the same token generator as rank 0, step for step, as rank 0's messages say."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from mlx_lm.models.cache import (
    make_prompt_cache,
    trim_prompt_cache,
)
from mlx_lm.sample_utils import make_sampler

from glm_lsp.runtime.cache_store import load_cache, save_cache
from glm_lsp.runtime.cluster import Cluster, RankLost
from glm_lsp.runtime.lookup import NgramIndex
from glm_lsp.runtime.mlx import MLXModel, token_steps, weights_fingerprint
from glm_lsp.runtime.scripted import ForcedTokens
from glm_lsp.runtime.speculative import DraftStats

log = logging.getLogger(__name__)


def cache_file(layout: str) -> str:
    return f"kv-cache.{layout}.safetensors"


def sha(tokens: list[int]) -> str:
    return hashlib.sha256(json.dumps(tokens).encode()).hexdigest()


def checksum(tokens: list[int]) -> int:
    return sum((i + 1) * t for i, t in enumerate(tokens)) % 1_000_003 + 1


class Mirror:
    """One of rank 0's conversations as a follower rank holds it: its cache slice and tokens."""

    def __init__(self, model: MLXModel, cluster: Cluster) -> None:
        self.m, self.cluster = model, cluster
        self.cache: list[Any] | None = None
        self.tokens: list[int] = []
        self.lookup = NgramIndex()

    def _path(self, note: dict[str, Any]) -> Path | None:
        """Beside rank 0's history when its state dir exists here, else in this host's cache."""
        if not note["dir"]:
            return None
        state = Path(note["dir"])
        if not state.parent.is_dir():
            digest = hashlib.sha256(note["dir"].encode()).hexdigest()[:16]
            state = Path.home() / ".cache" / "glm-lsp" / "ranks" / digest
        return state / cache_file(self.cluster.layout)

    def _identity(self, kv_bits: int | None) -> dict[str, str]:
        return {
            "model": str(self.m.path.resolve()),
            "weights": weights_fingerprint(self.m.path),
            "kv_bits": str(kv_bits),
            "layout": self.cluster.layout,
        }

    def _reset(self) -> None:
        self.cache, self.tokens = make_prompt_cache(self.m.model), []

    def load(self, note: dict[str, Any]) -> None:
        cache, tokens = None, []
        path = self._path(note)
        if note["sha"] is not None and path and path.exists():
            try:
                cache, meta = load_cache(path)
                tokens = json.loads(meta["tokens"])
                ident = self._identity(note["kv_bits"])
                if any(meta.get(k) != v for k, v in ident.items()):
                    raise ValueError("it was made with another model, kvBits or layout")
                if sha(tokens) != note["sha"] or cache[0].offset != note["length"]:
                    raise ValueError("it does not hold rank 0's conversation")
            except Exception as exc:  # torn, foreign or stale: recompute with everyone
                log.warning("ignoring KV cache slice %s (%s)", path, exc)
                cache = None
        if self.cluster.flag(int(cache is not None)) == self.cluster.size and cache:
            self.cache, self.tokens = cache, tokens
        else:
            self._reset()

    def call(self, note: dict[str, Any]) -> None:
        keep, new = note["keep"], note["new"]
        ready = self.cache is not None and len(self.tokens) >= keep
        ready = ready and sha(self.tokens[:keep]) == note["sha"]
        if self.cluster.flag(0 if ready else 1):
            self._reset()
            return
        assert self.cache is not None
        trim_prompt_cache(self.cache, self.cache[0].offset - keep)
        context = self.tokens[:keep] + new
        lookup = None
        if note["speculative"]:
            self.lookup.sync(context)
            lookup = self.lookup
        forced = note["forced"]
        processors = [ForcedTokens(forced, prompt_length=len(new))] if forced else None

        class _Stop(Exception):
            pass

        def progress(_done: int, _total: int) -> None:
            if self.cluster.flag(0):
                raise _Stop()

        steps = token_steps(
            self.m.model,
            self.m.tokenizer,
            self.cache,
            new,
            lookup=lookup,
            draft_tokens=note["draft_tokens"],
            max_tokens=note["max_tokens"],
            sampler=make_sampler(note["temperature"], note["top_p"]),
            processors=processors,
            kv_bits=note["kv_bits"],
            progress=progress,
            stop_tokens=set(self.m.stop_text),
            drafts=DraftStats(),
            seed=note["seed"],
        )
        generated: list[int] = []
        try:
            while not self.cluster.flag(0):
                try:
                    generated.append(next(steps))
                except StopIteration:
                    break
        except _Stop:
            pass
        finally:
            steps.close()
        mine = checksum(generated)
        slots = [0] * (2 + self.cluster.size)
        slots[2 + self.cluster.rank] = mine
        shared = self.cluster.vector(slots)
        length = shared[0]
        self.tokens = (context + generated)[:length]
        trim_prompt_cache(self.cache, self.cache[0].offset - length)
        if any(shared[2 + r] != shared[1] for r in range(1, self.cluster.size)):
            self._reset()  # rank 0 clears its own too

    def save(self, note: dict[str, Any]) -> None:
        path = self._path(note)
        if not path or self.cache is None:
            return
        meta = self._identity(note["kv_bits"]) | {"tokens": json.dumps(self.tokens)}
        save_cache(path, self.cache, meta)

    def close(self, _note: dict[str, Any]) -> None:
        self.cache, self.tokens = None, []


def follow_rank0(cluster: Cluster, model: MLXModel) -> int:
    """A rank > 0: do what rank 0 says, conversation by conversation, until it exits."""
    mirrors: dict[int, Mirror] = {}
    try:
        while True:
            note = cluster.share()
            if note["op"] == "exit":
                return 0
            mirror = mirrors.setdefault(note["conv"], Mirror(model, cluster))
            getattr(mirror, note["op"])(note)
    except RankLost:
        # Rank 0 is gone (the launcher stops everyone, or rank 0 died): nothing left to follow.
        print(f"glm-lsp: rank {cluster.rank}: rank 0 is gone; exiting", file=sys.stderr)
        return 0
