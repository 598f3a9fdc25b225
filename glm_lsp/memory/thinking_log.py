"""The preserved-thinking log (the README's preserved-thinking log): `<stateDir>/thinking.jsonl`, one request a line.

Appends are flushed and fsynced, so a crash loses at most the line being written; a torn last line
is dropped with a warning and every complete line survives.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from glm_lsp import state_files
from glm_lsp.memory.conversation_lock import ConversationLock
from glm_lsp.state_files import prepare_state_dir
from glm_lsp.wire.converter import converter
from glm_lsp.wire.records import ChangeRecord, LogRecord, Stats, now

log = logging.getLogger(__name__)
LOG_FILE = "thinking.jsonl"


@dataclass
class LoadResult:
    records: list[dict[str, Any]]
    valid_bytes: int  # where the last complete line ends
    warnings: list[str]


def read_records(path: Path) -> LoadResult:
    """The complete records of a log (never through a link: state_files refuses one)."""
    data = state_files.read_bytes(path)
    if data is None:
        return LoadResult([], 0, [])
    records, warnings, offset = [], [], 0
    for number, raw in enumerate(data.splitlines(keepends=True), start=1):
        end = offset + len(raw)
        complete = raw.endswith(b"\n")
        try:
            record = json.loads(raw)
            if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
                raise ValueError("not a request record")
        except ValueError as exc:
            where = "torn last line (a crash mid-write)" if not complete else f"line {number}"
            warnings.append(f"{path}: dropped {where}: {exc}")
            offset = end
            continue
        if complete:
            records.append(record)
        else:  # valid JSON but no newline: the write was cut before its end
            warnings.append(f"{path}: dropped torn last line (a crash mid-write)")
        offset = end
    valid = len(data) if data.endswith(b"\n") or not data else data.rfind(b"\n") + 1
    return LoadResult(records, valid, warnings)


class ThinkingLog:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / LOG_FILE
        self.lock = ConversationLock(state_dir)  # whoever writes the log holds it, any process
        self._warned = False

    def records(self) -> list[dict[str, Any]]:
        result = read_records(self.path)
        if result.warnings and not self._warned:
            for warning in result.warnings:
                log.warning(warning)
            self._warned = True
        return result.records

    def warnings(self) -> list[str]:
        return read_records(self.path).warnings

    def next_turn(self) -> int:
        """The next turn as the log stands now; a request's own turn is numbered while it holds
        the conversation (Session.run's on_turn), since another process may log one first."""
        return max((int(r.get("turn", 0)) for r in self.records()), default=0) + 1

    def append(self, record: dict[str, Any]) -> None:
        """Append one request; a torn tail left by a crash is cut off first so lines stay whole."""
        prepare_state_dir(self.state_dir)
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self.lock.hold():  # else another writer's line could be cut as a torn tail
            valid = read_records(self.path).valid_bytes
            state_files.append(self.path, line.encode("utf-8"), keep=valid)

    def archive(self) -> str | None:
        """glm.thinking.reset: move the log aside; the next request starts a fresh conversation."""
        if not state_files.check_path(self.path, want_dir=False):
            return None
        with self.lock.hold():  # not in the middle of another process's request
            if not state_files.check_path(self.path, want_dir=False):
                return None
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            target = self.path.with_name(f"thinking-{stamp}.jsonl")
            os.replace(self.path, target)
            return str(target)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.records())


def new_record(
    *,
    turn: int,
    command: str,
    thinking: str,
    messages: list[dict[str, Any]],
    stats: Stats | dict[str, Any],
    summary: str = "",
    reads: dict[str, str | None] | None = None,
    changes: list[ChangeRecord] | None = None,
    applied: bool = False,
    **optional: Any,
) -> dict[str, Any]:
    """One log line, shaped by the wire model LogRecord; `optional`: its fields with defaults."""
    record = LogRecord(
        v=1,
        turn=turn,
        time=now(),
        command=command,
        thinking=thinking,  # type: ignore[arg-type]
        messages=messages,
        stats=stats if isinstance(stats, Stats) else converter.structure(stats, Stats),
        summary=summary,
        reads=reads or {},
        changes=changes or [],
        applied=applied,
        **optional,
    )
    return converter.unstructure(record)
