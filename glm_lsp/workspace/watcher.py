"""File-system changes -> index updates, and the journal behind "changed since" notes.

A watchdog observer (or the client's `workspace/didChangeWatchedFiles`) feeds paths into a
debounced queue; one worker thread applies each burst to the index, so a `git checkout` of
hundreds of files is one short burst of work rather than hundreds of wake-ups.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from .ignore import GIT_EXCLUDE, is_ignore_file

if TYPE_CHECKING:
    from .index import WorkspaceIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Change:
    path: str  # workspace-relative posix path
    kind: str  # "created" | "modified" | "deleted"


class ChangeJournal:
    """Generation-numbered change log; the owner serialises access (WorkspaceIndex's lock)."""

    def __init__(self, maxlen: int = 100_000) -> None:
        # Bounded: asking about a generation older than the window sees only what is kept.
        self._entries: deque[tuple[int, str, str]] = deque(maxlen=maxlen)
        self.generation = 0

    def record(self, kind: str, path: str) -> None:
        self.generation += 1
        self._entries.append((self.generation, path, kind))

    def covers(self, generation: int) -> bool:
        """Whether every change after `generation` is still kept (the window is bounded)."""
        return not self._entries or self._entries[0][0] <= generation + 1

    def since(self, generation: int) -> list[Change]:
        """Net change per path after `generation`: created+deleted cancels, created+modified is
        created, deleted+created is modified."""
        first: dict[str, str] = {}
        last: dict[str, str] = {}
        oldest = self._entries[0][0] if self._entries else self.generation + 1
        for i in range(max(0, generation + 1 - oldest), len(self._entries)):
            _gen, path, kind = self._entries[i]
            first.setdefault(path, kind)
            last[path] = kind
        out: list[Change] = []
        for path in sorted(first):
            existed, exists = first[path] != "created", last[path] != "deleted"
            if existed and exists:
                out.append(Change(path, "modified"))
            elif existed or exists:
                out.append(Change(path, "created" if exists else "deleted"))
        return out


# watchdog event type -> our kind; "closed" is the end of a write, "opened" and friends are noise.
_EVENT_KINDS = {"created": "created", "modified": "modified", "closed": "modified"}
_EVENT_KINDS |= {"deleted": "deleted", "moved": "moved"}


# LSP FileChangeType, by name or number (lsprotocol's enum is an int).
_CLIENT_KINDS: dict[object, str] = {"created": "created", "changed": "modified"}
_CLIENT_KINDS |= {"deleted": "deleted", 1: "created", 2: "modified", 3: "deleted"}


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: WorkspaceWatcher) -> None:
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = _EVENT_KINDS.get(event.event_type)
        if kind is None or (event.is_directory and kind == "modified"):
            return  # a directory's mtime changes with every child: the child's event suffices
        src = _str(event.src_path)
        if kind == "moved":
            self._watcher._enqueue([(src, "deleted"), (_str(event.dest_path), "created")])
        else:
            self._watcher._enqueue([(src, kind)])


def _str(path: str | bytes) -> str:
    return path.decode(errors="surrogateescape") if isinstance(path, bytes) else path


class WorkspaceWatcher:
    """Keeps one WorkspaceIndex current; start() it once, stop() on shutdown."""

    def __init__(self, index: WorkspaceIndex, *, debounce_s: float = 0.05) -> None:
        self.index = index
        self.debounce_s = debounce_s
        self.max_delay_s = max(0.25, 5 * debounce_s)  # a steady stream still gets applied
        self._cond = threading.Condition()
        self._pending: dict[str, str] = {}  # rel -> last kind seen, in arrival order
        self._first_at = self._last_at = 0.0
        self._busy = False
        self._stopping = False
        self._observer: BaseObserver | None = None
        self._thread: threading.Thread | None = None

    def start(self, *, observe: bool = True) -> None:
        """Start applying changes; `observe=False` relies on notify() (client events) alone."""
        if self._thread is not None:
            return  # already running
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="glm-lsp-index", daemon=True)
        self._thread.start()
        self.index.drain = self.wait_idle
        if not observe:
            return
        observer = Observer()
        observer.daemon = True
        try:
            observer.schedule(_Handler(self), str(self.index.root), recursive=True)
            observer.start()
        except OSError as exc:  # e.g. inotify watch limit: the client's events still work
            log.warning("file watching unavailable for %s: %s", self.index.root, exc)
            return
        self._observer = observer
        self.index.settle = self.wait_idle  # every change now reaches the journal

    def stop(self, timeout: float = 2.0) -> None:
        if self.index.settle == self.wait_idle:
            self.index.settle = None
        if self.index.drain == self.wait_idle:
            self.index.drain = None
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
            self._observer = None
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def notify(self, events: Iterable[tuple[str, str]]) -> None:
        """Client `workspace/didChangeWatchedFiles`: (absolute path, created|changed|deleted).

        Paths outside this index's root are ignored, so a multi-root server can broadcast.
        """
        self._enqueue([(p, _CLIENT_KINDS[k]) for p, k in events if k in _CLIENT_KINDS])

    def wait_idle(self, timeout: float = 2.0) -> bool:
        """Block until queued changes are applied (or `timeout`); True if idle."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _enqueue(self, events: list[tuple[str, str]]) -> None:
        items = []
        for path, kind in events:
            rel = self.index.to_rel(path)
            # Drop .git churn here, cheaply; git's own exclude file is the one path worth keeping.
            if rel is not None and (rel == GIT_EXCLUDE or not self.index.is_excluded(rel)):
                items.append((rel, kind))
        if not items:
            return
        with self._cond:
            now = time.monotonic()
            if not self._pending:
                self._first_at = now
            self._last_at = now
            for rel, kind in items:
                self._pending.pop(rel, None)  # re-insert: keep the order of last arrival
                self._pending[rel] = kind
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if not self._pending:
                    return
                # Debounce: wait for a quiet spell, but never past max_delay_s.
                while not self._stopping:
                    now = time.monotonic()
                    due = min(self._last_at + self.debounce_s, self._first_at + self.max_delay_s)
                    if now >= due:
                        break
                    self._cond.wait(due - now)
                batch, self._pending, self._busy = self._pending, {}, True
            # Ignore files first: files arriving with a new .gitignore are judged by it.
            order = sorted(batch.items(), key=lambda item: not is_ignore_file(item[0]))
            try:
                for rel, kind in order:
                    try:
                        self.index.apply_change(kind, rel)
                    except Exception:  # one bad path must not kill the watcher
                        log.exception("index update failed for %s", rel)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
