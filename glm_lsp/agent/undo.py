"""Undoing an applied edit: what blocks it, and the change set that reverts it. Shared by the
LSP's glm.undo (the editor writes) and `glm-lsp undo` (written here, in one transaction)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from glm_lsp import textfile
from glm_lsp.agent.edits import ChangeSet, FileChange
from glm_lsp.textfile import digest

# workspace-relative path -> (text, version) of the open buffer, or None when not open
OpenDocs = Callable[[str], "tuple[str, int] | None"]


def no_docs(_rel: str) -> tuple[str, int] | None:
    return None


def current_text(root: Path, rel: str, open_docs: OpenDocs = no_docs) -> str | None:
    """What the editor sees: the open buffer, else the disk (native text), else None."""
    opened = open_docs(rel)
    if opened is not None:
        return opened[0]
    return textfile.read_native(root / rel)


def undo_problems(root: Path, change_set: ChangeSet, open_docs: OpenDocs = no_docs) -> list[str]:
    """Why the edit cannot be reverted cleanly: files no longer holding what it produced."""
    problems = []
    for c in change_set.changes:
        now = current_text(root, c.path, open_docs)
        if c.kind == "delete":
            if now is not None:
                problems.append(f"{c.path} exists again")
        elif now != c.after:
            problems.append(
                f"{c.path} changed since the edit" if now is not None else f"{c.path} is gone"
            )
        if (
            c.kind == "rename"
            and c.old_path
            and current_text(root, c.old_path, open_docs) is not None
        ):
            problems.append(f"{c.old_path} exists again")
    return problems


def inverse(change_set: ChangeSet) -> ChangeSet:
    """The change set that restores what `change_set` replaced, in reverse order; a deleted or
    renamed file comes back with its old mode where the writer can set one."""
    out: list[FileChange] = []
    for c in reversed(change_set.changes):
        produced = digest(c.after)  # what the files hold now, so staleness checks still apply
        if c.kind == "create":
            out.append(FileChange("delete", c.path, c.path, c.after, None, None, produced))
        elif c.kind == "delete":
            out.append(FileChange("create", c.path, None, None, c.before, None, None, c.mode))
        elif c.kind == "rename":
            old = c.old_path or c.path
            out.append(FileChange("rename", old, c.path, c.after, c.before, None, produced, c.mode))
        else:
            out.append(FileChange("modify", c.path, c.path, c.after, c.before, None, produced))
    return ChangeSet(out)
