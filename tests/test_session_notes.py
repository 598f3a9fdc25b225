"""Session behaviour across requests: "changed since" notes and compaction, read from the log."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

from glm_lsp.agent.edits import ChangeSet, apply_to_disk
from glm_lsp.agent.prompts import AgentRequest
from glm_lsp.agent.session import Session
from glm_lsp.config import Settings
from glm_lsp.glm.parse import tool_call_text
from glm_lsp.runtime.factory import make_backend

FIXTURE = Path(__file__).parent / "fixtures" / "rename"


def _session(tmp_path: Path, model: Path, replies: list[str], **settings: object) -> Session:
    ws = tmp_path / "ws"
    shutil.copytree(FIXTURE, ws)
    path = tmp_path / "replies.json"
    path.write_text(json.dumps(replies))
    s = Settings(model=str(model), scriptedReplies=str(path), **settings)
    return Session(ws, s, make_backend(s, s.state_dir(ws)))


def _ask(session: Session, question: str) -> None:
    session.run(
        AgentRequest(kind="ask", instruction=question),
        lambda k, t: None,
        threading.Event(),
        lambda c: (False, None),
    )


def test_changes_on_disk_appear_in_the_next_user_message(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    replies = [tool_call_text("read_file", {"path": "pkg/a.py"}), "It doubles.", "Noted."]
    session = _session(tmp_path, tiny_model_dir, replies)
    _ask(session, "What does a.py do?")
    (session.root / "pkg" / "a.py").write_text("def foo(x):\n    return 3 * x\n")
    (session.root / "new.py").write_text("X = 1\n")
    session.index.apply_change("modified", "pkg/a.py")
    session.index.apply_change("created", "new.py")
    _ask(session, "Anything new?")
    user = session.log.records()[1]["messages"][0]["content"]
    assert "- modified pkg/a.py" in user and "- created new.py" in user
    assert "re-read before editing): pkg/a.py" in user
    assert "new.py" not in session.log.records()[0]["messages"][0]["content"]


def test_compaction_drops_whole_oldest_requests_from_the_prompt_not_the_log(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    session = _session(
        tmp_path, tiny_model_dir, ["A." * 1, "B.", "C."], contextLength=2600, maxTokens=64
    )
    for q in ("first " * 150, "second " * 150, "third"):
        _ask(session, q)
    records = session.log.records()
    assert [r["turn"] for r in records] == [1, 2, 3]  # the log keeps everything
    assert records[2]["compacted"]["droppedTurns"][0] == 1
    assert records[2]["stats"]["promptTokens"] + 64 <= 2600


def test_own_applied_edits_are_not_reported_as_changes(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    edit = tool_call_text(
        "edit_file", {"path": "pkg/a.py", "old_text": "def foo", "new_text": "def bar"}
    )
    replies = ["Rename it.</think>" + edit, "Done.</think>Renamed.", "Noted."]
    session = _session(tmp_path, tiny_model_dir, replies)

    def apply(change_set: ChangeSet) -> tuple[bool, str | None]:
        apply_to_disk(session.root, change_set)  # as the editor would
        return True, None

    session.run(
        AgentRequest(kind="refactor", instruction="rename foo"),
        lambda k, t: None,
        threading.Event(),
        apply,
    )
    session.index.apply_change("modified", "pkg/a.py")  # what the watcher reports for our edit
    (session.root / "user.py").write_text("Y = 2\n")
    session.index.apply_change("created", "user.py")
    _ask(session, "Anything new?")
    user = session.log.records()[1]["messages"][0]["content"]
    assert "- created user.py" in user
    assert "pkg/a.py" not in user  # neither "modified" nor "re-read before editing"
