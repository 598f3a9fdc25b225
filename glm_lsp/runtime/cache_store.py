"""A KV cache on disk, written so that a crash never leaves a torn or readable-by-others file.

One writer for rank 0's cache (runtime/mlx.py) and a follower rank's (runtime/follower.py):
mlx-lm's `save_prompt_cache` writes in place, so it goes to a private temp file that is fsynced
and renamed over the old one. Neither the file nor its folder may be a link or another user's
(state_files refuses them): mlx-lm opens paths, so they are checked first.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from mlx_lm.models.cache import load_prompt_cache, save_prompt_cache

from glm_lsp import state_files
from glm_lsp.runtime.pids import alive

TEMP_GLOB = ".*.tmp.safetensors"  # the pid is the name's second part


def save_cache(
    path: Path,
    cache: list[Any],
    meta: dict[str, str],
    lock: AbstractContextManager[Any] | None = None,
) -> None:
    """`cache` and `meta` (the conversation's tokens: private) at `path`, atomically; `lock` is
    held while the arrays are read (the model's, so no generation changes them meanwhile)."""
    state_files.private_dir(path.parent)
    state_files.check_path(path, want_dir=False)  # a link there is refused, not replaced
    remove_stale_temp_files(path.parent)
    tmp = path.with_name(f".{os.getpid()}.tmp.safetensors")
    tmp.unlink(missing_ok=True)  # one a killed process of the same pid left
    # Private from the first byte: save_prompt_cache keeps the mode of a file that exists.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    os.close(os.open(tmp, flags, 0o600))
    try:
        with lock or nullcontext():
            save_prompt_cache(str(tmp), cache, meta)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_cache(path: Path) -> tuple[list[Any], dict[str, str]]:
    """The cache and metadata saved at `path`; StateRefused when it is a link or not ours."""
    state_files.check_path(path.parent, want_dir=True)
    if not state_files.check_path(path, want_dir=False):
        raise FileNotFoundError(path)
    return load_prompt_cache(str(path), return_metadata=True)


def remove_stale_temp_files(folder: Path) -> None:
    """A kill -9 during a save leaves its temp file, as big as the cache: remove those whose
    process is gone, never another live process's (ranks and servers may share the folder)."""
    for tmp in folder.glob(TEMP_GLOB):
        pid = tmp.name.split(".")[1]
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            tmp.unlink(missing_ok=True)
