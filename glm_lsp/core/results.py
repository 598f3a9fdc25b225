"""Command results as wire models (glm_lsp.wire.commands), built from what the agent did; each
front-end serialises them with the one converter."""

from __future__ import annotations

from typing import Any

from glm_lsp.agent.edits import ChangeSet
from glm_lsp.agent.landing import Landing
from glm_lsp.agent.session import Outcome
from glm_lsp.core.folder import Folder
from glm_lsp.wire.commands import AnswerResult, EditChange, EditResult, ThinkingTurn
from glm_lsp.wire.converter import converter
from glm_lsp.wire.records import Hunks, Stats


def edit_changes(
    folder: Folder, change_set: ChangeSet, landings: list[Landing] | None = None
) -> list[EditChange]:
    """The result's `changes`; after a review, `applied` per change and `hunks` for a partly
    taken file."""
    out = []
    for i, c in enumerate(change_set.changes):
        got = landings[i] if landings is not None else None
        out.append(
            EditChange(
                uri=folder.uri(c.path),
                kind=c.kind,
                sensitive=c.sensitive,
                applied=got.applied if got is not None else None,
                hunks=Hunks(*got.hunks) if got is not None and got.hunks else None,
            )
        )
    return out


def agent_result(folder: Folder, kind: str, outcome: Outcome) -> AnswerResult | EditResult:
    result = outcome.result
    if kind in ("explain", "ask"):
        return AnswerResult(result.text, list(result.reasoning), outcome.turn, result.stats)
    failure = None
    if not outcome.applied:
        failure = outcome.failure_reason or (
            "the model proposed no changes" if not result.changes else "not applied"
        )
    return EditResult(
        applied=outcome.applied,
        changes=edit_changes(folder, result.changes, outcome.landings),
        summary=outcome.summary,
        turn=outcome.turn,
        stats=result.stats,
        failure_reason=failure,
        verification=result.verification.wire() if result.verification else None,
    )


def logged_stats(record: dict[str, Any] | None) -> Stats | None:
    """A log record's stats as the model (older records may lack the newer counters)."""
    stats = record.get("stats") if record else None
    try:
        return converter.structure(stats, Stats) if isinstance(stats, dict) else None
    except Exception:  # a hand-edited or foreign line: no stats rather than no status
        return None


def thinking_turns(records: list[dict[str, Any]], limit: int | None) -> list[ThinkingTurn]:
    """glm.thinking.show: the logged requests' reasoning, the last `limit` of them."""
    if limit is not None:
        records = records[-limit:]
    return [
        ThinkingTurn(
            turn=r.get("turn", 0),
            command=r.get("command", ""),
            thinking=r.get("thinking", ""),
            reasoning=[
                m["reasoning_content"]
                for m in r.get("messages", [])
                if m.get("role") == "assistant" and m.get("reasoning_content")
            ],
            summary=r.get("summary", ""),
        )
        for r in records
    ]
