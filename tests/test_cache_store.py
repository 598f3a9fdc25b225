"""The KV cache file: private, atomic, and a failed save changes nothing (runtime/cache_store.py)."""

from __future__ import annotations

import stat
import subprocess
import sys
import threading
from pathlib import Path

import mlx.core as mx
import pytest
from mlx_lm.models.cache import KVCache, load_prompt_cache

from glm_lsp.runtime import cache_store
from glm_lsp.runtime.cache_store import save_cache


def a_cache(length: int) -> list[KVCache]:
    cache = KVCache()
    keys = mx.arange(length * 4, dtype=mx.float32).reshape(1, 1, length, 4)
    cache.update_and_fetch(keys, keys + 1)
    return [cache]


def test_the_file_is_private_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "state" / "kv-cache.safetensors"
    lock = threading.Lock()
    save_cache(path, a_cache(3), {"tokens": "[1, 2, 3]"}, lock)
    assert not lock.locked()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded, meta = load_prompt_cache(str(path), return_metadata=True)
    assert loaded[0].offset == 3 and meta["tokens"] == "[1, 2, 3]"
    assert list(path.parent.glob(cache_store.TEMP_GLOB)) == []


def test_a_failed_save_keeps_the_old_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "kv-cache.safetensors"
    save_cache(path, a_cache(2), {"tokens": "[1, 2]"})
    before = path.read_bytes()

    def torn(file: str, *_: object) -> None:
        Path(file).write_bytes(b"half a cache")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache_store, "save_prompt_cache", torn)
    with pytest.raises(OSError, match="No space left"):
        save_cache(path, a_cache(5), {"tokens": "[1, 2, 3, 4, 5]"})
    assert path.read_bytes() == before
    assert list(tmp_path.glob(cache_store.TEMP_GLOB)) == []


def test_only_the_temp_files_of_gone_processes_are_removed(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=30)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = tmp_path / f".{gone.pid}.tmp.safetensors"
        saving = tmp_path / f".{live.pid}.tmp.safetensors"  # another process's save under way
        other = tmp_path / ".notapid.tmp.safetensors"
        for p in (dead, saving, other):
            p.write_bytes(b"x")
        save_cache(tmp_path / "kv-cache.safetensors", a_cache(1), {})
        assert not dead.exists() and saving.exists() and other.exists()
    finally:
        live.kill()
        live.wait(timeout=30)
