"""The OpenAI endpoint's KV caches: a few conversation slots, each request continuing the slot whose
token history its prompt extends.

A Chat Completions client sends the whole conversation each time, with no id to tell two apart, so
the prompt itself says where it belongs: the slot whose history the prompt extends (an agent loop),
else one it differs from only in the last answer (a retry), else the least recently used slot.
Another conversation, or a side request (a title, a summary), so never cuts a conversation's cache
down to the system prompt they share; it starts from a copy of that shared KV instead.
Slots are engine conversations like the front-ends' (hostCacheGB and keepAlive apply, the host
saves them when it stops) and persist under the user's state; after a restart their histories are
read from the saved caches' metadata, without loading the arrays, the first time a request needs
to choose."""

from __future__ import annotations

import itertools
import json
import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
from mlx_lm.models.cache import KVCache, make_prompt_cache

from glm_lsp import state_files
from glm_lsp.glm.format import ASSISTANT, OBSERVATION, SYSTEM, USER
from glm_lsp.host.engine import Engine
from glm_lsp.runtime.history import TokenHistory
from glm_lsp.runtime.mlx import CACHE_FILE, MLXConversation, MLXModel

log = logging.getLogger(__name__)
SLOTS = 4
MAX_HEADER = 256 << 20  # a safetensors header past this is not one of our caches


def common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix (a binary search of C-speed comparisons)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        mid = (low + high + 1) // 2
        if a.startswith(b[:mid]):
            low = mid
        else:
            high = mid - 1
    return low


def last_answer(history: str) -> int:
    """Where the answer to the history's last user message starts (-1: none). A prompt that
    differs only after it is the same conversation: that answer asked again (a retry), or sent
    back without its reasoning; one that differs before it is another conversation, even when it
    shares the system prompt and tools."""
    last_user = history.rfind(USER, 0, len(history) - len(USER))  # not the stop token at the end
    return history.find(ASSISTANT, last_user + 1)


def continues(prompt: str, history: str) -> bool:
    """Whether `prompt` is the conversation `history` holds: it extends it, or differs from it
    only after its last answer began."""
    if not history:
        return False
    return prompt.startswith(history) or common_prefix(prompt, history) > last_answer(history) >= 0


def shared_history(
    history: TokenHistory, shared: str, encode: Callable[[str], list[int]]
) -> TokenHistory | None:
    """The part of `history` that holds `shared` up to its last message start: whole segments,
    then the rest of that text when the history tokenised it alike (it ends before a special
    token, so it does). None when nothing of it can be kept."""
    cut = max(shared.rfind(tag) for tag in (SYSTEM, USER, ASSISTANT, OBSERVATION))
    segments, text_at, token_at = [], 0, 0
    for text, count in history.segments:
        if text_at + len(text) > cut:
            break
        segments.append((text, count))
        text_at, token_at = text_at + len(text), token_at + count
    rest = shared[text_at:cut] if cut > text_at else ""
    if rest:
        tokens = encode(rest)
        if history.tokens[token_at : token_at + len(tokens)] == tokens:
            segments.append((rest, len(tokens)))
            token_at += len(tokens)
    if token_at == 0:
        return None
    return TokenHistory(tokens=history.tokens[:token_at], segments=segments)


@dataclass
class Saved:
    """What a slot's cache on disk holds, read from its safetensors header."""

    stamp: tuple[int, int]  # (mtime_ns, size): read again when the file changes
    text: str
    identity: dict[str, str]


def read_saved(path: Path) -> Saved | None:
    """The history text and identity a saved cache describes; None when there is none or it is
    not readable as one of ours (the conversation then recomputes, as after any torn file)."""
    try:
        if not state_files.check_path(path, want_dir=False):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            info = os.fstat(f.fileno())
            (size,) = struct.unpack("<Q", f.read(8))
            if size > MAX_HEADER:
                raise ValueError("its header is too large")
            header = json.loads(f.read(size))
        # mlx_lm's save_prompt_cache flattens [metadata, classes, scalars]: ours are "0.<key>".
        meta = {k[2:]: v for k, v in header.get("__metadata__", {}).items() if k.startswith("0.")}
        text = "".join(t for t, _ in json.loads(meta["segments"]))
        identity = {k: meta[k] for k in ("model", "weights", "kv_bits")}
        return Saved((info.st_mtime_ns, info.st_size), text, identity)
    except (OSError, ValueError, KeyError, TypeError, struct.error) as exc:
        log.info("not reusing %s: %s", path, exc)
        return None


class PrefixPool:
    """The endpoint's slots (generation thread only, like the engine's conversations)."""

    def __init__(self, engine: Engine, *, slots: int = SLOTS, root: Path | None = None) -> None:
        self.engine = engine
        self.root = root or state_files.user_state_home() / "host" / "openai"
        self.slots = slots
        self.clock = itertools.count(1)
        self.used: dict[int, int] = {}  # slot -> when it was last chosen in this process
        self.saved: dict[int, Saved | None] = {}

    def folder(self, slot: int) -> Path:
        return self.root / str(slot)

    def _key(self, model: MLXModel, slot: int) -> tuple[str, str, int]:
        return ("openai", model.name, slot)

    def history(self, model: MLXModel, slot: int) -> str:
        """The text whose KV the slot holds: in memory, or in its saved cache."""
        conv = self.engine.conversations.get(self._key(model, slot))
        if conv is not None and conv.m is model and conv.cache is not None:
            return conv.history.text
        path = self.folder(slot) / CACHE_FILE
        try:
            info = os.stat(path)
        except OSError:
            return ""
        cached = self.saved.get(slot)
        if cached is None or cached.stamp != (info.st_mtime_ns, info.st_size):
            cached = self.saved[slot] = read_saved(path)
        if cached is None or cached.identity != {
            "model": str(model.path.resolve()),
            "weights": model.fingerprint,
            "kv_bits": "None",
        }:
            return ""  # another model's or a torn cache: the conversation will ignore it too
        return cached.text

    def choose(self, model: MLXModel, prompt: str) -> MLXConversation:
        """The slot's conversation that `prompt` should continue (see the module's docstring)."""
        histories = [self.history(model, s) for s in range(self.slots)]
        slot = self.pick(prompt, histories)
        self.used[slot] = next(self.clock)
        folder = self.folder(slot)

        def make() -> MLXConversation:
            state_files.private_dir(folder, top=state_files.user_state_home())
            return model.conversation(state_dir=folder, persist=True)

        conv = self.engine.conversation(self._key(model, slot), model, make)
        if not continues(prompt, histories[slot]):
            self._seed(conv, model, prompt, histories, slot)
        return conv

    def _seed(
        self,
        conv: MLXConversation,
        model: MLXModel,
        prompt: str,
        histories: list[str],
        slot: int,
    ) -> None:
        """A new conversation starts from another slot's KV for the messages they share (the
        system prompt and tools an agent sends every time), copied, so that slot keeps its own."""
        own = common_prefix(prompt, histories[slot])
        shared = [(common_prefix(prompt, h), s) for s, h in enumerate(histories) if s != slot]
        common, donor = max(shared, default=(0, slot))
        source = self.engine.conversations.get(self._key(model, donor))
        if common <= own or source is None or source.m is not model or source.cache is None:
            return  # copied only from memory: reading a cache from disk is the costly part
        if not all(type(c) is KVCache for c in source.cache):
            return  # a quantized cache: recomputed rather than sliced
        history = shared_history(source.history, prompt[:common], model.encode)
        if history is None:
            return
        n = len(history)
        cache = make_prompt_cache(model.model)
        for mine, theirs in zip(cache, source.cache, strict=True):
            mine.keys = mx.contiguous(theirs.keys[..., :n, :])
            mine.values = mx.contiguous(theirs.values[..., :n, :])
            mine.offset = n
        mx.eval([a for c in cache for a in (c.keys, c.values)])
        conv.cache, conv.history = cache, history

    def pick(self, prompt: str, histories: list[str]) -> int:
        extends = [s for s, h in enumerate(histories) if h and prompt.startswith(h)]
        if extends:
            return max(extends, key=lambda s: len(histories[s]))
        same = [
            (common_prefix(prompt, h), s) for s, h in enumerate(histories) if continues(prompt, h)
        ]
        if same:  # the last answer again, or its reasoning left out: reuse all before it
            return max(same)[1]

        # The least recently used: an empty slot, then one unused since the host started (the
        # oldest saved first), then the one this process used longest ago.
        def age(s: int) -> tuple[int, bool, int]:
            saved = self.saved.get(s)
            return (self.used.get(s, 0), bool(histories[s]), saved.stamp[0] if saved else 0)

        return min(range(self.slots), key=age)
