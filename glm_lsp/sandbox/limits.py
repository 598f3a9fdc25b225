"""Limits on one command: how many processes it may run, how much its private /tmp and the
shadow may hold, and that nothing it started outlives it.

Processes: a pids cgroup where this machine lets us make one (root, or a delegated cgroup v2):
the kernel caps forks there for root too, and killing the cgroup ends every process the
command started, wherever it moved. Elsewhere RLIMIT_NPROC (counted per user, so it is set
above what the user already runs); it binds everyone but root.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from pathlib import Path

PROCESS_LIMIT = 512  # processes and threads one command may have at once
TMP_BYTES = 1 << 30  # the sandbox's private /tmp (memory-backed)
SHADOW_BYTES = 8 << 30  # what the shadow may hold after a command
_serial = itertools.count()

# The command's first process joins the cgroup before anything else runs: "$0" is cgroup.procs.
JOIN = 'echo $$ > "$0" 2>/dev/null; exec "$@"'


class ProcessCap:
    """One command's pids cgroup; None from `make` where none can be made here."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path, self.limit = path, limit

    @classmethod
    def make(cls, limit: int | None = None) -> ProcessCap | None:
        limit = limit or PROCESS_LIMIT
        for parent in _pids_parents():
            path = parent / f"glm-lsp-{os.getpid()}-{next(_serial)}"
            try:
                path.mkdir()
            except OSError:
                continue
            try:
                (path / "pids.max").write_text(str(limit))
                return cls(path, limit)
            except OSError:
                with contextlib.suppress(OSError):
                    path.rmdir()
        return None

    def prefix(self) -> list[str]:
        return ["/bin/sh", "-c", JOIN, str(self.path / "cgroup.procs")]

    def hit(self) -> bool:
        """Whether a fork was refused for the limit."""
        try:
            events = (self.path / "pids.events").read_text().split()
        except OSError:
            return False
        return "max" in events and events[events.index("max") + 1] != "0"

    def close(self) -> None:
        """Kill whatever the command left behind, then remove the cgroup."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                (self.path / "cgroup.kill").write_text("1")  # cgroup v2: all at once
            pids = _pids(self.path / "cgroup.procs")
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.01)  # dying processes leave the cgroup a moment later


def _pids(procs: Path) -> list[int]:
    try:
        return [int(p) for p in procs.read_text().split()]
    except (OSError, ValueError):
        return []


def _pids_parents() -> list[Path]:
    """Our own cgroup in the pids hierarchy (v1) or the unified one (v2, if pids is on there)."""
    found = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        _num, controllers, rel = line.split(":", 2)
        rel = rel.lstrip("/")
        if "pids" in controllers.split(","):
            found.append(Path("/sys/fs/cgroup/pids") / rel)
        elif controllers == "":
            for mount in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
                base = mount / rel
                with contextlib.suppress(OSError):
                    if "pids" in (base / "cgroup.subtree_control").read_text().split():
                        found.append(base)
    return found


def nproc_prefix(limit: int | None = None) -> list[str]:
    """Without a cgroup: RLIMIT_NPROC above what this user runs now (not enforced for root)."""
    limit = limit or PROCESS_LIMIT
    if os.getuid() == 0:
        return []
    mine = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                mine += entry.stat().st_uid == os.getuid()
    return ["prlimit", f"--nproc={mine + limit}", "--"] if _which("prlimit") else []


def _which(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None
