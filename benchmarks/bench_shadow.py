"""Shadow workspace and sandbox costs on the 10,000-file benchmark tree (bench_index.generate).

Run: python -m benchmarks.bench_shadow      (or import and call run() -> dict)

Measures shadow creation (time, bytes copied, bytes allocated: a reflink shares blocks), syncing
one pending edit, the refresh before every command with nothing changed (with a watcher on the
index, as in the server: journal + inotify; without one, as in `glm-lsp run`: every file's
stamps), the refresh after a command rewrote one file, and the overhead of running `true` under
bubblewrap versus plainly (medians of several runs).
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.bench_index import generate
from glm_lsp.agent.edits import Overlay
from glm_lsp.agent.files import Workspace
from glm_lsp.sandbox.bwrap import Jail, Unavailable, wrap
from glm_lsp.sandbox.process import run_process
from glm_lsp.sandbox.shadow import Shadow
from glm_lsp.workspace import WorkspaceIndex, WorkspaceWatcher

EDITS = 20
RUNS = 15


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _true(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    run_process(
        [*argv, "/bin/sh", "-c", "true"],
        cwd,
        {"PATH": "/usr/bin:/bin"},
        60,
        threading.Event(),
        lambda _t: None,
    )
    return time.perf_counter() - start


def _refreshes(shadow: Shadow) -> list[float]:
    out = []
    for _ in range(RUNS):
        start = time.perf_counter()
        assert shadow.refresh() == 0
        out.append(time.perf_counter() - start)
    return out


def run() -> dict:
    with tempfile.TemporaryDirectory(prefix="glm-bench-shadow-") as tmp:
        root = Path(tmp) / "tree"
        root.mkdir()
        generate(root)
        index = WorkspaceIndex(root)
        index.scan()
        shadow = Shadow(root, index, parent=Path(tmp))
        start = time.perf_counter()
        copied = shadow.refresh()
        create_s = time.perf_counter() - start
        created_bytes, allocated = shadow.bytes_copied, shadow.disk_usage()
        unwatched = _refreshes(shadow)
        watcher = WorkspaceWatcher(index)
        watcher.start()
        try:
            shadow.refresh()  # warm-up
            watched = _refreshes(shadow)
            target = shadow.dir / index.files()[1]
            rewritten = []
            for i in range(RUNS):  # as a command (a formatter) leaves it
                target.write_text(f"# rewritten {i}\n")
                start = time.perf_counter()
                assert shadow.refresh() == 1
                rewritten.append(time.perf_counter() - start)
        finally:
            watcher.stop()
        overlay = Overlay(Workspace(root, root / ".glm-lsp"))
        target = index.files()[0]
        syncs = []
        for i in range(EDITS):
            overlay.write(target, f"# edit {i}\n")
            start = time.perf_counter()
            shadow.sync(overlay)
            syncs.append(time.perf_counter() - start)
        out = {
            "files": copied,
            "create_ms": _ms(create_s),
            "bytes_copied": created_bytes,
            "bytes_allocated": allocated,
            "sync_one_edit_ms_median": _ms(statistics.median(syncs)),
            "refresh_no_change_ms_median": _ms(statistics.median(watched)),
            "refresh_no_change_unwatched_ms_median": _ms(statistics.median(unwatched)),
            "refresh_after_command_write_ms_median": _ms(statistics.median(rewritten)),
        }
        jail = Jail(shadow.dir, root, (), Path(tmp), False)
        plain = [_true([], shadow.dir) for _ in range(RUNS)]
        out["plain_true_ms_median"] = _ms(statistics.median(plain))
        try:
            prefix, cwd = wrap(jail)
            boxed = [_true(prefix, cwd) for _ in range(RUNS)]
            out["sandboxed_true_ms_median"] = _ms(statistics.median(boxed))
            out["sandbox_overhead_ms"] = round(
                out["sandboxed_true_ms_median"] - out["plain_true_ms_median"], 2
            )
        except Unavailable as exc:
            out["sandboxed_true_ms_median"] = None
            out["sandbox_note"] = str(exc)
        shadow.close()
        shutil.rmtree(root, ignore_errors=True)
    return out


if __name__ == "__main__":
    json.dump(run(), sys.stdout, indent=1)
    print()
