"""The last applied and the last declined edit of a workspace, kept in the user's state.

`glm.undo` and `glm.retry` must still work after the daemon restarts, so both change sets live
in `edits.json` (private, replaced atomically), not only in memory. `glm-lsp run --apply` records
its edit here too, for `glm-lsp undo`. The file is in the user's own folder for the workspace
(state_files.workspace_state), never in the workspace: a repository could ship an "undo" that
writes whatever it likes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from glm_lsp import state_files
from glm_lsp.agent.edits import ChangeSet, FileChange

log = logging.getLogger(__name__)
FILE = "edits.json"


@dataclass
class StoredEdit:
    change_set: ChangeSet
    label: str
    turn: int | None


def _encode(edit: StoredEdit | None) -> dict[str, Any] | None:
    if edit is None:
        return None
    changes = [asdict(c) for c in edit.change_set.changes]
    return {"label": edit.label, "turn": edit.turn, "changes": changes}


def _decode(raw: Any) -> StoredEdit | None:
    if raw is None:
        return None
    changes = [FileChange(**c) for c in raw["changes"]]  # `mode` may be absent: it has a default
    return StoredEdit(ChangeSet(changes), str(raw.get("label", "")), raw.get("turn"))


class EditStore:
    def __init__(self, root: Path) -> None:
        """`root`: the workspace whose edits these are."""
        self.path = state_files.workspace_state(root) / FILE
        self.applied: StoredEdit | None = None
        self.declined: StoredEdit | None = None
        self._load()

    def _load(self) -> None:
        try:
            raw = state_files.read_bytes(self.path)
            if raw is None:
                return
            data = json.loads(raw)
            self.applied = _decode(data.get("applied"))
            self.declined = _decode(data.get("declined"))
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            # A torn or foreign file only costs undo/retry of one old edit; say so and go on.
            log.warning("ignoring %s (%s): undo and retry start empty", self.path, exc)
            self.applied = self.declined = None

    def set(self, *, applied: StoredEdit | None, declined: StoredEdit | None) -> None:
        self.applied, self.declined = applied, declined
        data = {"v": 1, "applied": _encode(applied), "declined": _encode(declined)}
        # Private: it holds file contents, like the log.
        state_files.write_private(self.path, json.dumps(data, ensure_ascii=False).encode())
