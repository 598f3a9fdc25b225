"""Two glm-lsp processes on one workspace share one conversation: requests take turns across
processes (a waiting one says so and can be cancelled), each sees the ones before it, turns are
numbered once, and a holder killed with -9 leaves nothing locked."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from glm_lsp.agent.edits import ChangeSet, apply_to_disk
from glm_lsp.agent.prompts import AgentRequest
from glm_lsp.agent.session import Session
from glm_lsp.config import Settings
from glm_lsp.glm.parse import tool_call_text
from glm_lsp.memory.conversation_lock import WAITING, ConversationLock, WaitCancelled
from glm_lsp.memory.thinking_log import ThinkingLog, new_record
from glm_lsp.runtime.factory import make_backend
from glm_lsp.state_files import StateRefused, prepare_state_dir
from tests.lsp_wire import start_server

FIXTURE = Path(__file__).parent / "fixtures" / "rename"

STATS = re.compile(r"^turn (\d+): (\d+) prompt tokens \((\d+) reused", re.M)
SAFETY_S = 120  # only a safety net: every wait below ends on an event


def env() -> dict[str, str]:
    """Read per test: the user_state fixture gives each test its own XDG_STATE_HOME."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "GLM_LSP_HOST": "off"}


class Stderr:
    """A process's stderr read as it comes; `waiting` is set once it says it waits its turn
    (or when it ends without saying so)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc, self.lines = proc, []
        self.waiting = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if WAITING in line:
                self.waiting.set()
        self.waiting.set()

    def text(self) -> str:
        self.proc.wait(timeout=SAFETY_S)
        self.thread.join(timeout=SAFETY_S)
        return "".join(self.lines)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding a conversation's lock until killed."""
    code = (
        "import sys; from pathlib import Path\n"
        "from glm_lsp.memory.conversation_lock import ConversationLock\n"
        "with ConversationLock(Path(sys.argv[1])).hold():\n"
        "    print('held', flush=True); sys.stdin.read()\n"
    )
    folder = prepare_state_dir(tmp_path / "conversation")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    yield proc
    proc.kill()
    proc.wait(timeout=SAFETY_S)


def test_a_wait_is_shown_cancellable_and_ends_when_the_holder_is_killed(
    tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    lock = ConversationLock(tmp_path / "conversation")
    waiting, cancel = threading.Event(), threading.Event()
    outcome: list[object] = []

    def take() -> None:
        try:
            with lock.hold(cancel, waiting.set):
                outcome.append("held")
        except WaitCancelled as exc:
            outcome.append(exc)

    thread = threading.Thread(target=take)
    thread.start()
    assert waiting.wait(SAFETY_S)  # told before it blocks
    cancel.set()
    thread.join(SAFETY_S)
    assert not thread.is_alive() and isinstance(outcome[0], WaitCancelled)

    waiting.clear()
    cancel.clear()
    thread = threading.Thread(target=take)
    thread.start()
    assert waiting.wait(SAFETY_S)
    holder.kill()  # -9: no cleanup of its own; the kernel drops its flock
    thread.join(SAFETY_S)
    assert not thread.is_alive() and outcome[1] == "held"
    mode = os.stat(tmp_path / "conversation" / "conversation.lock").st_mode & 0o777
    assert mode == 0o600


def test_the_lock_file_is_never_followed_through_a_link(tmp_path: Path) -> None:
    folder = prepare_state_dir(tmp_path / "conversation")
    target = tmp_path / "elsewhere"
    target.write_text("mine\n")
    (folder / "conversation.lock").symlink_to(target)
    with pytest.raises(StateRefused, match="symbolic link"), ConversationLock(folder).hold():
        pass
    assert target.read_text() == "mine\n"


def start_run(tmp: Path, root: Path, model: Path, name: str) -> Stderr:
    """`glm-lsp run` on `root` asking as `name`; its scripted reply names it too."""
    script = tmp / f"{name}.json"
    script.write_text(json.dumps([f"Asked by {name}.</think>Answer from {name}."]))
    instruction = f"{name}: " + " ".join([name] * 30)  # prompts part at its first token
    argv = [
        sys.executable, "-m", "glm_lsp.cli", "run", str(root), instruction,
        "--model", str(model), "--scripted-replies", str(script),
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env()
    )
    return Stderr(proc)


def reported(err: str) -> tuple[int, int, int]:
    """A run's last line: (turn, prompt tokens, reused tokens)."""
    ((turn, prompt, reused),) = STATS.findall(err)
    return int(turn), int(prompt), int(reused)


def test_two_runs_at_once_take_turns_and_share_one_history(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "a.py").write_text("A = 1\n")
    state = prepare_state_dir(root / ".glm-lsp")  # ours (recorded in the user's state)
    # Held here until both runs wait on it, so they surely overlap; then they race for it.
    with ConversationLock(state).hold():
        runs = {name: start_run(tmp_path, root, tiny_model_dir, name) for name in ("alpha", "beta")}
        for run in runs.values():
            assert run.waiting.wait(SAFETY_S)
    errors = {name: run.text() for name, run in runs.items()}
    for name, run in runs.items():
        assert run.proc.returncode == 0, errors[name]
        assert WAITING in errors[name]  # the user saw why nothing happened

    logged = {r["turn"]: r for r in ThinkingLog(state).records()}
    assert sorted(logged) == [1, 2] and len(ThinkingLog(state).records()) == 2
    stats = {}  # turn -> (prompt tokens, reused tokens), as each run reported its turn
    for name, err in errors.items():
        turn, prompt, reused = reported(err)
        stats[turn] = (prompt, reused)
        assert f"Answer from {name}." in json.dumps(logged[turn]["messages"])  # the turn it logged
    assert sorted(stats) == [1, 2]
    # Turn 2's prompt starts with all of turn 1's (its KV cache, saved by the other process,
    # serves it): had it not seen turn 1, the prompts would part at the first instruction word.
    assert stats[2][1] >= stats[1][0], errors


def test_an_editors_request_waits_its_turn_visibly_cancellably_and_logs_the_turn_it_streams(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "a.py").write_text("A = 1\n")
    log = ThinkingLog(prepare_state_dir(root / ".glm-lsp"))
    client = start_server(tmp_path, tiny_model_dir, root, ["Answer from the editor."], env=env())

    def waits_shown() -> int:
        return sum(
            1
            for n in list(client.notifications)
            if n["method"] == "$/progress" and n["params"]["value"].get("message") == WAITING
        )

    def ask() -> int:
        params = {"command": "glm.ask", "arguments": [{"question": "What is A?"}]}
        return client.request_async("workspace/executeCommand", params)

    try:
        with log.lock.hold():  # here, as another process running a request
            first = ask()
            client.wait_for(lambda: waits_shown() == 1, timeout=SAFETY_S)
            client.command("glm.cancel", {})
            assert "cancelled" in client.wait(first)["error"]["message"]
            assert log.records() == []  # nothing was logged
            second = ask()
            client.wait_for(lambda: waits_shown() == 2, timeout=SAFETY_S)
            messages = [
                {"role": "user", "content": "Meanwhile, in a terminal?"},
                {"role": "assistant", "content": "Answer from the terminal."},
            ]
            log.append(
                new_record(
                    turn=1, command="glm.ask", thinking="disabled", messages=messages, stats={}
                )
            )
        answer = client.wait(second, timeout=SAFETY_S)["result"]
        streamed = [n["params"] for n in list(client.notifications) if n["method"] == "glm/stream"]
    finally:
        client.close()
    assert answer["turn"] == 2 and answer["text"] == "Answer from the editor."
    assert [r["turn"] for r in log.records()] == [1, 2]
    assert streamed and {n["turn"] for n in streamed} == {2}  # numbered once it held the log


def test_another_processs_edit_is_in_the_history_not_news(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Two sessions on one workspace, as two editors' servers hold them: what one's request
    edited, the other's next request sees in the history, so it is not told of it again."""
    root = tmp_path / "ws"
    shutil.copytree(FIXTURE, root)

    def session(name: str, replies: list[str]) -> Session:
        script = tmp_path / f"{name}.json"
        script.write_text(json.dumps(replies))
        settings = Settings(model=str(tiny_model_dir), scriptedReplies=str(script))
        return Session(root, settings, make_backend(settings, settings.state_dir(root)))

    read = tool_call_text("read_file", {"path": "pkg/a.py"})
    edit = tool_call_text(
        "edit_file", {"path": "pkg/a.py", "old_text": "def foo", "new_text": "def bar"}
    )
    editor = session(
        "editor", ["Read it.</think>" + read, "Rename.</think>" + edit, "</think>Done."]
    )
    other = session("other", ["Hello.", "Noted."])

    def request(s: Session, kind: str, text: str) -> int:
        def land(change_set: ChangeSet) -> tuple[bool, str | None]:
            apply_to_disk(root, change_set)  # as the editor would
            return True, None

        outcome = s.run(
            AgentRequest(kind=kind, instruction=text),  # type: ignore[arg-type]
            lambda k, t: None,
            threading.Event(),
            land,
        )
        return outcome.turn

    assert request(other, "ask", "hi") == 1
    assert request(editor, "refactor", "rename foo") == 2
    other.index.apply_change("modified", "pkg/a.py")  # what its watcher reports of that edit
    (root / "user.py").write_text("Y = 2\n")
    other.index.apply_change("created", "user.py")
    assert request(other, "ask", "Anything new?") == 3
    user = other.log.records()[2]["messages"][0]["content"]
    assert "- created user.py" in user
    assert "pkg/a.py" not in user  # neither "modified" nor "re-read before editing"
