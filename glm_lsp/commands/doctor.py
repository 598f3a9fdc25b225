"""`glm-lsp doctor`: what a bug report needs: device, model, memory, state dir."""

from __future__ import annotations

import os
from pathlib import Path

from glm_lsp.config import Settings


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def doctor(settings: Settings, workspace: Path) -> int:
    import mlx.core as mx

    from glm_lsp.errors import EXIT_BACKEND, EXIT_OK
    from glm_lsp.runtime.base import BackendError

    ok = True
    print(f"MLX {mx.__version__} on {mx.default_device()}")
    memory = _memory_bytes()
    if memory:
        print(f"memory: {memory / 2**30:.1f} GiB")
    print(f"backend: {settings.backend}")
    if settings.backend == "mlx":
        from glm_lsp.runtime.model_loader import read_config, resolve_model_dir

        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # doctor never downloads
        try:
            model_dir = resolve_model_dir(settings.model)
            config = read_config(model_dir)
            weights = sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
            quant = config.get("quantization") or {}
            print(
                f"model: {settings.model} found at {model_dir} ({config.get('model_type')}, "
                f"{quant.get('bits', 16)}-bit, group size {quant.get('group_size', '-')})"
            )
            print(f"memory estimate: {weights / 2**30:.2f} GiB of weights + KV cache")
            if memory and weights > 0.8 * memory:
                print("warning: the weights take more than 80% of memory")
        except BackendError as exc:
            ok = False
            print(f"model: {exc}")
    else:
        print(
            f"server: {settings.baseUrl} (model {settings.model}); key from ${settings.apiKeyEnv}: "
            f"{'set' if os.environ.get(settings.apiKeyEnv) else 'not set'}"
        )
    print(f"state dir: {settings.state_dir(workspace.resolve())}")
    return EXIT_OK if ok else EXIT_BACKEND
