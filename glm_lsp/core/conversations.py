"""A workspace's conversations: the LSP's default one and one per ACP session.

Each conversation has its own preserved-thinking log and persisted KV cache: the default one in
the state dir itself (`thinking.jsonl`, `kv-cache.safetensors`, as in round one), an ACP session
in `<stateDir>/sessions/<id>/`. One loaded model serves them all; only the active conversation's
cache stays in memory, and switching saves the old one and loads the new one from disk.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from glm_lsp.memory.thinking_log import ThinkingLog
from glm_lsp.runtime.base import Backend
from glm_lsp.textfile import atomic_write

SESSIONS_DIR = "sessions"
META_FILE = "session.json"
# A session id names a folder: only what we generate, so a client cannot point it elsewhere.
SESSION_ID = re.compile(r"[0-9a-f]{32}")


class UnknownSession(ValueError):
    """A session id that is malformed or has no conversation in this workspace."""


def new_session_id() -> str:
    return uuid.uuid4().hex


def session_dir(state_dir: Path, session_id: str) -> Path:
    if not isinstance(session_id, str) or not SESSION_ID.fullmatch(session_id):
        raise UnknownSession(
            f"sessionId {str(session_id)[:40]!r} is not a glm-lsp session id "
            "(32 lowercase hex digits, as session/new returns)"
        )
    return state_dir / SESSIONS_DIR / session_id


@dataclass
class SessionMeta:
    id: str
    cwd: str
    created: str
    mode: str = "auto"
    always_edits: bool = False  # the user chose "always apply edits in this session"

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": 1,
            "id": self.id,
            "cwd": self.cwd,
            "created": self.created,
            "mode": self.mode,
            "alwaysEdits": self.always_edits,
        }


def create_session(state_dir: Path, cwd: Path) -> SessionMeta:
    meta = SessionMeta(new_session_id(), str(cwd), _now())
    folder = session_dir(state_dir, meta.id)
    folder.mkdir(parents=True, mode=0o700)
    save_meta(state_dir, meta)
    return meta


def save_meta(state_dir: Path, meta: SessionMeta) -> None:
    path = session_dir(state_dir, meta.id) / META_FILE
    atomic_write(path, (json.dumps(meta.to_dict(), indent=1) + "\n").encode(), mode=0o600)


def load_meta(state_dir: Path, session_id: str) -> SessionMeta:
    folder = session_dir(state_dir, session_id)
    try:
        data = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        return SessionMeta(
            data["id"],
            data["cwd"],
            data["created"],
            data.get("mode", "auto"),
            data.get("alwaysEdits") is True,
        )
    except FileNotFoundError:
        raise UnknownSession(
            f"there is no session {session_id} in {state_dir}; session/new starts one"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UnknownSession(f"session {session_id} is unreadable ({exc})") from None


def list_sessions(state_dir: Path) -> list[tuple[SessionMeta, float]]:
    """Every readable session with the time its log last changed, newest first."""
    found = []
    for folder in (state_dir / SESSIONS_DIR).glob("*"):
        try:
            meta = load_meta(state_dir, folder.name)
        except UnknownSession:
            continue
        log = ThinkingLog(folder).path
        found.append((meta, log.stat().st_mtime if log.exists() else 0.0))
    return sorted(found, key=lambda item: item[1], reverse=True)


class ActiveCache:
    """Keeps one conversation's KV cache in memory; activating another unloads the previous one
    (saved to disk first when persisted), so N sessions cost one cache of memory."""

    def __init__(self) -> None:
        self.active: Backend | None = None
        self.lock = threading.Lock()
        self.last_switch_s: float | None = None

    def activate(self, backend: Backend) -> None:
        with self.lock:
            if self.active is backend:
                return
            start = time.perf_counter()
            unload = getattr(self.active, "unload", None)
            if unload is not None:
                unload()
            self.active = backend
            self.last_switch_s = time.perf_counter() - start


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
