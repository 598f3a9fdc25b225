"""A workspace's conversations: the LSP's default one and one per ACP session.

Each conversation has its own preserved-thinking log and persisted KV cache: the default one in
the state dir itself (`thinking.jsonl`, `kv-cache.safetensors`, as in round one), an ACP session
in `<stateDir>/sessions/<id>/`. One loaded model serves them all; only the active conversation's
cache stays in memory, and switching saves the old one and loads the new one from disk.

A session's metadata (its mode, "always apply edits") grants something, so it is the user's: kept
in the user's folder for the workspace (`sessions/<id>.json` under state_files.workspace_state),
never read from the workspace. A session exists when that record does.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from glm_lsp import state_files
from glm_lsp.memory.thinking_log import LOG_FILE
from glm_lsp.runtime.base import Backend

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
    title: str | None = None  # the first line of the first prompt; None: never prompted

    @property
    def kept(self) -> bool:
        """A session is kept (and listed) from its first prompt on."""
        return self.title is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": 1,
            "id": self.id,
            "cwd": self.cwd,
            "created": self.created,
            "mode": self.mode,
            "alwaysEdits": self.always_edits,
            "title": self.title,
        }


def create_session(cwd: Path) -> SessionMeta:
    """A new session of workspace `cwd`, in memory until its first prompt (`keep_session`): a
    client that opens one on start and never prompts leaves nothing behind."""
    return SessionMeta(new_session_id(), str(cwd), _now())


def keep_session(state_dir: Path, meta: SessionMeta, prompt: str) -> None:
    """A session's first prompt: its title, its conversation folder under `state_dir` (every
    folder on the way checked, none a link) and its metadata in the user's state."""
    meta.title = title_of(prompt)
    state_files.private_dir(session_dir(state_dir, meta.id), top=state_dir)
    save_meta(meta)


def title_of(prompt: str, limit: int = 80) -> str:
    """The first line of a prompt, trimmed (and shortened), as the session's name."""
    line = next((line.strip() for line in prompt.splitlines() if line.strip()), "")
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _meta_path(root: Path, session_id: str) -> Path:
    session_dir(Path(), session_id)  # validates the id
    return state_files.workspace_state(root) / SESSIONS_DIR / f"{session_id}.json"


def save_meta(meta: SessionMeta) -> None:
    path = _meta_path(Path(meta.cwd), meta.id)
    state_files.private_dir(path.parent)
    state_files.write_json(path, meta.to_dict())


def load_meta(root: Path, session_id: str) -> SessionMeta:
    """A session of workspace `root`, from the user's state (a `session.json` that a repository
    ships in its `.glm-lsp` is never read)."""
    path = _meta_path(root, session_id)
    try:
        raw = state_files.read_bytes(path)
        if raw is None:
            raise FileNotFoundError(path)
        data = json.loads(raw)
        return SessionMeta(
            data["id"],
            data["cwd"],
            data["created"],
            data.get("mode", "auto"),
            data.get("alwaysEdits") is True,
            data["title"] if isinstance(data.get("title"), str) else None,
        )
    except FileNotFoundError:
        raise UnknownSession(
            f"there is no session {session_id} for {root}; session/new starts one"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UnknownSession(f"session {session_id} is unreadable ({exc})") from None


def list_sessions(root: Path, state_dir: Path) -> list[tuple[SessionMeta, float]]:
    """Every readable session of `root` that was prompted, with the time its log (in
    `state_dir`) last changed, newest first."""
    found = []
    for record in (state_files.workspace_state(root) / SESSIONS_DIR).glob("*.json"):
        try:
            meta = load_meta(root, record.stem)
        except UnknownSession:
            continue
        log = session_dir(state_dir, meta.id) / LOG_FILE
        try:
            changed = os.lstat(log).st_mtime if state_files.check_path(log, want_dir=False) else 0.0
        except state_files.StateRefused:
            changed = 0.0
        if meta.title is None and changed:  # kept before sessions had titles: its first prompt
            meta.title = logged_title(log)
        if meta.title is not None:
            found.append((meta, changed))
    return sorted(found, key=lambda item: item[1], reverse=True)


def logged_title(log: Path) -> str | None:
    """The title of a session kept before sessions had titles: its first logged prompt."""
    try:
        with log.open(encoding="utf-8") as lines:
            prompt = json.loads(lines.readline()).get("prompt")
    except (OSError, ValueError, AttributeError):
        return None
    return title_of(prompt) if isinstance(prompt, str) else None


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
