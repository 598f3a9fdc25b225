"""Shared fixtures: one tiny random-weight GLM-4 MoE per test session."""

from __future__ import annotations

import os
import shutil
import signal
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
    Front-ends run in-process (GLM_LSP_HOST=off) unless a test asks for a host (host_env), and
    never find the user's own host: $XDG_RUNTIME_DIR is the session's own."""
    home = tmp_path_factory.mktemp("xdg-state-session")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_STATE_HOME", str(home))
        mp.setenv("XDG_RUNTIME_DIR", str(tmp_path_factory.mktemp("xdg-run-session")))
        mp.setenv("GLM_LSP_HOST", "off")
        yield home


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
    from glm_lsp.host import registry
    from glm_lsp.runtime.pids import alive

    runtime = tmp_path_factory.mktemp("xdg-run", numbered=True)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("GLM_LSP_HOST", raising=False)
    yield runtime / "glm-lsp"
    reg = registry.read()
    if reg is not None and alive(reg.pid):
        os.kill(reg.pid, signal.SIGKILL)
