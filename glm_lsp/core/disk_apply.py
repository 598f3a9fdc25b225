"""Writing a change set to disk when no editor does it (`run --apply`, ACP without client fs):
sensitive files refused unless allowed, stale files refused, all or nothing, undo recorded."""

from __future__ import annotations

from pathlib import Path

from glm_lsp.agent.edit_store import EditStore, StoredEdit
from glm_lsp.agent.edits import ApplyFailed, ChangeSet, apply_to_disk, check_unchanged
from glm_lsp.agent.files import ToolError


def sensitive_refusal(changes: ChangeSet, *, allow_sensitive: bool) -> str | None:
    """Why `changes` may not be written without --allow-sensitive (run --apply, undo); None
    when they may. See agent/sensitive.py."""
    sensitive = changes.sensitive()
    if not sensitive or allow_sensitive:
        return None
    return (
        f"{', '.join(sensitive)} can run code on its own; review the diff and run again with "
        "--allow-sensitive to write it"
    )


def write_to_disk(
    root: Path, state_dir: Path, changes: ChangeSet, *, allow_sensitive: bool
) -> tuple[bool, str | None]:
    """(applied, why not). On any failure the workspace is as it was."""
    refused = sensitive_refusal(changes, allow_sensitive=allow_sensitive)
    if refused:
        return False, f"not applied: {refused}"
    stale = check_unchanged(root, changes)
    if stale:
        return False, f"not applied: changed on disk since the agent read them: {', '.join(stale)}"
    try:
        apply_to_disk(root, changes, state_dir)
    except ToolError as exc:  # a path would now land outside the workspace: write nothing
        return False, str(exc)
    except ApplyFailed as exc:  # rolled back: the workspace is as it was
        return False, f"not applied: {exc}"
    return True, None


def remember_edit(
    root: Path, landed: ChangeSet, remainder: ChangeSet, label: str, turn: int
) -> None:
    """What landed becomes the edit `glm-lsp undo` (and glm.undo) reverts; the rest is kept for
    glm.retry (in the user's state for workspace `root`)."""
    store = EditStore(root)
    store.set(
        applied=StoredEdit(landed, label, turn) if landed else store.applied,
        declined=StoredEdit(remainder, label, turn) if remainder else store.declined,
    )
