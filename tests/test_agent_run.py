"""`glm-lsp run` end to end: scripted replies through the tiny model, diff, --apply, the log."""

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

FIXTURE = Path(__file__).parent / "fixtures" / "rename"
A_BEFORE = (FIXTURE / "pkg" / "a.py").read_text()
B_BEFORE = (FIXTURE / "pkg" / "b.py").read_text()
C_AFTER = (
    '"""Helpers built on bar."""\nfrom pkg.a import bar\n\n\ndef quad(x):\n    return bar(bar(x))\n'
)

REPLIES = [
    "I should read a.py first.</think>Reading a.py."
    + tool_call_text("read_file", {"path": "pkg/a.py"}),
    "foo is defined here; b.py uses it too.</think>"
    + tool_call_text(
        "edit_file", {"path": "pkg/a.py", "old_text": "def foo(x):", "new_text": "def bar(x):"}
    )
    + tool_call_text(
        "edit_file",
        {
            "path": "pkg/b.py",
            "old_text": "from pkg.a import foo\n",
            "new_text": "from pkg.a import bar\n",
        },
    ),
    "Now the call site, and the new module.</think>"
    + tool_call_text(
        "edit_file", {"path": "pkg/b.py", "old_text": "foo(foo(x))", "new_text": "bar(bar(x))"}
    )
    + tool_call_text("write_file", {"path": "pkg/c.py", "content": C_AFTER}),
    "All renamed.</think>Renamed foo to bar in a.py and b.py and added c.py.",
]

EXPECTED_DIFF = """\
--- a/pkg/a.py
+++ b/pkg/a.py
@@ -1,3 +1,3 @@
-def foo(x):
+def bar(x):
     \"\"\"Double x.\"\"\"
     return 2 * x
--- a/pkg/b.py
+++ b/pkg/b.py
@@ -1,5 +1,5 @@
-from pkg.a import foo
+from pkg.a import bar
{BLANK}
{BLANK}
 def twice(x):
-    return foo(foo(x))
+    return bar(bar(x))
--- /dev/null
+++ b/pkg/c.py
@@ -0,0 +1,6 @@
+\"\"\"Helpers built on bar.\"\"\"
+from pkg.a import bar
+
+
+def quad(x):
+    return bar(bar(x))
""".replace("{BLANK}", " ")  # context lines of blank lines are a single space


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    shutil.copytree(FIXTURE, ws)
    return ws


def write_replies(path: Path, replies: list[str]) -> Path:
    path.write_text(json.dumps(replies))
    return path


def run_cli(ws: Path, model: Path, replies: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "glm_lsp.cli", "run", str(ws), "Rename foo to bar everywhere"]
    cmd += ["--model", str(model), "--scripted-replies", str(replies), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def files(ws: Path) -> dict[str, str]:
    return {
        p.relative_to(ws).as_posix(): p.read_text()
        for p in sorted(ws.rglob("*"))
        if p.is_file() and ".glm-lsp" not in p.parts
    }


def test_run_prints_the_diff_and_applies_only_with_apply(
    workspace: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    before = files(workspace)
    out = run_cli(workspace, tiny_model_dir, write_replies(tmp_path / "r.json", REPLIES))
    assert out.returncode == 0, out.stderr
    assert EXPECTED_DIFF in out.stdout
    assert out.stdout.startswith("Renamed foo to bar in a.py and b.py and added c.py.\n")
    assert "I should read a.py first." in out.stderr  # reasoning streams to stderr
    assert files(workspace) == before  # nothing written without --apply

    log = [
        json.loads(line)
        for line in (workspace / ".glm-lsp" / "thinking.jsonl").read_text().splitlines()
    ]
    assert [r["turn"] for r in log] == [1]
    assert log[0]["applied"] is False
    reasoning = [m["reasoning_content"] for m in log[0]["messages"] if m["role"] == "assistant"]
    assert reasoning == [r.split("</think>")[0] for r in REPLIES]
    assert (workspace / ".glm-lsp" / ".gitignore").read_text() == "*\n"
    assert (workspace / ".glm-lsp" / "thinking.jsonl").stat().st_mode & 0o777 == 0o600

    # Second run in a new process: the same edit, applied; the first run's KV cache is reused.
    out = run_cli(
        workspace, tiny_model_dir, write_replies(tmp_path / "r2.json", REPLIES), "--apply"
    )
    assert out.returncode == 0, out.stderr
    after = files(workspace)
    changed = {k for k in after if after.get(k) != before.get(k)}
    assert changed == {"pkg/a.py", "pkg/b.py", "pkg/c.py"}
    assert after["pkg/a.py"] == A_BEFORE.replace("def foo", "def bar")
    assert after["pkg/c.py"] == C_AFTER
    log = [
        json.loads(line)
        for line in (workspace / ".glm-lsp" / "thinking.jsonl").read_text().splitlines()
    ]
    assert [r["turn"] for r in log] == [1, 2] and log[1]["applied"] is True
    first_prompt_of_run_2 = log[1]["stats"]
    # Everything the first run processed came from the persisted cache, in a new process.
    assert first_prompt_of_run_2["reusedTokens"] > log[0]["stats"]["promptTokens"] // len(REPLIES)


class Recording:
    """Wraps the real backend to see the prompts it is given (the agent renders them)."""

    def __init__(self, inner) -> None:
        self.inner, self.prompts = inner, []
        self.name, self.model_name = inner.name, inner.model_name

    def complete(self, request, on_text, cancel):
        self.prompts.append(request.prompt)
        return self.inner.complete(request, on_text, cancel)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("preserve", [True, False])
def test_later_requests_replay_reasoning_byte_identical(
    workspace: Path, tiny_model_dir: Path, tmp_path: Path, preserve: bool
) -> None:
    quirky = "  Odd spacing\n\tand ünïcode — kept?\n"
    replies = [
        quirky.strip() + "</think>" + tool_call_text("read_file", {"path": "README.md"}),
        "ok</think>It is a test fixture.",
        "Answer.",
    ]
    settings = Settings(
        model=str(tiny_model_dir),
        scriptedReplies=str(write_replies(tmp_path / "q.json", replies)),
        preserveThinking=preserve,
    )
    never = lambda _c: (False, "no edits expected")  # noqa: E731
    session = Session(
        workspace, settings, Recording(make_backend(settings, settings.state_dir(workspace)))
    )
    session.run(
        AgentRequest(kind="refactor", instruction="look around"),
        lambda k, t: None,
        threading.Event(),
        never,
    )
    session.run(
        AgentRequest(kind="ask", instruction="what is this?"),
        lambda k, t: None,
        threading.Event(),
        never,
    )
    logged = session.log.records()[0]["messages"][1]["reasoning_content"]
    assert logged == quirky.strip()
    last_prompt = session.backend.prompts[-1]
    assert ("<think>" + quirky.strip() + "</think>" in last_prompt) is preserve
    assert "what is this?" in last_prompt and last_prompt.endswith("<|assistant|></think>")


def test_max_steps_stops_and_returns_edits_for_review(
    workspace: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    loop = [
        "edit</think>" + tool_call_text("write_file", {"path": f"n{i}.txt", "content": str(i)})
        for i in range(5)
    ]
    settings = Settings(
        model=str(tiny_model_dir),
        scriptedReplies=str(write_replies(tmp_path / "s.json", loop)),
        maxSteps=2,
    )
    session = Session(workspace, settings, make_backend(settings, settings.state_dir(workspace)))
    seen: list = []
    outcome = session.run(
        AgentRequest(kind="refactor", instruction="make files"),
        lambda k, t: None,
        threading.Event(),
        lambda c: (seen.append(c) or False, "review only"),
    )
    assert outcome.result.stopped == "stopped after maxSteps (2) tool calls"
    logged = session.log.records()[-1]
    assert logged["stopLimit"] == "maxSteps" and logged["stopped"] == outcome.result.stopped
    assert [c.path for c in seen[0].changes] == ["n0.txt", "n1.txt"]
    assert not (workspace / "n0.txt").exists()


def test_log_command_prints_the_conversation(
    workspace: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = run_cli(workspace, tiny_model_dir, write_replies(tmp_path / "r.json", REPLIES))
    assert out.returncode == 0, out.stderr
    shown = subprocess.run(
        [sys.executable, "-m", "glm_lsp.cli", "log", str(workspace)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0
    assert "turn 1 · glm.refactor · thinking enabled" in shown.stdout
    assert "thinking: I should read a.py first." in shown.stdout
    as_json = subprocess.run(
        [sys.executable, "-m", "glm_lsp.cli", "log", str(workspace), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(as_json.stdout.splitlines()[0])["v"] == 1


def test_cli_errors_are_one_clear_sentence(tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        return subprocess.run(
            [sys.executable, "-m", "glm_lsp.cli", *args],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )

    missing = cli("run", str(tmp_path), "x", "--model", str(tmp_path / "nope"))
    assert missing.returncode == 3
    assert "--model" in missing.stderr and "glm-lsp tiny-model" in missing.stderr
    assert "Traceback" not in missing.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    out = cli("run", str(tmp_path), "x", "--model", str(broken))
    assert out.returncode == 3 and "config.json" in out.stderr and "not valid JSON" in out.stderr
    (broken / "config.json").write_text('{"model_type": "llama"}')
    out = cli("run", str(tmp_path), "x", "--model", str(broken))
    assert out.returncode == 3 and "'llama' model" in out.stderr and "glm4_moe" in out.stderr
    out = cli("run", str(tmp_path), "x", "--thinking", "sometimes")
    assert out.returncode == 2 and "glm.thinking" in out.stderr and '"enabled"' in out.stderr
    out = cli("run", str(tmp_path / "nowhere"), "x")
    assert out.returncode == 2 and "is not a directory" in out.stderr
    for proc in (missing, out):
        assert len(proc.stderr.strip().splitlines()) == 1
