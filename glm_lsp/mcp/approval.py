"""Which workspaces' `.mcp.json` the user approved, by content hash: the file starts programs, so
a cloned repository's copy runs nothing until its owner says so, and an edit asks again.

Kept in the user's state directory, never the workspace's (a repository could ship its own)."""

from __future__ import annotations

from pathlib import Path

from glm_lsp import state_files


class Approvals:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or state_files.user_state() / "mcp-approvals.json"

    def _load(self) -> dict[str, str]:
        data = state_files.read_json(self.path)
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
        state_files.private_dir(self.path.parent)
        state_files.write_json(self.path, {"v": 1, "approved": approved})  # private, fsynced
