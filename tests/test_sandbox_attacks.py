"""A repository's own scripts attack the sandbox (issue 25): they run through the real run_command
tool, as when the agent runs the project's tests, and try to reach outside, read the user's
secrets, keep running or exhaust the machine. Written to hold as root too."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import glm_lsp.agent.run_command as run_command
import glm_lsp.sandbox.limits as limits
from glm_lsp.cli import build_parser, settings_from
from glm_lsp.config import Settings
from glm_lsp.sandbox.limits import ProcessCap
from tests.test_run_command import Harness, _sleepers, harnesses, needs_bwrap


def _has_process_cap() -> bool:
    cap = ProcessCap.make()
    if cap is not None:
        cap.close()
    return cap is not None


# Root is exempt from RLIMIT_NPROC, so only a pids cgroup surely stops a fork bomb: the bomb
# runs only where glm-lsp can make one.
PROCESS_LIMIT_HOLDS = _has_process_cap()


@pytest.fixture
def harness(ws: Path, tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    yield from harnesses(ws, tmp_path)


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text("A = 1\n")
    (root / "pkg" / "b.py").write_text("B = 1\n")
    return root


@pytest.fixture
def outside() -> Iterator[Path]:
    """A directory standing in for $HOME: outside /tmp, which the sandbox's own /tmp would hide."""
    path = Path(tempfile.mkdtemp(prefix="glm-attack-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def state_of(path: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(path).as_posix(): (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


# -- item 2: the shadow follows no link a command put there ---------------------------------------


@needs_bwrap
@pytest.mark.parametrize("watched", [False, True], ids=["stat-all", "watched"])
def test_a_shadow_dir_a_command_turned_into_a_link_is_never_followed(
    ws: Path, harness, outside: Path, watched: bool
) -> None:
    (outside / "a.py").write_text("precious\n")
    (outside / "a.py").chmod(0o600)
    (outside / "b.py").write_text("keep me\n")
    before = state_of(outside)
    h = harness()
    if watched:  # as with a running watcher: only journalled and inotify-seen paths are checked
        h.index.settle = lambda _timeout: True
    link_it = f"rm -rf pkg && ln -s {outside} pkg && echo linked"
    assert "linked" in h.run(link_it)

    # The user edits a file under that dir; the model writes a new one: refresh and sync write.
    (ws / "pkg" / "a.py").write_text("A = 2\n")
    h.index.apply_change("modified", "pkg/a.py")
    h.overlay.write("pkg/new.py", "N = 1\n")
    result = h.run("cat pkg/a.py pkg/new.py; test -L pkg && echo still-a-link")
    assert state_of(outside) == before
    assert result.splitlines()[1:] == ["A = 2", "N = 1"]

    # The model deletes a file there; the user deletes another: sync and refresh remove.
    assert "linked" in h.run(link_it)
    h.overlay.delete("pkg/a.py")
    (ws / "pkg" / "b.py").unlink()
    h.index.apply_change("deleted", "pkg/b.py")
    assert h.run("ls pkg").splitlines()[1:] == ["new.py"]
    assert state_of(outside) == before


# -- item 4: root without capabilities; secrets stay out ------------------------------------------


@needs_bwrap
def test_root_in_the_sandbox_has_no_capabilities(harness) -> None:
    result = harness().run(
        "grep CapEff /proc/self/status; mount -o remount,rw / 2>/dev/null; echo mount=$?"
    )
    assert "CapEff:\t0000000000000000" in result
    assert "mount=0" not in result


@needs_bwrap
def test_secrets_stay_out_of_commands(harness, outside: Path, monkeypatch) -> None:
    home = outside / "home"
    planted = {
        ".ssh/id_ed25519": "ssh-private-key",
        ".aws/credentials": "aws-secret",
        ".netrc": "machine x password netrc-secret",
        ".config/gh/hosts.yml": "gh-token",
        ".docker/config.json": "docker-auth",
        ".local/state/glm-lsp/sessions.json": "glm-state",
        "private/notes.txt": "user-hidden",
    }
    for rel, text in planted.items():
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_text(text)
    runtime = outside / "run-user"
    runtime.mkdir()
    agent_dir = outside / "agent"
    agent_dir.mkdir()
    bus, agent = socket.socket(socket.AF_UNIX), socket.socket(socket.AF_UNIX)
    bus.bind(str(runtime / "bus"))
    agent.bind(str(agent_dir / "ssh-agent.sock"))
    for sock in (bus, agent):
        sock.listen(4)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("SSH_AUTH_SOCK", str(agent_dir / "ssh-agent.sock"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-aws-secret")
    monkeypatch.setenv("GITHUB_TOKEN", "env-gh-token")
    monkeypatch.setenv("DB_PASSWORD", "env-db-password")
    monkeypatch.setenv("UNLISTED_THING", "env-unlisted")
    monkeypatch.setenv("DATABASE_HOST", "db.example")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    connect = (
        f'{sys.executable} -c "import socket,sys; s=socket.socket(socket.AF_UNIX); '
        's.settimeout(2); s.connect(sys.argv[1])" '
    )
    script = "; ".join(
        [f"cat ~/{rel} 2>/dev/null" for rel in planted]
        + [
            f"{connect}{runtime / 'bus'} 2>/dev/null && echo reached-bus",
            f"{connect}{agent_dir / 'ssh-agent.sock'} 2>/dev/null && echo reached-agent",
            "env",
        ]
    )
    try:
        h = harness(
            allowNetwork=True,  # the host's sockets stay out even with the network on
            commandEnv=("DATABASE_HOST", "GITHUB_TOKEN"),
            sandboxHide=("~/private",),
        )
        tool = h.tool()  # one request: two commands
        result = tool.run(script, None, h.overlay)
        again = tool.run("true", None, h.overlay)
    finally:
        bus.close()
        agent.close()
    for leaked in [*planted.values(), "reached-bus", "reached-agent"]:
        assert leaked not in result
    for leaked in ("env-aws-secret", "env-gh-token", "env-db-password", "env-unlisted"):
        assert leaked not in result
    assert "DATABASE_HOST=db.example" in result and "LC_ALL=C.UTF-8" in result
    assert f"HOME={home}" in result
    assert result.splitlines()[1] == (
        "[commandEnv lists GITHUB_TOKEN, which commands never get: names that look like secrets "
        "(*KEY*, *TOKEN*, *SECRET*, *PASSWORD*, AWS_*, ...) never pass; give the command what it "
        "needs in a file of the workspace instead]"
    )
    assert "[commandEnv" not in again  # said once a request


@needs_bwrap
def test_a_workspace_at_home_still_hides_its_credentials(
    tmp_path: Path, outside: Path, monkeypatch
) -> None:
    (outside / ".ssh").mkdir()
    (outside / ".ssh" / "id_ed25519").write_text("ssh-private-key")
    (outside / "notes.txt").write_text("notes\n")
    monkeypatch.setenv("HOME", str(outside))
    h = Harness(outside, tmp_path, allowCommands=("*",))
    try:
        result = h.run("cat .ssh/id_ed25519 notes.txt")
    finally:
        h.close()
    assert "ssh-private-key" not in result and "notes" in result


# -- item 4: limits --------------------------------------------------------------------------------


@needs_bwrap
@pytest.mark.skipif(not PROCESS_LIMIT_HOLDS, reason="no pids cgroup can be made here")
def test_a_fork_bomb_stops_at_the_process_limit(harness, monkeypatch) -> None:
    monkeypatch.setattr(limits, "PROCESS_LIMIT", 64)
    start = time.monotonic()
    result = harness().run("b() { b | b & }; b; sleep 1; echo survived", timeout=20)
    assert time.monotonic() - start < 15
    assert "[limit: the command tried to run more than 64 processes at once" in result


@needs_bwrap
def test_private_tmp_and_shadow_are_bounded(ws: Path, harness, monkeypatch) -> None:
    monkeypatch.setattr(run_command, "TMP_BYTES", 1 << 20)
    monkeypatch.setattr(run_command, "SHADOW_BYTES", 1 << 20)
    h = harness()
    result = h.run("head -c 3000000 /dev/zero > /tmp/big; head -c 3000000 /dev/zero > big.bin")
    assert "the sandbox's private /tmp holds at most 1 MiB" in result
    assert "[limit: the command left 2 MiB in the shadow workspace, over 1 MiB" in result
    assert h.run("ls; cat pkg/a.py").splitlines()[1:] == ["pkg", "A = 1"]


# -- item 4: a project under /tmp still runs its own interpreter ------------------------------------


@needs_bwrap
def test_a_project_under_tmp_runs_its_venv(ws: Path, harness, tmp_path: Path, monkeypatch) -> None:
    """As `make test` in a clone under /tmp: commands call the venv glm-lsp itself runs from."""
    assert str(ws).startswith("/tmp/")
    venv = tmp_path / "clone" / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python3").write_text("#!/bin/sh\necho venv-python\n")
    (venv / "bin" / "python3").chmod(0o755)
    monkeypatch.setenv("VIRTUAL_ENV", str(venv))
    (ws / ".venv" / "bin").mkdir(parents=True)
    (ws / ".venv" / "bin" / "python3").symlink_to(os.path.realpath(sys.executable))
    result = harness().run('"$VIRTUAL_ENV/bin/python3"; .venv/bin/python3 -c "print(6 * 7)"')
    assert result.splitlines() == ["exit code 0", "venv-python", "42"]


# -- item 9: with sandbox "off", nothing a command started outlives it ------------------------------


def test_sandbox_off_leaves_no_process_behind(harness) -> None:
    if not Path("/proc/self/cmdline").exists():
        pytest.skip("needs /proc")
    tag = f"1000.{os.getpid() % 1000}9"
    h = harness(sandbox="off")
    assert h.run(f"sleep {tag} >/dev/null 2>&1 & echo started").startswith("exit code 0")
    deadline = time.monotonic() + 5
    while _sleepers(tag) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _sleepers(tag) == []
    if _has_process_cap():  # one that left the process group too
        h.run(f"setsid sleep {tag} >/dev/null 2>&1 & echo started")
        assert _sleepers(tag) == []


# -- settings --------------------------------------------------------------------------------------


def test_command_env_and_sandbox_hide_settings_and_flags() -> None:
    assert (Settings().commandEnv, Settings().sandboxHide) == ((), ())
    s = Settings().merged({"commandEnv": ["DATABASE_URL"], "sandboxHide": ["~/secrets"]})
    assert (s.commandEnv, s.sandboxHide) == (("DATABASE_URL",), ("~/secrets",))
    args = ["run", "ws", "x", "--command-env", "A", "--command-env", "B", "--sandbox-hide", "~/x"]
    s = settings_from(build_parser().parse_args(args))
    assert (s.commandEnv, s.sandboxHide) == (("A", "B"), ("~/x",))
