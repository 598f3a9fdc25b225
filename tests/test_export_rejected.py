"""A reviewed edit the user partly rejected: the log says so per file, the next request's user
message names it, and `glm-lsp export --rejected keep|drop` labels or drops the request."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from glm_lsp.agent.edits import ChangeSet, apply_to_disk
from glm_lsp.agent.landing import ApplyReport, Landing
from glm_lsp.agent.prompts import AgentRequest
from glm_lsp.agent.session import Session
from glm_lsp.cli import main
from glm_lsp.config import Settings
from glm_lsp.runtime.factory import make_backend
from tests.test_export import SESSION

FIXTURE = Path(__file__).parent / "fixtures" / "rename"
RENAME, RENAME_REPLIES, _ = SESSION[0]
ASK_REPLIES = ["</think>Nothing else."]


def keep_only_a(root: Path):
    """Plays a user who takes pkg/a.py and rejects pkg/b.py."""

    def apply(changes: ChangeSet) -> ApplyReport:
        taken = ChangeSet([c for c in changes.changes if c.path == "pkg/a.py"])
        left = ChangeSet([c for c in changes.changes if c.path != "pkg/a.py"])
        apply_to_disk(root, taken)
        landings = [Landing(c.path, c.kind, c.path == "pkg/a.py") for c in changes.changes]
        return ApplyReport(True, None, landings, taken, left)

    return apply


@pytest.fixture(scope="module")
def reviewed(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("rejected") / "ws"
    shutil.copytree(FIXTURE, ws)
    replies = ws.parent / "replies.json"
    replies.write_text(json.dumps([*RENAME_REPLIES, *ASK_REPLIES]))
    config = Settings(model=str(tiny_model_dir), scriptedReplies=str(replies))
    session = Session(ws, config, make_backend(config, config.state_dir(ws)))
    session.run(RENAME, lambda kind, text: None, threading.Event(), keep_only_a(ws))
    ask = AgentRequest(kind="ask", instruction="Anything else?")
    session.run(ask, lambda kind, text: None, threading.Event(), keep_only_a(ws))
    return ws


def records(ws: Path) -> list[dict]:
    log = ws / ".glm-lsp" / "thinking.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_log_and_next_user_message_name_the_rejected_file(reviewed: Path) -> None:
    first, second = records(reviewed)
    assert first["reviewed"] is True
    assert first["changes"] == [
        {"path": "pkg/a.py", "kind": "modify", "applied": True},
        {"path": "pkg/b.py", "kind": "modify", "applied": False},
    ]
    user = second["messages"][0]["content"]
    assert "You proposed changes in the previous request" in user
    assert "the user rejected the change to pkg/b.py" in user
    assert "pkg/a.py" not in user.split("You proposed", 1)[1]


def export(ws: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    assert main(["export", str(ws), "--format", "completions", *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_export_keeps_rejections_labelled_or_drops_them(reviewed: Path, capsys) -> None:
    kept = export(reviewed, capsys=capsys)
    labelled = [line for line in kept if "rejected" in line]
    assert len(labelled) == len(RENAME_REPLIES)  # every completion of the rename request
    assert labelled[0]["rejected"] == [{"path": "pkg/b.py", "kind": "modify"}]
    assert len(kept) == len(RENAME_REPLIES) + len(ASK_REPLIES)

    dropped = export(reviewed, "--rejected", "drop", capsys=capsys)
    assert len(dropped) == len(ASK_REPLIES)
    assert all("rejected" not in line for line in dropped)
