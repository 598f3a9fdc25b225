"""Finding and loading a GLM model with mlx-lm, with one clear error for each way it can fail."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from glm_lsp.runtime.base import BackendError

GLM_MODEL_TYPES = ("glm4_moe", "glm4_moe_lite", "glm4", "glm", "glm_moe_dsa")
_HINT = (
    "pass --model with a local MLX model directory, "
    "or make a test model with `glm-lsp tiny-model DIR`"
)


def _looks_like_hub_id(model: str) -> bool:
    return model.count("/") == 1 and not model.startswith((".", "/", "~"))


def resolve_model_dir(model: str) -> Path:
    """A local directory holding config.json: the path itself, or a Hugging Face id already in the
    local cache, or (when online is allowed) downloaded."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists() or not _looks_like_hub_id(model):
        raise BackendError(f"model '{model}' was not found: {_HINT}")
    try:
        from huggingface_hub import snapshot_download

        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        return Path(snapshot_download(model, local_files_only=offline))
    except Exception as exc:  # offline, unknown repo, no network: all mean "not available here"
        raise BackendError(
            f"model '{model}' is not available locally and could not be downloaded "
            f"({type(exc).__name__}): {_HINT}"
        ) from None


def read_config(model_dir: Path) -> dict[str, Any]:
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise BackendError(f"{model_dir} has no config.json, so it is not an MLX model: {_HINT}")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BackendError(
            f"{config_path} is not valid JSON ({exc}); re-convert the model"
        ) from None
    if not isinstance(config, dict):
        raise BackendError(f"{config_path} does not hold a JSON object; re-convert the model")
    model_type = config.get("model_type")
    if model_type not in GLM_MODEL_TYPES:
        raise BackendError(
            f"{model_dir} is a '{model_type}' model, but glm-lsp needs a GLM-4.x model "
            f"(model_type one of {', '.join(GLM_MODEL_TYPES)})"
        )
    return config


def load_model(model: str, progress: Callable[[int], None] | None = None) -> tuple[Any, Any, Path]:
    """(model, tokenizer wrapper, directory) via mlx_lm.load, after checking the directory.
    `progress` gets the percentage of weight bytes read so far (a 400 GB load takes minutes)."""
    model_dir = resolve_model_dir(model)
    read_config(model_dir)
    from mlx_lm import load

    try:
        loaded_model, tokenizer = load(str(model_dir), lazy=progress is not None)
        if progress is not None:
            _evaluate_weights(loaded_model, progress)
    except Exception as exc:
        raise BackendError(f"could not load the model in {model_dir}: {exc}") from None
    return loaded_model, tokenizer, model_dir


def _evaluate_weights(model: Any, progress: Callable[[int], None]) -> None:
    """What mlx_lm.load(lazy=False) does in one mx.eval, in slices of about 1% of the bytes, so
    the percentage is the share actually read."""
    import mlx.core as mx
    from mlx.utils import tree_flatten

    arrays = [a for _, a in tree_flatten(model.parameters())]
    total = sum(a.nbytes for a in arrays) or 1
    step, done, batch, batch_bytes, last = total / 100, 0, [], 0, -1
    for array in arrays:
        batch.append(array)
        batch_bytes += array.nbytes
        if batch_bytes >= step or array is arrays[-1]:
            mx.eval(batch)
            done += batch_bytes
            batch, batch_bytes = [], 0
            if (percent := min(100, done * 100 // total)) != last:
                progress(percent)
                last = percent
