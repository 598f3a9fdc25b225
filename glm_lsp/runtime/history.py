"""The conversation's token history: every token whose keys and values sit in the KV cache.

The history is kept as text segments (a prompt suffix, or a completion with its stop token) with
their token counts. A new prompt that starts with the history's text only needs its own suffix
tokenised and prefilled; generated tokens are never re-tokenised, so they are never recomputed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Plan:
    keep: int  # history tokens reused from the KV cache
    new_tokens: list[int]  # tokens to prefill, in order
    prompt_tokens: int  # keep + len(new_tokens)


@dataclass
class TokenHistory:
    tokens: list[int] = field(default_factory=list)
    segments: list[tuple[str, int]] = field(default_factory=list)  # (text, token count)

    @property
    def text(self) -> str:
        return "".join(text for text, _ in self.segments)

    def plan(self, prompt: str, encode: Callable[[str], list[int]]) -> Plan:
        """Reuse every whole segment the prompt starts with; inside the first segment that differs,
        reuse the longest common token prefix (compaction, clear_thinking, an edited message)."""
        pos_text = pos_tok = index = 0
        for index, (text, count) in enumerate(self.segments):  # noqa: B007 - index used below
            if not prompt.startswith(text, pos_text):
                break
            pos_text += len(text)
            pos_tok += count
        else:
            index = len(self.segments)
        tail = encode(prompt[pos_text:])
        old = self.tokens[pos_tok:]
        common = 0
        while common < min(len(tail), len(old)) and tail[common] == old[common]:
            common += 1
        keep = pos_tok + common
        new = tail[common:]
        if not new:  # the model needs at least one token to produce logits
            keep -= 1
            new = [(self.tokens[:pos_tok] + tail)[keep]]
        # The history once the prompt is in the cache, fixed now: truncate(keep) may drop the
        # segment that the prompt's last token is taken from before commit_prompt runs.
        segments = self.segments[:index] + ([(prompt[pos_text:], len(tail))] if tail else [])
        self._pending = (segments, self.tokens[:pos_tok] + tail)
        return Plan(keep=keep, new_tokens=new, prompt_tokens=keep + len(new))

    def commit_prompt(self) -> None:
        """The planned prompt is now in the cache: history = kept segments + the prompt's tail."""
        self.segments, self.tokens = self._pending

    def append(self, text: str, tokens: list[int]) -> None:
        if tokens:
            self.segments.append((text, len(tokens)))
            self.tokens.extend(tokens)

    def truncate(self, length: int) -> None:
        """Drop tokens past `length` (a cancelled prefill or completion), whole segments first."""
        kept, total = [], 0
        for text, count in self.segments:
            if total + count > length:
                break
            kept.append((text, count))
            total += count
        # A partial segment has no exact text, so it is dropped: those tokens get recomputed.
        self.segments = kept
        self.tokens = self.tokens[:total]

    def __len__(self) -> int:
        return len(self.tokens)
