"""The one small interface every backend implements: stream one completion, with stats."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


class BackendError(RuntimeError):
    """The model or backend failed; the message says what and how to fix it (exit code 3)."""


class Cancelled(Exception):
    """The request was cancelled between two tokens."""


@dataclass
class Stats:
    """the README's LSP commands: reusedTokens + prefilledTokens == promptTokens."""

    promptTokens: int = 0
    reusedTokens: int = 0
    prefilledTokens: int = 0
    generatedTokens: int = 0
    ttftMs: float = 0.0
    decodeTps: float = 0.0
    draftTokens: int = 0  # speculative decoding: drafted tokens verified by the model
    draftAcceptedTokens: int = 0  # of those, the ones it agreed with

    def add(self, other: Stats) -> None:
        """Sum over a request's completions; ttft stays the first completion's."""
        first = self.promptTokens == 0 and self.generatedTokens == 0
        decode_time = _decode_seconds(self) + _decode_seconds(other)
        self.promptTokens += other.promptTokens
        self.reusedTokens += other.reusedTokens
        self.prefilledTokens += other.prefilledTokens
        self.generatedTokens += other.generatedTokens
        self.draftTokens += other.draftTokens
        self.draftAcceptedTokens += other.draftAcceptedTokens
        if first:
            self.ttftMs = other.ttftMs
        steps = max(self.generatedTokens - 1, 0)
        self.decodeTps = round(steps / decode_time, 2) if decode_time > 0 else other.decodeTps

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _decode_seconds(s: Stats) -> float:
    return (
        (s.generatedTokens - 1) / s.decodeTps if s.decodeTps > 0 and s.generatedTokens > 1 else 0.0
    )


@dataclass
class CompletionRequest:
    """What one completion needs. `prompt` is the full GLM-4.7 render (the embedded backend works
    on text and tokens); `messages`/`tools` serve backends that render the template themselves."""

    prompt: str
    messages: Sequence[dict[str, Any]] = ()
    tools: Sequence[dict[str, Any]] | None = None
    enable_thinking: bool = True
    clear_thinking: bool = False
    max_tokens: int = 4096
    temperature: float = 0.7
    top_p: float = 1.0


@dataclass
class Completion:
    """The raw completion text as it continues the generation prompt (stop token removed)."""

    text: str
    stats: Stats = field(default_factory=Stats)
    finish_reason: str = "stop"  # "stop" | "length"


OnText = Callable[[str], None]


class Backend(Protocol):
    name: str
    model_name: str

    def complete(
        self, request: CompletionRequest, on_text: OnText, cancel: threading.Event
    ) -> Completion:
        """Stream one completion, calling on_text with each new piece of raw text. Raises
        Cancelled when `cancel` is set, BackendError on failure."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def save(self) -> None:
        """Persist whatever makes the next request (or process) faster."""
        ...

    def close(self) -> None: ...
