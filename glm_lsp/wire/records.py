"""Wire shapes shared by results and the preserved-thinking log: stats, changes, verification,
and the log record itself (the README's preserved-thinking log)."""

from datetime import datetime, timezone
from typing import Any, Literal

import attrs

from glm_lsp.wire.converter import converter, wire

StopLimit = Literal["maxTokens", "maxSteps"]  # the settings that can end a request early


@wire()
@attrs.define
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

    def add(self, other: "Stats") -> None:
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
        return converter.unstructure(self)


def _decode_seconds(s: Stats) -> float:
    return (
        (s.generatedTokens - 1) / s.decodeTps if s.decodeTps > 0 and s.generatedTokens > 1 else 0.0
    )


@wire(omit_defaults=True, forbid_extra=True)
@attrs.frozen
class Hunks:
    applied: int
    total: int


@wire(omit_defaults=True, forbid_extra=True)
@attrs.frozen
class Verification:
    """verifyCommand's outcome on the edit (exitCode null: it could not run)."""

    command: str
    exit_code: int | None
    summary: str


@wire(omit_defaults=True, forbid_extra=True)
@attrs.frozen
class ChangeRecord:
    """One change of a logged request, by workspace-relative path, and whether it landed."""

    path: str
    kind: str
    applied: bool
    hunks: Hunks | None = None


@wire(omit_defaults=True, forbid_extra=True)
@attrs.frozen
class Compacted:
    dropped_turns: list[int]


@wire(omit_defaults=True, forbid_extra=True)
@attrs.frozen
class LogRecord:
    """One line of `<stateDir>/thinking.jsonl`: a completed request."""

    v: Literal[1]
    turn: int
    time: str  # ISO-8601, UTC
    command: str
    thinking: Literal["enabled", "disabled"]
    messages: list[dict[str, Any]]  # OpenAI-style, reasoning_content byte-exact
    stats: Stats
    summary: str
    reads: dict[str, str | None]  # path -> digest of what the agent read (None: missing)
    changes: list[ChangeRecord]
    applied: bool
    reviewed: bool = False  # the user chose per file/hunk what landed
    compacted: Compacted | None = None
    stopped: str | None = None  # why the loop ended early, in words for the user
    stop_limit: StopLimit | None = None  # the limit that ended it, for tools that read logs
    verification: Verification | None = None
    failure_reason: str | None = None
    prompt: str | None = None  # an ACP message as the user typed it (session/load replays it)
    # the request's MCP tools: {"tools", "digest", "changed"?: {"added", "removed"}, "notes"?}
    mcp: dict[str, Any] | None = None


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
