"""`glm-lsp undo WORKSPACE`: revert the last edit `run --apply` (or the editor) applied, when the
files still hold what it produced. Written as one transaction, with deleted files' old modes."""

from __future__ import annotations

import sys
from pathlib import Path

from glm_lsp.agent.edit_store import EditStore
from glm_lsp.agent.edits import ApplyFailed, ChangeSet, apply_to_disk, check_unchanged
from glm_lsp.agent.files import ToolError
from glm_lsp.agent.undo import inverse, undo_problems
from glm_lsp.config import Settings
from glm_lsp.core.disk_apply import sensitive_refusal
from glm_lsp.errors import EXIT_BACKEND, EXIT_OK, UsageError


def undo_command(workspace: Path, settings: Settings, *, allow_sensitive: bool = False) -> int:
    root = workspace.resolve()
    if not root.is_dir():
        raise UsageError(f"workspace {workspace} is not a directory")
    state_dir = settings.state_dir(root)
    store = EditStore(root)  # the user's record, never a file the workspace could ship
    done = store.applied
    if done is None:
        print("glm-lsp: nothing to undo: no applied edit is recorded", file=sys.stderr)
        return EXIT_BACKEND
    problems = undo_problems(root, done.change_set) or check_unchanged(
        root, revert := inverse(done.change_set)
    )
    if problems:
        print(f"glm-lsp: not undone: {'; '.join(problems)}", file=sys.stderr)
        return EXIT_BACKEND
    if not sensitive_gate(revert, allow_sensitive):
        return EXIT_BACKEND
    try:
        apply_to_disk(root, revert, state_dir)
    except (ToolError, ApplyFailed) as exc:
        print(f"glm-lsp: not undone: {exc}", file=sys.stderr)
        return EXIT_BACKEND
    store.set(applied=None, declined=store.declined)
    for c in revert.changes:
        print(f"{c.kind} {c.path}")
    print(f"undid: {done.label}", file=sys.stderr)
    return EXIT_OK


def sensitive_gate(revert: ChangeSet, allow_sensitive: bool) -> bool:
    """As `run --apply`: files that run code on their own (a hook, editor tasks) are written back
    only with --allow-sensitive; without it their diff is shown and nothing is written."""
    refused = sensitive_refusal(revert, allow_sensitive=allow_sensitive)
    if refused:
        sys.stdout.write(ChangeSet([c for c in revert.changes if c.sensitive]).diff())
        print(f"glm-lsp: not undone: {refused}", file=sys.stderr)
    return refused is None
