"""The preserved-thinking log: appends, torn lines, archive."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from glm_lsp.memory.thinking_log import ThinkingLog, new_record


def record(turn: int) -> dict:
    messages = [
        {"role": "user", "content": f"q{turn}"},
        {"role": "assistant", "content": "a", "reasoning_content": "r\n ü"},
    ]
    return new_record(turn=turn, command="glm.ask", thinking="enabled", messages=messages, stats={})


def test_torn_last_line_is_dropped_once_with_a_warning(tmp_path: Path, caplog) -> None:
    log = ThinkingLog(tmp_path / "state")
    log.append(record(1))
    log.append(record(2))
    with open(log.path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record(3))[:40])  # a crash mid-write
    fresh = ThinkingLog(tmp_path / "state")
    with caplog.at_level(logging.WARNING):
        assert [r["turn"] for r in fresh.records()] == [1, 2]
        assert [r["turn"] for r in fresh.records()] == [1, 2]
    warnings = [r for r in caplog.records if "torn last line" in r.message]
    assert len(warnings) == 1
    fresh.append(record(3))  # the torn tail is cut, the new line is whole
    assert [r["turn"] for r in ThinkingLog(tmp_path / "state").records()] == [1, 2, 3]
    assert fresh.records()[0]["messages"][1]["reasoning_content"] == "r\n ü"


def test_state_dir_is_private_and_ignored(tmp_path: Path) -> None:
    log = ThinkingLog(tmp_path / "state")
    log.append(record(1))
    assert (tmp_path / "state" / ".gitignore").read_text() == "*\n"
    assert log.path.stat().st_mode & 0o777 == 0o600
    assert log.next_turn() == 2


def test_archive_starts_fresh(tmp_path: Path) -> None:
    log = ThinkingLog(tmp_path / "state")
    log.append(record(1))
    archived = log.archive()
    assert archived and Path(archived).name.startswith("thinking-") and Path(archived).exists()
    assert log.records() == [] and log.next_turn() == 1
    assert log.archive() is None
