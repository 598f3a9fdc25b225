"""Shared fixtures: one tiny random-weight GLM-4 MoE per test session."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from glm_lsp.tiny_model import ensure_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model directory for mlx_lm.load; set GLM_LSP_TEST_CACHE to reuse it across runs.
    One attention head: attention is most of a long prompt's prefill on this CPU (reference BLAS),
    and nearly every test prefills the agent's ~2,600-token prompt (7 s with 4 heads, 3 s with 1)."""
    cache = os.environ.get("GLM_LSP_TEST_CACHE")
    root = Path(cache) if cache else tmp_path_factory.mktemp("tiny-model")
    return ensure_tiny_model(root, heads=1)


@pytest.fixture(scope="session")
def proportional_tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model `glm-lsp tiny-model` writes (GLM-4.7's proportions: 4 heads), for the tests whose
    figures were set on what that random model generates (how often its loops repeat a copy)."""
    cache = os.environ.get("GLM_LSP_TEST_CACHE")
    root = Path(cache) if cache else tmp_path_factory.mktemp("tiny-model-proportional")
    return ensure_tiny_model(root)


@pytest.fixture(scope="session", autouse=True)
def session_user_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The user's state ($XDG_STATE_HOME) for what module fixtures set up: never the real home.
    $XDG_RUNTIME_DIR is the session's own, with the session's host in it (one per xdist worker):
    the tests' `serve`, `acp` and `run` attach to it as a user's do, so the model is loaded once
    and no front-end imports MLX. Conversations stay apart: the host keys them by state folder,
    and every test has its own workspace. Tests about the in-process runtime say `no_host`."""
    home = tmp_path_factory.mktemp("xdg-state-session")
    runtime = tmp_path_factory.mktemp("xdg-run-session")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_STATE_HOME", str(home))
        mp.setenv("XDG_RUNTIME_DIR", str(runtime))
        mp.delenv("GLM_LSP_HOST", raising=False)
        # Started here, with the session's environment, not by a test's front-end with its own.
        subprocess.run(
            [sys.executable, "-m", "glm_lsp.cli", "host", "start"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        try:
            yield home
        finally:
            _kill_host()


def _kill_host() -> None:
    """Whatever host the current $XDG_RUNTIME_DIR registered goes: no host outlives its tests."""
    from glm_lsp.host import registry
    from glm_lsp.runtime.pids import alive

    reg = registry.read()
    if reg is not None and alive(reg.pid):
        os.kill(reg.pid, signal.SIGKILL)


@pytest.fixture(autouse=True)
def _in_process_when_asked(request: pytest.FixtureRequest, monkeypatch) -> None:
    """`@pytest.mark.no_host`: the test's front-ends run the model in their own process (what
    the test is about is the in-process runtime: its stderr, its KV files, kill -9 of it)."""
    if request.node.get_closest_marker("no_host") is not None:
        monkeypatch.setenv("GLM_LSP_HOST", "off")


@pytest.fixture(autouse=True)
def user_state(
    session_user_state: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch
) -> Path:
    """Each test's own $XDG_STATE_HOME (approvals, undo records, sessions: the user's state),
    starting from what module fixtures recorded, so no test writes the real home and tests
    share nothing; subprocesses inherit it."""
    home = tmp_path_factory.mktemp("xdg-state")
    shutil.copytree(session_user_state, home, symlinks=True, dirs_exist_ok=True)
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home / "glm-lsp"


@pytest.fixture
def host_env(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> Iterator[Path]:
    """A test that uses the host: its own $XDG_RUNTIME_DIR (so it never attaches to the user's
    host or another test's), front-ends attach (GLM_LSP_HOST unset), and whatever host started
    there is stopped at the end, so none outlives the test."""
    runtime = tmp_path_factory.mktemp("xdg-run", numbered=True)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("GLM_LSP_HOST", raising=False)
    yield runtime / "glm-lsp"
    _kill_host()


# The files that take longest, longest first: xdist hands whole files to the two workers in
# collection order, so these start at once and the short ones fill in around them (otherwise
# one worker could start the distributed tests last, alone). From `--durations` of a full run.
LONGEST_FIRST = (
    "test_distributed.py",
    "test_crash_safety.py",
    "test_acp.py",
    "test_finetune.py",
    "test_server_demo.py",
    "test_nvim.py",
    "test_emacs.py",
    "test_server_review.py",
    "test_host.py",
    "test_distributed_server.py",
    "test_runtime.py",
    "test_speculative.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file, and of the rest, is kept
