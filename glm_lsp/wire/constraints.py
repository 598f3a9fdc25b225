"""What a wire value may hold beyond its Python type, as `Annotated` metadata: one place per field
that the converter enforces, the error messages describe and the JSON schema states."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Number:
    """A number from `low` to `high` (None: unbounded); `whole` for integers."""

    low: float | None = None
    high: float | None = None
    whole: bool = True

    def describe(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        if self.low is not None and self.high is not None:
            return f"{kind} from {self.low} to {self.high}"
        if self.low is not None:
            return f"{kind} >= {self.low}"
        return kind


@dataclass(frozen=True)
class Text:
    """A string; `blank`: whitespace-only is accepted; `strip`: stored without outer spaces."""

    max_len: int | None = None
    blank: bool = False
    strip: bool = False
    describes: str = "a non-empty string"

    def describe(self) -> str:
        return self.describes


class WireValueError(ValueError):
    """A value the wire model does not accept. `problem` replaces "is <value>" in the message
    when the value itself is not the point (too long, an unpaired surrogate)."""

    def __init__(self, value: Any, accepts: str, problem: str | None = None) -> None:
        super().__init__(problem or accepts)
        self.value = value
        self.accepts = accepts
        self.problem = problem
