"""`glm-lsp run --apply --review` on a pseudo-terminal: the user leaves a new file, takes a.py
and one of b.py's two hunks; only that is written, logged per file, and undone by `glm-lsp undo`."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_agent_run import A_BEFORE, B_BEFORE, FIXTURE, REPLIES, files, write_replies

PROMPT = b"[y,n,a,q]? "


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    shutil.copytree(FIXTURE, ws)
    return ws


class Terminal:
    """A child process on a pty, read as a user would: wait for a prompt, answer it."""

    def __init__(self, cmd: list[str], cwd: Path) -> None:
        self.master, slave = os.openpty()
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        self.proc = subprocess.Popen(
            cmd, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, close_fds=True
        )
        os.close(slave)
        self.seen = b""

    def read_until(self, count: int, limit: float = 300) -> None:
        """Until the screen holds `count` prompts (or the child ends)."""
        deadline = time.monotonic() + limit
        while self.seen.count(PROMPT) < count:
            assert time.monotonic() < deadline, self.seen.decode(errors="replace")[-2000:]
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:  # the child closed the terminal
                    break
            elif self.proc.poll() is not None:
                break

    def answer(self, text: str) -> None:
        os.write(self.master, text.encode() + b"\n")

    def finish(self, limit: float = 300) -> int:
        deadline = time.monotonic() + limit
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, "the child did not finish"
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:
                    break
        os.close(self.master)
        return self.proc.wait()


def cli(ws: Path, model: Path, replies: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "glm_lsp.cli",
        "run",
        str(ws),
        "Rename foo to bar everywhere",
        "--model",
        str(model),
        "--scripted-replies",
        str(replies),
        *extra,
    ]


def test_review_per_file_and_hunk_on_a_terminal(
    workspace: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    replies = write_replies(tmp_path / "r.json", REPLIES)
    term = Terminal(cli(workspace, tiny_model_dir, replies, "--apply", "--review"), tmp_path)
    # the change order is creates, then modifies: pkg/c.py, pkg/a.py (1 hunk), pkg/b.py (2)
    term.read_until(1)
    assert b"Create pkg/c.py" in term.seen
    term.answer("n")
    term.read_until(2)
    assert b"+def bar(x):" in term.seen
    term.answer("y")
    term.read_until(3)
    assert b"(1/2) pkg/b.py" in term.seen
    term.answer("what")  # not an answer: the help, and the same question again
    term.read_until(4)
    assert b"y - take this" in term.seen
    term.answer("y")
    term.read_until(5)
    assert b"(2/2) pkg/b.py" in term.seen
    term.answer("n")
    code = term.finish()
    shown = term.seen.decode(errors="replace")
    assert code == 0, shown[-3000:]
    assert "pkg/b.py: 1 of 2 hunks" in shown

    now = files(workspace)
    assert "pkg/c.py" not in now
    assert now["pkg/a.py"] == A_BEFORE.replace("def foo", "def bar")
    assert now["pkg/b.py"] == B_BEFORE.replace("import foo", "import bar")

    log = workspace / ".glm-lsp" / "thinking.jsonl"
    (record,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert record["reviewed"] is True and record["applied"] is True
    assert record["changes"] == [
        {"path": "pkg/c.py", "kind": "create", "applied": False},
        {"path": "pkg/a.py", "kind": "modify", "applied": True},
        {
            "path": "pkg/b.py",
            "kind": "modify",
            "applied": True,
            "hunks": {"applied": 1, "total": 2},
        },
    ]

    # undo reverts what was written, and only that
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    undo = subprocess.run(
        [sys.executable, "-m", "glm_lsp.cli", "undo", str(workspace)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert undo.returncode == 0, undo.stderr
    now = files(workspace)
    assert now["pkg/a.py"] == A_BEFORE and now["pkg/b.py"] == B_BEFORE
    assert "pkg/c.py" not in now


def test_review_without_a_terminal_is_a_usage_error(
    workspace: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    replies = write_replies(tmp_path / "r.json", REPLIES)
    out = subprocess.run(
        cli(workspace, tiny_model_dir, replies, "--apply", "--review"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "--review asks on a terminal" in out.stderr
    assert not (workspace / ".glm-lsp").exists()  # refused before any model work
