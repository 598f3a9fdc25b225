"""The one small interface every backend implements: stream one completion, with stats."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from glm_lsp.wire.records import Stats  # the wire shape, defined once


class BackendError(RuntimeError):
    """The model or backend failed; the message says what and how to fix it (exit code 3)."""


class Cancelled(Exception):
    """The request was cancelled between two tokens."""


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
    # Where a backend says what it waits for (the host loading the model, another client's
    # generation): (message, percent or None).
    on_status: Callable[[str, int | None], None] | None = None


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
