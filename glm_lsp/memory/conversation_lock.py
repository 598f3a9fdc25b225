"""One request at a time on a conversation, across processes: two editors, an editor and
`glm-lsp run`, or two runs on one workspace take turns instead of both logging `turn 1`.

An flock on a private file in the conversation's folder (beside its log). The kernel drops it
when the holder's process dies, so a killed glm-lsp never leaves a conversation locked.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from glm_lsp import state_files

LOCK_FILE = "conversation.lock"
WAITING = "waiting for another glm-lsp on this workspace"
POLL_S = 0.05  # how soon a waiting request notices the lock is free, or that it was cancelled


class WaitCancelled(Exception):
    """The request was cancelled while it waited for another process's request."""


class ConversationLock:
    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_FILE
        self._owner: int | None = None  # the thread holding it through this object

    @contextmanager
    def hold(
        self,
        cancel: threading.Event | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> Iterator[None]:
        """Held for the block. `on_wait` is called once before waiting on another holder (a
        request shows it); `cancel` set meanwhile raises WaitCancelled. The thread already
        holding it holds it again at no cost (a request appending its record)."""
        if self._owner == threading.get_ident():
            yield
            return
        # Close-on-exec (state_files): a command or MCP server the request starts never
        # inherits the lock, so it ends with this process.
        fd = state_files.open_lock(self.path)
        try:
            if not _try_lock(fd):
                if on_wait is not None:
                    on_wait()
                waiter = cancel or threading.Event()  # none: wait until the holder is done
                while not _try_lock(fd):
                    if waiter.wait(POLL_S):
                        raise WaitCancelled(f"cancelled while {WAITING}")
            self._owner = threading.get_ident()
            try:
                yield
            finally:
                self._owner = None
        finally:
            os.close(fd)  # releases the flock


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
