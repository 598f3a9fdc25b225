"""run_command's parts with real processes: shadow workspace, sandbox, permissions, limits."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from glm_lsp.agent.edits import Overlay
from glm_lsp.agent.files import Workspace
from glm_lsp.agent.run_command import CommandTool, Streamed
from glm_lsp.cli import build_parser, settings_from
from glm_lsp.config import Settings, SettingsError
from glm_lsp.errors import UsageError
from glm_lsp.runtime.base import Cancelled
from glm_lsp.sandbox.permissions import Permissions
from glm_lsp.sandbox.process import HEAD_CHARS, TAIL_CHARS
from glm_lsp.sandbox.shadow import Shadow
from glm_lsp.state_files import workspace_state
from glm_lsp.workspace import WorkspaceIndex

HAS_BWRAP = sys.platform.startswith("linux") and shutil.which("bwrap") is not None
needs_bwrap = pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap is not installed")


def tree(root: Path) -> dict[str, bytes]:
    """Every file and directory under root (directories as b'<dir>')."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = b"<dir>" if p.is_dir() and not p.is_symlink() else p.read_bytes()
    return out


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text("A = 1\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    (root / ".gitignore").write_text(".venv/\nbuild/\n")
    (root / "build").mkdir()
    (root / "build" / "big.bin").write_bytes(b"x" * 1000)
    (root / ".venv" / "bin").mkdir(parents=True)
    (root / ".venv" / "bin" / "tool").write_text("#!/bin/sh\necho from-venv\n")
    (root / ".venv" / "bin" / "tool").chmod(0o755)
    return root


def index_of(root: Path) -> WorkspaceIndex:
    index = WorkspaceIndex(root)
    index.scan()
    return index


class Harness:
    """A CommandTool over one workspace, recording what it streams."""

    def __init__(self, root: Path, tmp: Path, **settings: object) -> None:
        self.root, self.index = root, index_of(root)
        self.settings = Settings(**settings)  # type: ignore[arg-type]
        self.state = tmp / "state"
        self.overlay = Overlay(Workspace(root, self.state))
        self.shadow_made: Shadow | None = None
        self.events: list[tuple[str, str]] = []
        self.cancel = threading.Event()
        self.asked: list[str] = []
        self.answer: str | None = None

    def shadow(self) -> Shadow:
        if self.shadow_made is None:
            self.shadow_made = Shadow(self.root, self.index)
        return self.shadow_made

    def ask(self, command: str, _word: str) -> str | None:
        self.asked.append(command)
        return self.answer

    def tool(self, ask: bool = False) -> CommandTool:
        return CommandTool(
            self.root,
            self.settings,
            self.state,
            self.shadow,
            lambda k, t: self.events.append((k, t)),
            self.cancel,
            self.ask if ask else None,
        )

    def run(self, command: str, timeout: int | None = None, ask: bool = False) -> str:
        return self.tool(ask).run(command, timeout, self.overlay)

    def close(self) -> None:
        if self.shadow_made is not None:
            self.shadow_made.close()


def harnesses(ws: Path, tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    """A maker of harnesses on `ws` that may run anything; each is closed after the test."""
    made: list[Harness] = []

    def make(**settings: object) -> Harness:
        h = Harness(ws, tmp_path, allowCommands=("*",), **settings)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


@pytest.fixture
def harness(ws: Path, tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    yield from harnesses(ws, tmp_path)


# -- shadow ----------------------------------------------------------------------------------------


def test_shadow_copies_what_is_not_ignored_and_syncs_pending_edits(ws: Path) -> None:
    before = tree(ws)
    shadow = Shadow(ws, index_of(ws))
    try:
        assert shadow.refresh() == 3  # .gitignore, pkg/a.py, run.sh: not build/ nor .venv
        copied = sorted(p.relative_to(shadow.dir).as_posix() for p in shadow.dir.rglob("*"))
        assert copied == [".gitignore", "pkg", "pkg/a.py", "run.sh"]
        assert os.access(shadow.dir / "run.sh", os.X_OK)  # modes come along
        assert shadow.exposed == (".venv",)
        assert (shadow.dir / "pkg" / "a.py").stat().st_ino != (ws / "pkg" / "a.py").stat().st_ino

        overlay = Overlay(Workspace(ws, ws / ".glm-lsp"))
        overlay.write("pkg/a.py", "A = 2\n")
        overlay.write("pkg/new.py", "N = 1\n")
        overlay.delete("run.sh")
        assert shadow.sync(overlay) == 3
        assert (shadow.dir / "pkg" / "a.py").read_text() == "A = 2\n"
        assert (shadow.dir / "pkg" / "new.py").read_text() == "N = 1\n"
        assert not (shadow.dir / "run.sh").exists()
        assert shadow.sync(overlay) == 0  # nothing changed: nothing written

        # A command rewrote a pending file in the shadow: the edit wins again.
        (shadow.dir / "pkg" / "a.py").write_text("clobbered\n")
        assert shadow.sync(overlay) == 1
        assert (shadow.dir / "pkg" / "a.py").read_text() == "A = 2\n"

        # A new request (empty overlay) sees the workspace's own files again.
        assert shadow.sync(Overlay(Workspace(ws, ws / ".glm-lsp"))) == 3
        assert (shadow.dir / "pkg" / "a.py").read_text() == "A = 1\n"
        assert not (shadow.dir / "pkg" / "new.py").exists()
        assert (shadow.dir / "run.sh").exists()

        # The user edits a file: refresh copies that one only.
        (ws / "pkg" / "a.py").write_text("A = 10\n")
        assert shadow.refresh() == 1
        assert (shadow.dir / "pkg" / "a.py").read_text() == "A = 10\n"
        (ws / "pkg" / "a.py").write_text("A = 1\n")

        shadow.show_exposed("link")
        assert (shadow.dir / ".venv").resolve() == (ws / ".venv").resolve()
        shadow.show_exposed("mount")
        assert (shadow.dir / ".venv").is_dir() and not (shadow.dir / ".venv").is_symlink()
    finally:
        shadow.close()
    assert not shadow.dir.exists()
    assert tree(ws) == before


def test_shadow_shows_unsaved_buffers_and_restores_disk(ws: Path) -> None:
    """Commands see what the agent reads: an open buffer that differs from disk."""
    before = tree(ws)
    bufs: dict[str, str] = {}
    shadow = Shadow(ws, index_of(ws), buffers=lambda: dict(bufs))
    a = shadow.dir / "pkg" / "a.py"
    try:
        assert shadow.refresh() == 3
        bufs["pkg/a.py"] = "A = 1\n"  # open, same as disk: the disk copy stays
        assert shadow.refresh() == 0
        bufs["pkg/a.py"] = "A = 5\r\n"  # native form: the buffer's own line endings
        assert shadow.refresh() == 1
        assert a.read_bytes() == b"A = 5\r\n"
        assert shadow.refresh() == 0
        bufs["pkg/a.py"] = "A = 6\n"
        assert shadow.refresh() == 1
        assert a.read_text() == "A = 6\n"
        a.write_text("clobbered\n")  # a command rewrote it: the buffer wins again
        assert shadow.refresh() == 1
        assert a.read_text() == "A = 6\n"

        # A pending edit wins over the buffer; once it is no longer pending, the buffer is back.
        overlay = Overlay(
            Workspace(ws, ws / ".glm-lsp", lambda rel: (bufs[rel], 1) if rel in bufs else None)
        )
        overlay.write("pkg/a.py", "A = 7\n")
        assert shadow.sync(overlay) == 1
        assert shadow.refresh() == 0
        assert a.read_text() == "A = 7\n"
        shadow.sync(Overlay(Workspace(ws, ws / ".glm-lsp")))
        assert a.read_text() == "A = 6\n"

        bufs["pkg/a.py"] = "A = 1\n"  # saved (or undone) to match the disk again
        assert shadow.refresh() == 1
        assert a.read_text() == "A = 1\n"
        bufs["pkg/a.py"] = "A = 9\n"
        assert shadow.refresh() == 1
        del bufs["pkg/a.py"]  # closed without saving
        assert shadow.refresh() == 1
        assert a.read_text() == "A = 1\n"

        bufs["build/x.txt"] = "ignored\n"  # an ignored file open in the editor stays out
        assert shadow.refresh() == 0
        assert not (shadow.dir / "build").exists()
    finally:
        shadow.close()
    assert tree(ws) == before


def test_refresh_trusts_the_watched_index_journal_and_sees_command_writes(ws: Path) -> None:
    index = index_of(ws)
    index.settle = lambda _timeout: True  # as a running watcher does: the journal is complete
    shadow = Shadow(ws, index)
    a = shadow.dir / "pkg" / "a.py"
    try:
        assert shadow.refresh() == 3
        # Only journalled paths are looked at: a change the index has not heard of is not seen...
        (ws / "pkg" / "a.py").write_text("A = 2\n")
        assert shadow.refresh() == 0
        assert a.read_text() == "A = 1\n"
        # ...and one it has is copied.
        index.apply_change("modified", "pkg/a.py")
        assert shadow.refresh() == 1
        assert a.read_text() == "A = 2\n"

        (ws / "pkg" / "b.py").write_text("B = 1\n")
        index.apply_change("created", "pkg/b.py")
        (ws / "run.sh").unlink()
        index.apply_change("deleted", "run.sh")
        assert shadow.refresh() == 1
        assert (shadow.dir / "pkg" / "b.py").read_text() == "B = 1\n"
        assert not (shadow.dir / "run.sh").exists()

        # New ignore rules change which files are indexed without journalling them.
        (ws / ".gitignore").write_text(".venv/\n")
        index.apply_change("modified", ".gitignore")
        assert shadow.refresh() == 2  # .gitignore itself and the now indexed build/big.bin
        assert (shadow.dir / "build" / "big.bin").read_bytes() == b"x" * 1000

        # What a command wrote in the shadow (a formatter, a snapshot update) is undone.
        a.write_text("formatted\n")
        (shadow.dir / "pkg" / "b.py").unlink()
        (shadow.dir / "build").rename(shadow.dir / "moved")
        assert shadow.refresh() == 3
        assert a.read_text() == "A = 2\n"
        assert (shadow.dir / "pkg" / "b.py").read_text() == "B = 1\n"
        assert (shadow.dir / "build" / "big.bin").read_bytes() == b"x" * 1000
        assert shadow.refresh() == 0

        # A symlinked file changes with its target, which is what the journal names.
        (ws / "alias.py").symlink_to("pkg/b.py")
        index.apply_change("created", "alias.py")
        assert shadow.refresh() == 1
        assert shadow.refresh() == 0
        (ws / "pkg" / "b.py").write_text("B = 2\n")
        index.apply_change("modified", "pkg/b.py")
        assert shadow.refresh() == 2
        assert (shadow.dir / "alias.py").read_text() == "B = 2\n"

        # A watcher that has not caught up, or none at all: every file is checked.
        (ws / "pkg" / "a.py").write_text("A = 3\n")
        index.settle = lambda _timeout: False
        assert shadow.refresh() == 1
        (ws / "pkg" / "a.py").write_text("A = 4\n")
        index.settle = None
        assert shadow.refresh() == 1
        assert a.read_text() == "A = 4\n"
    finally:
        shadow.close()


# -- running ---------------------------------------------------------------------------------------


@needs_bwrap
def test_sandboxed_command_sees_pending_edits_and_leaves_the_workspace_alone(
    ws: Path, harness
) -> None:
    h = harness()
    before = tree(ws)
    h.overlay.write("pkg/a.py", "A = 2\n")
    result = h.run(
        "cat pkg/a.py; echo err >&2; .venv/bin/tool; touch made.txt; mkdir -p __pycache__; "
        "pwd; exit 3"
    )
    assert isinstance(result, Streamed)
    lines = result.splitlines()
    assert lines[0] == "exit code 3"
    assert lines[1:5] == ["A = 2", "err", "from-venv", str(ws.resolve())]
    streamed = "".join(t for k, t in h.events if k == "tool_output")
    assert streamed == "A = 2\nerr\nfrom-venv\n" + str(ws.resolve()) + "\n"
    assert result.rest == "\nexit code 3"
    assert ("progress", "running cat…") in h.events
    assert tree(ws) == before
    assert (h.shadow_made.dir / "made.txt").exists()


@needs_bwrap
def test_watched_shadow_undoes_what_a_sandboxed_command_wrote(ws: Path, harness) -> None:
    h = harness()
    h.index.settle = lambda _timeout: True
    assert h.run("echo changed > pkg/a.py; rm run.sh").splitlines()[0] == "exit code 0"
    assert h.run("cat pkg/a.py run.sh").splitlines()[1:] == ["A = 1", "#!/bin/sh", "echo hi"]


@needs_bwrap
def test_sandbox_cannot_write_outside_or_reach_the_network(
    ws: Path, harness, tmp_path: Path
) -> None:
    h = harness()
    home = Path.home()
    outside_tmp = Path("/tmp") / f"glm-sandbox-probe-{os.getpid()}"
    in_home = home / f".glm-sandbox-probe-{os.getpid()}"
    parent = ws.parent / "escaped.txt"
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        script = (
            f"echo x > {outside_tmp}; echo tmp=$?; "
            f"echo x > {in_home}; echo home=$?; "
            f"echo x > ../escaped.txt; echo parent=$?; "
            f"echo x > {parent}; echo parentabs=$?; "
            f"{sys.executable} -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 3)\""
            " 2>/dev/null; echo net=$?"
        )
        result = h.run(script)
        assert result.splitlines()[0] == "exit code 0"
        assert "home=0" not in result  # read-only
        assert "net=0" not in result  # refused: the sandbox has its own loopback
        for path in (outside_tmp, in_home, parent):
            assert not path.exists(), path
        # allowNetwork opens it
        h2 = harness(allowNetwork=True)
        probe = f"{sys.executable} -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 3)\""
        assert h2.run(probe).splitlines()[0] == "exit code 0"
    finally:
        listener.close()
        for path in (outside_tmp, in_home, parent):
            path.unlink(missing_ok=True)


def test_sandbox_off_runs_in_the_shadow(ws: Path, harness) -> None:
    h = harness(sandbox="off")
    before = tree(ws)
    h.overlay.write("pkg/a.py", "A = 5\n")
    result = h.run("cat pkg/a.py && .venv/bin/tool && touch made.txt && pwd")
    assert result.splitlines()[:4] == ["exit code 0", "A = 5", "from-venv", str(h.shadow_made.dir)]
    assert tree(ws) == before


def test_no_sandbox_available_runs_nothing(ws: Path, harness, monkeypatch) -> None:
    h = harness()
    monkeypatch.setenv("PATH", "/nonexistent")  # no bwrap to find
    if sys.platform == "darwin":
        pytest.skip("sandbox-exec is found by absolute path on macOS")
    result = h.run("touch ran.txt")
    assert result.startswith("Error: not run: no sandbox is available (bwrap not found)")
    assert "--sandbox off" in result
    assert not (h.shadow_made.dir / "ran.txt").exists()


@pytest.mark.parametrize("sandbox", ["required", "off"])
def test_timeout_kills_and_says_so(ws: Path, harness, sandbox: str) -> None:
    if sandbox == "required" and not HAS_BWRAP:
        pytest.skip("bubblewrap is not installed")
    h = harness(sandbox=sandbox)
    start = time.monotonic()
    result = h.run("echo started; sleep 60", timeout=1)
    assert time.monotonic() - start < 10
    assert result.splitlines()[:3] == [
        "exit code -9",
        "[killed: still running after the 1 s timeout]",
        "started",
    ]


def _sleepers(tag: str) -> list[int]:
    """Processes that are exactly `sleep TAG` (not the shell or bwrap naming it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", tag.encode()]:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("sandbox", ["required", "off"])
def test_cancel_kills_the_whole_tree(ws: Path, harness, sandbox: str) -> None:
    if sandbox == "required" and not HAS_BWRAP:
        pytest.skip("bubblewrap is not installed")
    if not Path("/proc/self/cmdline").exists():
        pytest.skip("needs /proc")
    h = harness(sandbox=sandbox)
    tag = f"60.{os.getpid() % 1000}{len(sandbox)}"
    outcome: list[BaseException] = []

    def go() -> None:
        try:
            h.run(f"sleep {tag} & sleep {tag}; wait")
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=go)
    worker.start()
    deadline = time.monotonic() + 20
    while len(_sleepers(tag)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_sleepers(tag)) == 2
    cancelled_at = time.monotonic()
    h.cancel.set()
    worker.join(10)
    assert not worker.is_alive()
    assert isinstance(outcome[0], Cancelled)
    while _sleepers(tag) and time.monotonic() - cancelled_at < 5:
        time.sleep(0.02)
    assert _sleepers(tag) == []
    assert time.monotonic() - cancelled_at < 5  # the bound is generous; the design aims at 0.5 s


def test_output_is_bounded_head_and_tail(ws: Path, harness) -> None:
    h = harness(sandbox="off")
    result = h.run(f"{sys.executable} -c \"print('first'); print('x' * 3_000_000); print('last')\"")
    assert result.splitlines()[:2] == ["exit code 0", "first"]
    assert result.rstrip().endswith("last")
    assert "characters of output cut here" in result
    assert len(result) < HEAD_CHARS + TAIL_CHARS + 200


# -- permission ------------------------------------------------------------------------------------


def test_not_allowed_is_refused_without_running(ws: Path, tmp_path: Path) -> None:
    h = Harness(ws, tmp_path, sandbox="off", allowCommands=("pytest *",))
    result = h.run("touch ran.txt")
    assert result == (
        "Error: not run: this command is not allowed and there is no one to ask. It runs when it "
        'matches the allowCommands setting (e.g. glm.allowCommands: ["touch *"], flag '
        '--allow-command "touch *")'
    )
    assert h.shadow_made is None  # nothing was even prepared

    h.answer = "deny"
    assert h.run("touch ran.txt", ask=True).startswith("Error: not run: the user denied")
    h.answer = "once"
    assert h.run("touch ran.txt", ask=True).startswith("exit code 0")
    remembered = workspace_state(ws) / "permissions.json"  # the user's, not the workspace's
    assert not remembered.exists()
    h.answer = "always"
    assert h.run("touch again.txt", ask=True).startswith("exit code 0")
    saved = json.loads(remembered.read_text())
    assert saved == {"v": 1, "always": ["touch"]}
    h.answer = None
    assert h.run("touch third.txt", ask=True).startswith("exit code 0")
    assert h.asked == ["touch ran.txt", "touch ran.txt", "touch again.txt"]
    # "always touch" never covers a line that chains another command
    assert h.run("touch x; rm -rf pkg", ask=True).startswith("Error: not run")
    h.close()


def test_allow_commands_globs_the_whole_line(tmp_path: Path) -> None:
    p = Permissions(tmp_path, ["pytest *", "make test"])
    assert p.allowed("pytest -q tests/")
    assert p.allowed("make test")
    assert not p.allowed("make install")
    assert not p.allowed("pytest")


# -- settings --------------------------------------------------------------------------------------


def test_command_settings_validate_and_flags() -> None:
    s = Settings().merged(
        {
            "allowCommands": ["pytest *", "npm test"],
            "verifyCommand": "pytest -q",
            "verifyRounds": 0,
            "commandTimeout": 30,
            "sandbox": "off",
            "allowNetwork": True,
        }
    )
    assert s.allowCommands == ("pytest *", "npm test") and s.verifyRounds == 0
    assert Settings().sandbox == "required" and Settings().commandTimeout == 300
    for key, value, accepted in [
        ("allowCommands", "pytest *", "a list of glob patterns"),
        ("allowCommands", [""], "a list of glob patterns"),
        ("verifyCommand", "", "a command line or null"),
        ("verifyRounds", -1, "a whole number >= 0"),
        ("commandTimeout", 0, "a whole number >= 1"),
        ("sandbox", "none", 'accepted values: "required", "off"'),
        ("allowNetwork", "yes", "true, false"),
    ]:
        with pytest.raises(SettingsError) as err:
            Settings().merged({key: value})
        assert err.value.key == key and accepted in str(err.value)

    args = build_parser().parse_args(
        [
            "run",
            "ws",
            "x",
            "--allow-command",
            "pytest *",
            "--allow-command",
            "ruff check .",
            "--verify-command",
            "pytest -q",
            "--verify-rounds",
            "1",
            "--command-timeout",
            "9",
            "--sandbox",
            "off",
            "--allow-network",
        ]
    )
    s = settings_from(args)
    assert s.allowCommands == ("pytest *", "ruff check .")
    assert (s.verifyCommand, s.verifyRounds, s.commandTimeout) == ("pytest -q", 1, 9)
    assert (s.sandbox, s.allowNetwork) == ("off", True)
    with pytest.raises(UsageError, match=r"glm\.sandbox"):
        settings_from(build_parser().parse_args(["run", "ws", "x", "--sandbox", "maybe"]))
