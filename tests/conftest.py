"""Shared fixtures: one tiny random-weight GLM-4 MoE per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from glm_lsp.tiny_model import ensure_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model directory for mlx_lm.load; set GLM_LSP_TEST_CACHE to reuse it across runs."""
    cache = os.environ.get("GLM_LSP_TEST_CACHE")
    root = Path(cache) if cache else tmp_path_factory.mktemp("tiny-model")
    return ensure_tiny_model(root)


@pytest.fixture(autouse=True)
def user_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own $XDG_STATE_HOME (approvals, undo records, sessions: the user's state), so
    no test writes the real home and tests share nothing; subprocesses inherit it."""
    home = tmp_path_factory.mktemp("xdg-state")
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home / "glm-lsp"
