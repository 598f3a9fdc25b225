"""One workspace folder, whatever the front-end: its index, watcher, session and edit store.

The front-end supplies the open buffers (LSP: didOpen/didChange; ACP: the client's fs) and the
current settings; everything else here is the same for every front-end.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

from pygls.uris import to_fs_path

from glm_lsp.agent.edit_store import EditStore, StoredEdit
from glm_lsp.agent.edits import ChangeSet
from glm_lsp.agent.landing import ApplyReport
from glm_lsp.agent.session import Session
from glm_lsp.config import BACKEND_KEYS, Settings
from glm_lsp.runtime.factory import make_backend, retune
from glm_lsp.textfile import read_view
from glm_lsp.workspace import WorkspaceIndex, WorkspaceWatcher


class OpenDocuments(Protocol):
    """The editor's open buffers, by URI (safe to call from the worker thread)."""

    def get(self, uri: str) -> tuple[str, int] | None:
        """Text and version of the open buffer at `uri`, else None."""
        ...

    def texts(self) -> list[tuple[str, str]]:
        """(uri, text) of every open buffer."""
        ...


class Folder:
    """One workspace folder: its index, watcher, and (once a request needs it) its session."""

    def __init__(
        self, client_root: Path, settings: Callable[[], Settings], documents: OpenDocuments
    ) -> None:
        self.settings = settings
        self.documents = documents
        self.client_root = client_root  # as the client spells it: URIs we send use this
        self.root = client_root.resolve()
        state = settings().state_dir(self.root).resolve()
        excluded = {".git", ".glm-lsp"}
        if self.root in state.parents:
            excluded.add(state.relative_to(self.root).parts[0])
        self.index = WorkspaceIndex(self.root, exclude_dirs=tuple(sorted(excluded)))
        self.watcher: WorkspaceWatcher | None = None
        self.session: Session | None = None
        self.session_settings: Settings | None = None
        self._edits: EditStore | None = None
        self.last_stats: Any = None  # the last request's Stats

    def rel(self, path: Path) -> str | None:
        for base in (self.client_root, self.root):
            try:
                return path.relative_to(base).as_posix()
            except ValueError:
                continue
        try:
            return path.resolve().relative_to(self.root).as_posix()
        except (ValueError, OSError):
            return None

    def uri(self, rel: str) -> str:
        return (self.client_root / rel).as_uri()

    def open_doc(self, rel: str) -> tuple[str, int] | None:
        """Text and version of an open buffer (safe to call from the worker thread)."""
        return self.documents.get(unquote(self.uri(rel)))

    def open_buffers(self) -> dict[str, str]:
        """Text of every open buffer in this folder, by relative path (worker thread too)."""
        out: dict[str, str] = {}
        for uri, text in self.documents.texts():
            path = to_fs_path(uri)
            rel = self.rel(Path(path)) if path is not None else None
            if rel and rel != "." and not rel.startswith("../"):
                out[rel] = text
        return out

    def read(self, rel: str) -> str | None:
        opened = self.open_doc(rel)
        if opened is not None:
            return opened[0]
        return read_view(self.root / rel)  # as the editor would show it

    def remember(
        self, report: ApplyReport, change_set: ChangeSet, label: str, turn: int | None
    ) -> None:
        """What landed becomes undoable; what did not is kept for glm.retry (when nothing landed,
        the previous applied edit stays undoable)."""
        landed = report.landed_set(change_set)
        remainder = (
            report.remainder
            if report.remainder is not None
            else (ChangeSet() if report.applied else change_set)
        )
        applied = StoredEdit(landed, label, turn) if landed else self.edits.applied
        declined = StoredEdit(remainder, label, turn) if remainder else None
        self.edits.set(applied=applied, declined=declined)

    @property
    def edits(self) -> EditStore:
        """The last applied and declined edits, loaded from the user's state on first use."""
        if self._edits is None:
            self._edits = EditStore(self.root)
        return self._edits

    def ensure_session(self, settings: Settings) -> Session:
        """Called on the worker thread: scanning and loading a model take time."""
        if self.session is not None and self.session_settings is not None:
            old = self.session_settings
            if all(getattr(old, k) == getattr(settings, k) for k in BACKEND_KEYS):
                retune(self.session.backend, settings)  # speculativeDecoding, draftTokens
                self.session.settings = settings
                self.session_settings = settings
                return self.session
            self.session.backend.close()
            self.session.close()
            self.session = None
        if self.watcher is None:
            self.index.scan()
            self.watcher = WorkspaceWatcher(self.index)
            self.watcher.start()
        backend = make_backend(settings, settings.state_dir(self.root))
        self.session = Session(
            self.root,
            settings,
            backend,
            index=self.index,
            buffers=self.open_doc,
            open_buffers=self.open_buffers,
        )
        self.session_settings = settings
        return self.session

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.session is not None:
            self.session.close()
