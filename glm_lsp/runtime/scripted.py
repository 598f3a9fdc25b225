"""Scripted replies (the README's Scripted replies): the i-th string is the i-th completion's raw text.

With the embedded backend the text's tokens are forced through the loaded model one per step by a
logits processor, so forward passes, KV cache, streaming and cancellation are all real.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from glm_lsp.runtime.base import BackendError

if TYPE_CHECKING:  # MLX is imported where it runs: a front-end on the host never needs it
    import mlx.core as mx


class ScriptedReplies:
    def __init__(self, replies: list[str], source: str = "scripted replies") -> None:
        self._replies = list(replies)
        self._next = 0
        self._lock = threading.Lock()
        self.source = source

    @classmethod
    def load(cls, path: str | Path) -> ScriptedReplies:
        path = Path(path).expanduser()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BackendError(f"scripted replies file {path} does not exist") from None
        except (OSError, ValueError) as exc:
            raise BackendError(f"scripted replies file {path} is not valid JSON: {exc}") from None
        if not isinstance(data, list) or not all(isinstance(s, str) for s in data):
            raise BackendError(f"scripted replies file {path} must hold a JSON list of strings")
        return cls(data, str(path))

    def next(self) -> str:
        with self._lock:
            if self._next >= len(self._replies):
                raise BackendError("scripted replies exhausted")
            self._next += 1
            return self._replies[self._next - 1]

    def unread(self) -> None:
        """Give back the last reply (its completion was cancelled before it finished)."""
        with self._lock:
            self._next = max(self._next - 1, 0)

    @property
    def remaining(self) -> int:
        return len(self._replies) - self._next


class ForcedTokens:
    """A logits processor that leaves only the scripted token of its position possible.

    The position comes from the length of the token history it is handed (mlx-lm passes the
    prompt's new tokens plus what was generated), not from a count of calls: speculative decoding
    calls it for every drafted position of a verification pass, and the rejected ones never
    happened, so a call counter would run ahead of the text.
    """

    def __init__(self, tokens: list[int], prompt_length: int | None = None) -> None:
        self.tokens = tokens
        self.prompt_length = prompt_length  # None: the first call's history length

    def __call__(self, history: mx.array, logits: mx.array) -> mx.array:
        return self.positions(history.shape[0], logits)

    def positions(self, history_length: int, logits: mx.array) -> mx.array:
        """Every row of a pass at once (row i follows a history of history_length + i tokens): only
        the length matters here, so a verification pass costs a few array operations, not a few
        per drafted position."""
        import mlx.core as mx

        if self.prompt_length is None:
            self.prompt_length = history_length
        step, last = history_length - self.prompt_length, len(self.tokens) - 1
        wanted = [self.tokens[min(max(step + i, 0), last)] for i in range(logits.shape[0])]
        vocab = mx.arange(logits.shape[-1])
        # The kept logit is the model's own (NaN made finite), not a constant: MLX is lazy, and a
        # choice that did not depend on the logits would leave the forward passes unevaluated
        # until something later read the KV cache, so decode would only look fast.
        keep = vocab[None, :] == mx.array(wanted)[:, None]
        return mx.where(keep, mx.nan_to_num(logits), -mx.inf)
