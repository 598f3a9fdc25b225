"""What of a reviewed edit landed: per change, and hunk by hunk within a file edit.

A client that shows the edit for review (VS Code's Refactor Preview, the Neovim review tab) may
take some files and some hunks and still answer `applied: true`, so the server looks at what the
files hold afterwards. The landed part is what undo reverts; the rest is kept for glm.retry.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from glm_lsp.agent.edits import ChangeSet, FileChange
from glm_lsp.textfile import digest
from glm_lsp.wire.converter import converter
from glm_lsp.wire.records import ChangeRecord, Hunks

# workspace-relative path -> what the editor shows now (buffer, else disk), None when missing
Current = Callable[[str], "str | None"]
# workspace-relative path -> open buffer version, None when the file is not open
Version = Callable[[str], "int | None"]

Hunk = tuple[int, int, list[str]]  # old lines [i1, i2) replaced by the new lines


@dataclass(frozen=True)
class Landing:
    path: str
    kind: str
    applied: bool
    hunks: tuple[int, int] | None = None  # (applied, total) when a file edit was partly taken

    def record(self) -> ChangeRecord:
        hunks = Hunks(*self.hunks) if self.hunks is not None else None
        return ChangeRecord(self.path, self.kind, self.applied, hunks)

    def to_dict(self) -> dict[str, Any]:
        return converter.unstructure(self.record())

    @property
    def partial(self) -> bool:
        return self.hunks is not None


def hunks(before: str, after: str) -> list[Hunk]:
    """The line hunks of `before` -> `after`, as lsp_edits sends them."""
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    return [(i1, i2, new[j1:j2]) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def taken_hunks(before: str, after: str, now: str) -> list[bool] | None:
    """Which hunks of before -> after `now` holds, or None when `now` is no such subset (the
    user edited the text otherwise, or took part of a hunk)."""
    old, current = before.splitlines(keepends=True), now.splitlines(keepends=True)
    parts = hunks(before, after)
    memo: dict[tuple[int, int, int], list[bool] | None] = {}

    def walk(index: int, pos: int, line: int) -> list[bool] | None:
        # index: next hunk; pos: position in `current`; line: position in `old`
        key = (index, pos, line)
        if key in memo:
            return memo[key]
        found: list[bool] | None = None
        if index == len(parts):
            found = [] if current[pos:] == old[line:] else None
        else:
            i1, i2, new = parts[index]
            same = old[line:i1]
            if current[pos : pos + len(same)] == same:
                at = pos + len(same)
                for taken, lines in ((True, new), (False, old[i1:i2])):
                    if current[at : at + len(lines)] == lines:
                        rest = walk(index + 1, at + len(lines), i2)
                        if rest is not None:
                            found = [taken, *rest]
                            break
        memo[key] = found
        return found

    return walk(0, 0, 0)


def _text_landing(c: FileChange, now: str) -> Landing:
    before, after = c.before or "", c.after or ""
    total = len(hunks(before, after))
    if now == after or total == 0:
        return Landing(c.path, c.kind, True)
    if now == before and c.kind == "modify":
        return Landing(c.path, c.kind, False)
    taken = taken_hunks(before, after, now)
    if taken is None:  # not a subset of the hunks: count those still missing
        remaining = len(hunks(now, after))
        return Landing(c.path, c.kind, True, (max(total - remaining, 0), total))
    return Landing(c.path, c.kind, any(taken) or c.kind != "modify", (sum(taken), total))


def landing(c: FileChange, current: Current) -> Landing:
    """Whether change `c` landed, judged from what the files hold now."""
    now = current(c.path)
    if c.kind == "delete":
        return Landing(c.path, c.kind, now is None)
    if c.kind == "rename" and c.old_path and current(c.old_path) is not None:
        return Landing(c.path, c.kind, False)
    if now is None:
        return Landing(c.path, c.kind, False)
    if c.kind == "create":
        before = FileChange("create", c.path, None, "", c.after, None, None)
        got = _text_landing(before, now)
        return Landing(c.path, c.kind, True, got.hunks)
    return _text_landing(c, now)


def fully_landed(change_set: ChangeSet, current: Current) -> bool:
    """Every change landed whole: the editor took all of it (no need to wait for more)."""
    return all(
        (lambda got: got.applied and not got.partial)(landing(c, current))
        for c in change_set.changes
    )


@dataclass
class Split:
    landings: list[Landing]
    landed: ChangeSet  # what the files got: what undo reverts
    remainder: ChangeSet  # what the user left: what glm.retry sends again


def split(change_set: ChangeSet, current: Current, version: Version) -> Split:
    landings, landed, remainder = [], [], []
    for c in change_set.changes:
        got = landing(c, current)
        landings.append(got)
        now = current(c.path) if c.kind != "delete" else None
        if got.applied:
            landed.append(
                FileChange(
                    c.kind, c.path, c.old_path, c.before, now, c.version, c.base_hash, c.mode
                )
            )
        if not got.applied:
            remainder.append(c)
        elif got.partial and now is not None and now != c.after:
            # the rest of a partly taken file: from what it holds now to what was proposed
            remainder.append(
                FileChange("modify", c.path, c.path, now, c.after, version(c.path), digest(now))
            )
    return Split(landings, ChangeSet(landed), ChangeSet(remainder))


@dataclass
class ApplyReport:
    """What an `apply` (Session.run's) reports: the client's answer and, after a review, what
    of it landed. `landings`/`landed` None: all or nothing, as `applied` says."""

    applied: bool
    reason: str | None = None
    landings: list[Landing] | None = None
    landed: ChangeSet | None = None
    remainder: ChangeSet | None = None

    def per_change(self, change_set: ChangeSet) -> list[Landing]:
        if self.landings is not None:
            return self.landings
        return [Landing(c.path, c.kind, self.applied) for c in change_set.changes]

    def landed_set(self, change_set: ChangeSet) -> ChangeSet:
        if self.landed is not None:
            return self.landed
        return change_set if self.applied else ChangeSet()
