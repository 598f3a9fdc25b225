"""Prompt-lookup drafting: guess the next tokens by finding the latest earlier occurrence of the
last few tokens in the conversation and proposing what followed it.

An agent's edit turns copy text it just read (`old_text`, a rewritten file), so the continuation of
an earlier occurrence is often exactly what the model will generate. The drafts are only guesses:
speculative.py verifies them against the model, so a wrong draft costs time, never correctness.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

# Token ids are packed into one int per n-gram (exact, no hashing): 24 bits covers any vocabulary.
_BITS = 24
_LIMIT = 1 << _BITS
_UNINDEXED = -2  # in _previous: no n-gram of that length ended there


class NgramIndex:
    """The token history with, for each n-gram (min_n <= n <= max_n), where its latest occurrence
    that has a following token ends. Appending a token is O(max_n), a lookup O(max_n), and taking
    the last k tokens back (a cancelled completion) O(k * max_n)."""

    def __init__(self, max_n: int = 4, min_n: int = 2) -> None:
        if not 1 <= min_n <= max_n:
            raise ValueError("need 1 <= min_n <= max_n")
        self.max_n, self.min_n = max_n, min_n
        self.tokens: list[int] = []
        # _latest[n][packed n-gram] = index of the end of its latest occurrence with a follower
        self._latest: list[dict[int, int]] = [{} for _ in range(max_n + 1)]
        # _previous[n][i]: what _latest held for the n-gram that appending token i indexed (-1:
        # nothing), so truncation can put it back. Flat arrays: 8 bytes per token and length.
        self._previous = [array("q") for _ in range(max_n + 1)]

    def __len__(self) -> int:
        return len(self.tokens)

    def extend(self, tokens: Iterable[int]) -> None:
        for token in tokens:
            self.append(token)

    def append(self, token: int) -> None:
        if not 0 <= token < _LIMIT:
            raise ValueError(f"token id {token} out of range")
        toks = self.tokens
        end = len(toks) - 1  # the n-grams ending here now have a follower: index them
        key = 0
        for n in range(1, self.max_n + 1):
            if n > end + 1:
                if n >= self.min_n:
                    self._previous[n].append(_UNINDEXED)
                continue
            key |= toks[end - n + 1] << (_BITS * (n - 1))
            if n >= self.min_n:
                self._previous[n].append(self._latest[n].get(key, -1))
                self._latest[n][key] = end
        toks.append(token)

    def truncate(self, length: int) -> None:
        """Keep the first `length` tokens, exactly as if the rest had never been appended."""
        toks = self.tokens
        for i in range(len(toks) - 1, length - 1, -1):
            end = i - 1
            key = 0
            for n in range(1, self.max_n + 1):
                if n > end + 1:
                    break
                key |= toks[end - n + 1] << (_BITS * (n - 1))
                if n >= self.min_n:
                    previous = self._previous[n][i]
                    if previous == -1:
                        del self._latest[n][key]
                    else:
                        self._latest[n][key] = previous
        del toks[length:]
        for n in range(self.min_n, self.max_n + 1):
            del self._previous[n][length:]

    def sync(self, tokens: list[int]) -> None:
        """Make the index hold exactly `tokens`: extend when they continue what it holds (the usual
        case, a conversation grows), else take back what differs first (a cancelled completion, a
        compacted history) and extend from there."""
        held = len(self.tokens)
        if held > len(tokens) or tokens[:held] != self.tokens:
            common = next(
                (i for i, (a, b) in enumerate(zip(self.tokens, tokens, strict=False)) if a != b),
                min(held, len(tokens)),
            )
            self.truncate(common)
        self.extend(tokens[len(self.tokens) :])

    def draft(self, limit: int) -> list[int]:
        """Up to `limit` tokens that followed the latest earlier occurrence of the longest matching
        suffix (max_n tokens down to min_n); [] when nothing matches."""
        return self.lookup(limit)[0]

    def lookup(self, limit: int) -> tuple[list[int], int]:
        """The draft and the length of the suffix it was found from (0: no match). How well drafts
        land depends on that length, so draft_policy.py keeps its estimates per length."""
        toks = self.tokens
        size = len(toks)
        if limit <= 0 or size == 0:
            return [], 0
        key = 0
        found = -1
        keys = []
        for n in range(1, min(self.max_n, size) + 1):
            key |= toks[size - n] << (_BITS * (n - 1))
            keys.append((n, key))
        for n, key in reversed(keys):  # longest suffix first
            if n < self.min_n:
                break
            found = self._latest[n].get(key, -1)
            if found >= 0:
                return toks[found + 1 : found + 1 + limit], n
        return [], 0


def reference_draft(tokens: list[int], limit: int, max_n: int = 4, min_n: int = 2) -> list[int]:
    """The brute-force definition NgramIndex.draft must match (tests only)."""
    size = len(tokens)
    if limit <= 0:
        return []
    for n in range(min(max_n, size), min_n - 1, -1):
        suffix = tokens[size - n :]
        for start in range(size - n - 1, -1, -1):  # needs a follower: start + n <= size - 1
            if tokens[start : start + n] == suffix:
                return tokens[start + n : start + n + limit]
    return []
