"""The preserved-thinking log as fine-tuning JSONL, one line per assistant completion.

One line per completion rather than per conversation: with prompt masking, mlx-lm trains only the
last message of a chat record, so a line per completion is what trains every assistant turn once,
each in the exact context the model generated it in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from glm_lsp.glm.format import render_prompt
from glm_lsp.glm.tool_schemas import TOOLS
from glm_lsp.memory.thinking_log import LOG_FILE, read_records
from glm_lsp.traces.conversation import Step, assistant_completion, steps
from glm_lsp.traces.redact import Redactor

FORMATS = ("chat", "completions")


@dataclass
class ExportOptions:
    format: str = "chat"
    only_applied: bool = False
    since: datetime | None = None
    redact_results: bool = False
    api_key_env: str | None = None
    preserve_thinking: bool = True  # the setting the sessions ran with (the log does not say)
    include_compacted: bool = False
    include_archived: bool = False
    rejected: str = "keep"  # keep: requests whose edit the user partly rejected, labelled; drop


@dataclass
class ExportReport:
    lines: int = 0
    requests: int = 0  # requests that contributed at least one line
    logged: int = 0  # requests in the logs read
    logs: list[Path] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    redacted: int = 0  # strings changed by redaction
    warnings: list[str] = field(default_factory=list)


def parse_since(text: str) -> datetime:
    """An ISO date or date-time; UTC unless it carries an offset. Raises ValueError."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def log_files(state_dir: Path, *, include_archived: bool) -> list[Path]:
    """The current log, after the archived ones (their names sort by time) when asked."""
    archived = sorted(state_dir.glob("thinking-*.jsonl")) if include_archived else []
    current = state_dir / LOG_FILE
    return [*archived, current] if current.exists() else archived


def rejected_changes(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The changes of a reviewed edit the user did not take (whole or in part): the strongest
    label a trace can carry, so export keeps it on the line (or drops the request)."""
    if record.get("reviewed") is not True:
        return []
    out = []
    for item in record.get("changes") or []:
        hunks = item.get("hunks") if isinstance(item, dict) else None
        if not isinstance(item, dict):
            continue
        if item.get("applied") is False:
            out.append({"path": item.get("path"), "kind": item.get("kind")})
        elif isinstance(hunks, dict) and hunks.get("applied") != hunks.get("total"):
            out.append({"path": item.get("path"), "kind": item.get("kind"), "hunks": hunks})
    return out


def _selected(record: dict[str, Any], options: ExportOptions) -> bool:
    if options.only_applied and record.get("applied") is not True:
        return False
    if options.rejected == "drop" and rejected_changes(record):
        return False
    if options.since is not None:
        try:
            if parse_since(str(record.get("time"))) < options.since:
                return False
        except ValueError:
            return False  # no readable time: it cannot be shown to be recent enough
    return True


def _line(step: Step, fmt: str) -> dict[str, Any]:
    if fmt == "chat":
        return {
            "messages": [*step.context, step.message],
            "tools": TOOLS,
            # The flags the prompt was rendered with, in the shape mlx_lm.server and vLLM take.
            "chat_template_kwargs": {
                "enable_thinking": step.enable_thinking,
                "clear_thinking": step.clear_thinking,
            },
        }
    prompt = render_prompt(
        step.context,
        TOOLS,
        clear_thinking=step.clear_thinking,
        enable_thinking=step.enable_thinking,
    )
    return {
        "prompt": prompt,
        "completion": assistant_completion(step.message, enable_thinking=step.enable_thinking),
    }


def export_lines(
    workspace: Path, state_dir: Path, options: ExportOptions, report: ExportReport
) -> Iterator[dict[str, Any]]:
    """Yield the JSONL objects of every selected request's completions; fill in `report`."""
    if options.format not in FORMATS:
        raise ValueError(f"unknown format {options.format!r}; use one of {', '.join(FORMATS)}")
    redactor = Redactor(workspace, api_key_env=options.api_key_env, results=options.redact_results)
    report.logs = log_files(state_dir, include_archived=options.include_archived)
    for path in report.logs:
        loaded = read_records(path)
        report.warnings += loaded.warnings
        report.logged += len(loaded.records)
        # Redact each request once; every later context shares its messages.
        records = [{**r, "messages": redactor.messages(r["messages"])} for r in loaded.records]
        contributed: set[int] = set()
        for step in steps(records, preserve_thinking=options.preserve_thinking):
            if not _selected(step.record, options):
                continue
            if step.skip and not (options.include_compacted and step.skip.startswith("compacted")):
                report.skipped[step.skip] += 1
                continue
            contributed.add(id(step.record))
            report.lines += 1
            line = _line(step, options.format)
            rejected = rejected_changes(step.record)
            if rejected:  # the request's edit was turned down, whole or in part
                line["rejected"] = rejected
            yield line
        report.requests += len(contributed)
    report.redacted = redactor.count
