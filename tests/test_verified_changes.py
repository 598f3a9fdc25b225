"""Verified changes end to end: scripted replies through the tiny model run a real failing pytest
suite in the sandboxed shadow, fix it, run it again; verifyCommand reports on the final edit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from glm_lsp.agent.prompts import AgentRequest
from glm_lsp.agent.session import Session
from glm_lsp.config import Settings
from glm_lsp.glm.parse import tool_call_text
from glm_lsp.runtime.factory import make_backend

needs_bwrap = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and shutil.which("bwrap")),
    reason="bubblewrap is not installed",
)
PYTEST = f"{sys.executable} -m pytest -q"
CALC = "def add(a, b):\n    return a - b\n"
TEST_CALC = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
FIX = tool_call_text("edit_file", {"path": "calc.py", "old_text": "a - b", "new_text": "a + b"})


def failing_project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "calc.py").write_text(CALC)
    (root / "test_calc.py").write_text(TEST_CALC)
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Every path under the project (state dir aside), with file contents."""
    return {
        p.relative_to(root).as_posix(): ("<dir>" if p.is_dir() else p.read_text())
        for p in sorted(root.rglob("*"))
        if ".glm-lsp" not in p.relative_to(root).parts
    }


def session_for(root: Path, tmp_path: Path, model: Path, replies: list[str], **kw) -> Session:
    script = tmp_path / "replies.json"
    script.write_text(json.dumps(replies))
    settings = Settings(model=str(model), scriptedReplies=str(script), **kw)
    return Session(root, settings, make_backend(settings, settings.state_dir(root)))


def run(session: Session, events: list[tuple[str, str]]):
    applied: list = []
    try:
        return session.run(
            AgentRequest(kind="fix", instruction="make the tests pass"),
            lambda k, t: events.append((k, t)),
            threading.Event(),
            lambda changes: (applied.append(changes) is None and False, "review only"),
        )
    finally:
        session.close()


@needs_bwrap
def test_runs_failing_tests_fixes_and_runs_them_again(tmp_path: Path, tiny_model_dir: Path) -> None:
    root = failing_project(tmp_path)
    before = snapshot(root)
    replies = [
        "Run the tests first.</think>" + tool_call_text("run_command", {"command": PYTEST}),
        "add subtracts.</think>" + FIX + tool_call_text("run_command", {"command": PYTEST}),
        "It passes now.</think>Fixed add: it subtracted.",
    ]
    session = session_for(
        root, tmp_path, tiny_model_dir, replies, allowCommands=(f"{sys.executable} -m pytest*",)
    )
    events: list[tuple[str, str]] = []
    outcome = run(session, events)
    tools = [m["content"] for m in outcome.result.messages if m["role"] == "tool"]
    assert tools[0].startswith("exit code 1\n") and "1 failed" in tools[0]
    assert tools[1].startswith("edited 'calc.py'")
    assert tools[2].startswith("exit code 0\n") and "1 passed" in tools[2]
    # the editor got the output as it came, then the exit code
    streamed = "".join(t for k, t in events if k == "tool_output")
    assert "1 failed" in streamed and "1 passed" in streamed
    assert ("tool_result", "\nexit code 1") in events
    assert ("progress", f"running {sys.executable}…") in events
    assert outcome.result.verification is None  # no verifyCommand set
    assert [c.path for c in outcome.result.changes.changes] == ["calc.py"]
    assert snapshot(root) == before  # no edit, no __pycache__, no .pytest_cache


@needs_bwrap
def test_verify_command_sends_a_failure_back_and_reports_the_outcome(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    root = failing_project(tmp_path)
    before = snapshot(root)
    replies = [
        "A comment will do.</think>"
        + tool_call_text("write_file", {"path": "NOTES.md", "content": "notes\n"}),
        "Done.</think>Added notes.",
        "The test still fails.</think>" + FIX,
        "Now it passes.</think>Fixed add.",
    ]
    session = session_for(root, tmp_path, tiny_model_dir, replies, verifyCommand=PYTEST)
    outcome = run(session, [])
    v = outcome.result.verification
    assert v is not None and v.to_dict()["exitCode"] == 0
    assert v.to_dict()["command"] == PYTEST and "1 passed" in v.summary
    feedback = [m for m in outcome.result.messages if m["role"] == "user"][1]["content"]
    assert feedback.startswith(f"The verification command `{PYTEST}` failed on your edits")
    assert "1 failed" in feedback
    logged = session.log.records()[-1]["verification"]
    assert logged == v.to_dict()
    assert snapshot(root) == before


@needs_bwrap
def test_verify_rounds_zero_reports_the_failure(tmp_path: Path, tiny_model_dir: Path) -> None:
    root = failing_project(tmp_path)
    replies = [
        "Notes.</think>" + tool_call_text("write_file", {"path": "N.md", "content": "n\n"}),
        "Done.</think>Added notes.",
    ]
    session = session_for(
        root, tmp_path, tiny_model_dir, replies, verifyCommand=PYTEST, verifyRounds=0
    )
    v = run(session, []).result.verification
    assert v is not None and v.exit_code == 1 and "1 failed" in v.summary


def test_cli_refuses_a_command_nobody_allowed_and_prints_verification(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    root = failing_project(tmp_path)
    before = snapshot(root)
    replies = [
        "Try it.</think>" + tool_call_text("run_command", {"command": "touch ran.txt"}),
        "Fix.</think>" + FIX,
        "Done.</think>Fixed add.",
    ]
    script = tmp_path / "r.json"
    script.write_text(json.dumps(replies))
    cmd = [sys.executable, "-m", "glm_lsp.cli", "run", str(root), "fix it", "--kind", "fix"]
    cmd += ["--model", str(tiny_model_dir), "--scripted-replies", str(script)]
    cmd += ["--verify-command", PYTEST, "--sandbox", "off"]
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert "Error: not run: this command is not allowed and there is no one to ask" in done.stderr
    assert "--allow-command" in done.stderr
    out = done.stdout
    assert out.index("+    return a + b") < out.index(
        f"verification: {PYTEST}: exit code 0: 1 passed"
    )
    assert snapshot(root) == before
