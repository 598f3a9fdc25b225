"""Rebase a proposed change set onto files that changed since the agent read them.

A retry after a declined edit should keep what the user typed meanwhile: each file is a three-way
merge (what the agent read, what it wrote, what the file holds now) with breezy's merge3, which
is the maintained line merge; overlapping changes are refused, never guessed.
"""

from __future__ import annotations

from collections.abc import Callable

from merge3 import Merge3

from glm_lsp.agent.edits import ChangeSet, FileChange
from glm_lsp.textfile import digest

# workspace-relative path -> what the editor sees now (buffer or disk), None when missing
CurrentText = Callable[[str], "str | None"]


def merge(base: str, ours: str, theirs: str) -> str | None:
    """The three-way merge of the agent's text (ours) and the file now (theirs); None on conflict."""
    m = Merge3(
        base.splitlines(keepends=True),
        ours.splitlines(keepends=True),
        theirs.splitlines(keepends=True),
    )
    out: list[str] = []
    for group in m.merge_groups():
        if group[0] == "conflict":
            return None
        out.extend(group[-1])
    return "".join(out)


def rebase(change_set: ChangeSet, current: CurrentText) -> tuple[ChangeSet, list[str]]:
    """The change set re-based on the current files, and what stopped it (empty when clean)."""
    changes: list[FileChange] = []
    problems: list[str] = []
    for c in change_set.changes:
        if c.kind == "create":
            if current(c.path) is not None:
                problems.append(f"{c.path} exists now")
            changes.append(c)
            continue
        origin = c.old_path or c.path
        now = current(origin)
        if now == c.before:
            changes.append(c)
        elif now is None:
            problems.append(f"{origin} is gone")
        elif c.kind == "delete":
            problems.append(f"{origin} changed since the agent read it; not deleting it")
        else:
            merged = merge(c.before or "", c.after or "", now)
            if merged is None:
                problems.append(f"{origin}: your changes overlap the agent's")
            else:
                changes.append(
                    FileChange(c.kind, c.path, c.old_path, now, merged, None, digest(now))
                )
    return ChangeSet(changes), problems
