"""Builds the backend a workspace's settings ask for; loaded MLX models are shared."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from glm_lsp.config import Settings
from glm_lsp.runtime.base import Backend

if TYPE_CHECKING:
    from glm_lsp.runtime.scripted import ScriptedReplies

_models: dict[str, object] = {}
_models_lock = threading.Lock()


_pinned: str | None = None  # under --distributed: the one model every rank loaded at launch


def pin_model(name: str, model: object) -> None:
    """The model loaded at launch (a distributed shard) is the only one this process serves."""
    global _pinned
    with _models_lock:
        _models[name], _pinned = model, name


def mlx_model(name: str):  # -> MLXModel, imported lazily: MLX start-up is not free
    from glm_lsp.runtime.mlx import MLXModel

    if _pinned is not None and name != _pinned:
        from glm_lsp.runtime.base import BackendError

        raise BackendError(
            f"this server runs {_pinned} spread over its ranks (--distributed); it cannot load "
            f"{name}: relaunch every rank with --model {name}"
        )
    with _models_lock:
        if name not in _models:
            _models[name] = MLXModel(name)
        return _models[name]


def uses_host(settings: Settings) -> bool:
    """Whether MLX conversations run in the per-user host: setting `host` (auto by default),
    `GLM_LSP_HOST=off` in the environment, never in a distributed rank (it is the model)."""
    return (
        settings.backend == "mlx"
        and settings.host == "auto"
        and os.environ.get("GLM_LSP_HOST", "auto") != "off"
        and _pinned is None
    )


def make_backend(
    settings: Settings,
    state_dir: Path,
    scripted: ScriptedReplies | None = None,
    client: str = "lsp",
) -> Backend:
    """`scripted`: a ScriptedReplies shared by several conversations (ACP sessions of one
    process read one script in order); by default each backend loads its own. `client`: which
    front-end asks (lsp, acp, run), for the host's status."""
    if scripted is None and settings.scriptedReplies:
        from glm_lsp.runtime.scripted import ScriptedReplies

        scripted = ScriptedReplies.load(settings.scriptedReplies)
    if settings.backend == "openai":
        from glm_lsp.runtime.openai import OpenAIBackend

        return OpenAIBackend(settings, scripted=scripted)
    if uses_host(settings):
        from glm_lsp.host.client import HostBackend

        return HostBackend(settings, state_dir, client=client, scripted=scripted)
    return mlx_model(settings.model).conversation(
        kv_bits=settings.kvBits,
        state_dir=state_dir,
        persist=settings.persistKvCache,
        scripted=scripted,
        speculative=settings.speculativeDecoding,
        draft_tokens=settings.draftTokens,
    )


def retune(backend: Backend, settings: Settings) -> None:
    """Apply the settings a live backend takes in place, so changing them keeps its KV cache:
    speculative decoding is read at the start of each completion."""
    if hasattr(backend, "speculative") and hasattr(backend, "draft_tokens"):
        backend.speculative = settings.speculativeDecoding
        backend.draft_tokens = settings.draftTokens
