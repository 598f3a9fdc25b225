"""Where a client that did not wait for an agent request (no stream capability) sees its outcome:
the answer (or a refactor's summary) as a markdown document in the state dir, opened with
window/showDocument; a client that cannot show documents gets its first lines in
window/showMessage and all of it in window/logMessage. A failed edit is also an error message."""

from __future__ import annotations

import logging
from pathlib import Path

from lsprotocol import types as lsp

from glm_lsp import state_files
from glm_lsp.agent.session import Outcome
from glm_lsp.server.app import GlmServer
from glm_lsp.wire.commands import AnswerResult, EditResult
from glm_lsp.wire.records import Stats

log = logging.getLogger(__name__)

ANSWERS_DIR = "answers"
FIRST_LINES = 4  # of the answer, in a showMessage
FIRST_CHARS = 500


def render(title: str, outcome: Outcome, result: AnswerResult | EditResult) -> str:
    """The answer, then the reasoning, then the stats."""
    text = outcome.result.text.strip()
    parts = [f"# {title} (turn {result.turn})"]
    if isinstance(result, AnswerResult):
        parts.append(text or "_The model gave no answer._")
    else:
        parts.append(text or result.summary or "_The model gave no summary._")
        parts.append(_changes(outcome, result))
    if outcome.result.reasoning:
        quoted = [
            "\n".join(f"> {line}" for line in r.strip().splitlines())
            for r in outcome.result.reasoning
        ]
        parts.append("## Reasoning\n\n" + "\n>\n".join(quoted))
    parts.append("## Stats\n\n" + stats_line(result.stats))
    return "\n\n".join(parts) + "\n"


def _changes(outcome: Outcome, result: EditResult) -> str:
    lines = ["## Changes", ""]
    for change, shown in zip(outcome.result.changes.changes, result.changes, strict=False):
        applied = result.applied if shown.applied is None else shown.applied
        where = f"{change.old_path} → {change.path}" if change.kind == "rename" else change.path
        lines.append(f"- {change.kind} `{where}`" + ("" if applied else " (not applied)"))
    if not result.changes:
        lines.append("- none")
    if not result.applied:
        lines += ["", f"**Not applied:** {result.failure_reason}"]
    v = result.verification
    if v is not None:
        lines += ["", f"**Verification:** `{v.command}` (exit code {v.exit_code}): {v.summary}"]
    return "\n".join(lines)


def stats_line(s: Stats) -> str:
    return (
        f"{s.promptTokens} prompt tokens ({s.reusedTokens} reused from the KV cache), "
        f"{s.generatedTokens} generated at {s.decodeTps:.1f} tokens/s, "
        f"first token after {s.ttftMs:.0f} ms"
    )


def write(state_dir: Path, turn: int, markdown: str) -> Path:
    """`<stateDir>/answers/turn-N.md`, private like the log it comes from."""
    state_files.prepare_state_dir(state_dir)
    folder = state_files.private_dir(state_dir / ANSWERS_DIR, top=state_dir)
    path = folder / f"turn-{turn}.md"
    state_files.write_private(path, markdown.encode("utf-8"))
    return path


def first_lines(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()][:FIRST_LINES]
    shown = "\n".join(lines)
    return shown if len(shown) <= FIRST_CHARS else shown[: FIRST_CHARS - 1].rstrip() + "…"


async def deliver(
    ls: GlmServer,
    state_dir: Path,
    title: str,
    outcome: Outcome,
    result: AnswerResult | EditResult,
) -> None:
    markdown = render(title, outcome, result)
    failed = isinstance(result, EditResult) and not result.applied
    if failed:
        ls.show_error(f"{title}: not applied: {result.failure_reason}")  # type: ignore[union-attr]
    path: Path | None = None
    try:
        path = write(state_dir, result.turn, markdown)
    except (OSError, state_files.StateRefused) as exc:
        log.warning("could not write the answer document: %s", exc)
    if path is not None and ls.shows_documents() and await _show(ls, path):
        return
    if not failed:
        body = first_lines(outcome.result.text) or first_lines(markdown)
        where = f"\n(all of it in the output log{f' and {path}' if path else ''})"
        ls.window_show_message(
            lsp.ShowMessageParams(type=lsp.MessageType.Info, message=f"{title}: {body}{where}")
        )
    ls.window_log_message(lsp.LogMessageParams(type=lsp.MessageType.Info, message=markdown))


async def _show(ls: GlmServer, path: Path) -> bool:
    """window/showDocument beside the user's file, without taking the focus."""
    try:
        shown = await ls.window_show_document_async(
            lsp.ShowDocumentParams(uri=path.as_uri(), take_focus=False)
        )
    except Exception as exc:  # the client could not: fall back to messages
        log.info("window/showDocument failed: %s", exc)
        return False
    return bool(shown and shown.success)
