"""Which workspaces' `.mcp.json` the user approved, by content hash: the file starts programs, so
a cloned repository's copy runs nothing until its owner says so, and an edit asks again.

Kept in the user's state directory, never the workspace's (a repository could ship its own)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from glm_lsp import textfile

log = logging.getLogger(__name__)


def user_state_dir() -> Path:
    """$XDG_STATE_HOME/glm-lsp, else ~/.local/state/glm-lsp."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "glm-lsp"


class Approvals:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or user_state_dir() / "mcp-approvals.json"

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable %s: %s", self.path, exc)
            return {}
        approved = data.get("approved") if isinstance(data, dict) else None
        if not isinstance(approved, dict):
            return {}
        return {k: v for k, v in approved.items() if isinstance(k, str) and isinstance(v, str)}

    def approved(self, root: Path, digest: str) -> bool:
        return self._load().get(str(root.resolve())) == digest

    def approve(self, root: Path, digest: str) -> None:
        approved = self._load()
        approved[str(root.resolve())] = digest
        self._store(approved)

    def revoke(self, root: Path) -> bool:
        approved = self._load()
        if approved.pop(str(root.resolve()), None) is None:
            return False
        self._store(approved)
        return True

    def _store(self, approved: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        text = json.dumps({"v": 1, "approved": approved}, indent=1) + "\n"
        textfile.atomic_write(self.path, text.encode("utf-8"), 0o600)  # private, fsynced
