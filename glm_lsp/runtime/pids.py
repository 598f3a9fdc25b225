"""Whether a process id still names a running process (temp files and ranks are keyed by pid)."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True for a running process, also another user's; False for a gone or zombie one."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    # A zombie child (not reaped yet) is gone as far as its work is concerned.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):  # no /proc (macOS): kill(0) is the answer
        return True
