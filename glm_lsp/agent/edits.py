"""Pending edits of one request: an overlay over the workspace that becomes a single change set.

Nothing here writes to the workspace except `apply_to_disk` (the CLI's `--apply`); the LSP server
turns the change set into one `workspace/applyEdit` and lets the editor write.
"""

from __future__ import annotations

import difflib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from glm_lsp import textfile
from glm_lsp.agent.files import ToolError, Workspace, shown
from glm_lsp.agent.sensitive import runs_code
from glm_lsp.agent.transaction import Transaction, TransactionFailed
from glm_lsp.textfile import digest


@dataclass
class Entry:
    origin: str | None  # the path this file had before the request (None: created)
    content: str


@dataclass
class Snapshot:
    files: dict[str, Entry]
    gone: set[str]


@dataclass(frozen=True)
class FileChange:
    kind: str  # "create" | "modify" | "rename" | "delete"
    path: str  # final path (the deleted path for delete)
    old_path: str | None  # origin (rename, modify, delete)
    before: str | None  # content at the origin before the request
    after: str | None  # content after the request
    version: int | None  # open buffer version of old_path, None when not open
    base_hash: str | None  # hash of `before` when the agent first read it
    mode: int | None = None  # permission bits of old_path on disk (undo recreates it so)

    @property
    def sensitive(self) -> bool:
        """Touches a file that runs code on its own (CI, direnv, editor tasks): see sensitive.py."""
        return any(runs_code(p) for p in (self.path, self.old_path) if p)


@dataclass
class ChangeSet:
    changes: list[FileChange] = field(default_factory=list)
    summary_text: str = ""  # the model's summary: the review annotations describe the edit by it

    def __bool__(self) -> bool:
        return bool(self.changes)

    def diff(self) -> str:
        """For reading, by path (the change order is for the editor)."""
        return "".join(unified_diff(c) for c in sorted(self.changes, key=lambda c: c.path))

    def summary(self) -> list[dict[str, str]]:
        return [{"path": c.path, "kind": c.kind} for c in self.changes]

    def sensitive(self) -> list[str]:
        return [c.path for c in self.changes if c.sensitive]


class Overlay:
    """The request's view of the workspace: its own pending edits over buffers and disk."""

    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace
        self.files: dict[str, Entry] = {}
        self.gone: set[str] = set()  # origins deleted or renamed away
        self.base: dict[str, str | None] = {}  # origin -> content when first seen
        self.foreign: dict[str, str] = {}  # origin -> encoding, for files that are not UTF-8

    def _base(self, rel: str) -> str | None:
        if rel not in self.base:
            loaded = self.ws.load(rel)
            self.base[rel] = None if loaded is None else loaded.text
            if loaded is not None and not loaded.editable:
                self.foreign[rel] = loaded.encoding
        return self.base[rel]

    def encoding(self, rel: str) -> str | None:
        """The encoding of a file that is not UTF-8 (shown, never written), else None."""
        entry = self.files.get(rel)
        origin = entry.origin if entry else rel
        if origin is None or (entry is None and rel in self.gone):
            return None
        self._base(origin)
        return self.foreign.get(origin)

    def check_editable(self, rel: str) -> None:
        """Writing back a file decoded from another encoding would change bytes nobody edited."""
        encoding = self.encoding(rel)
        if encoding is not None:
            raise ToolError(
                f"'{rel}' is encoded as {encoding}, which glm-lsp does not edit (only UTF-8, "
                "with or without a BOM); leave it as it is, or ask the user to convert it to UTF-8"
            )

    def check_place(self, rel: str) -> None:
        """A file cannot be where a pending file is a folder, nor inside a file: writing both
        `notes` and `notes/inner.txt` could never be applied."""
        parts = rel.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if self._is_file(parent):
                raise ToolError(
                    f"'{shown(rel)}' would be inside '{shown(parent)}', which is a file; "
                    "pick another path"
                )
        inside = next((p for p in self.files if p.startswith(rel + "/")), None)
        if inside is not None:
            raise ToolError(
                f"'{shown(rel)}' is the folder of the pending file '{shown(inside)}'; "
                "pick another path"
            )

    def _is_file(self, rel: str) -> bool:
        if rel in self.files:
            return True
        try:  # on disk even when deleted in this request: apply makes folders before removing
            return stat.S_ISREG(os.stat(self.ws.abs(rel)).st_mode)
        except OSError:
            return False

    def read(self, rel: str) -> str | None:
        if rel in self.files:
            return self.files[rel].content
        if rel in self.gone:
            return None
        return self._base(rel)

    def exists(self, rel: str) -> bool:
        return self.read(rel) is not None

    def write(self, rel: str, content: str) -> bool:
        """Returns True when the file is new."""
        self.check_editable(rel)
        if rel in self.files:
            self.files[rel].content = content
            return False
        created = self.read(rel) is None
        if created:
            self.check_place(rel)
        origin = rel if rel not in self.gone and not created else None
        if rel in self.gone and self.base.get(rel) is not None and not self._renamed_away(rel):
            origin, created = rel, False  # deleted earlier in this request, now written again
            self.gone.discard(rel)
        self.files[rel] = Entry(origin, content)
        return created

    def _renamed_away(self, rel: str) -> bool:
        return any(e.origin == rel for e in self.files.values())

    def rename(self, rel: str, new_rel: str) -> None:
        content = self.read(rel)
        if content is None:
            raise ToolError(f"'{rel}' does not exist")
        if self.read(new_rel) is not None:
            raise ToolError(f"'{new_rel}' already exists; delete it first or pick another name")
        self.check_editable(rel)
        self.check_place(new_rel)
        entry = self.files.pop(rel, None) or Entry(rel, content)
        if entry.origin == rel:  # an existing file moves away; a created one just moves
            self.gone.add(rel)
        self.files[new_rel] = entry

    def delete(self, rel: str) -> None:
        if self.read(rel) is None:
            raise ToolError(f"'{rel}' does not exist")
        self.check_editable(rel)  # undo could only bring it back as UTF-8
        entry = self.files.pop(rel, None)
        origin = entry.origin if entry else rel
        if origin is not None:
            self.gone.add(origin)

    def snapshot(self) -> Snapshot:
        """The pending edits as they are now, for `restore` (a per-edit approval said no)."""
        return Snapshot(
            {p: Entry(e.origin, e.content) for p, e in self.files.items()}, set(self.gone)
        )

    def restore(self, snap: Snapshot) -> None:
        """Back to `snap`; what the taken-back edit touched is read afresh next time (the file
        may have changed under it)."""
        touched = (set(self.files) | self.gone) ^ (set(snap.files) | snap.gone)
        touched |= {p for p, e in self.files.items() if snap.files.get(p) != e}
        self.files = {p: Entry(e.origin, e.content) for p, e in snap.files.items()}
        self.gone = set(snap.gone)
        for rel in touched - set(self.files) - self.gone:
            self.base.pop(rel, None)
            self.foreign.pop(rel, None)

    def read_in(self, snap: Snapshot, rel: str) -> str | None:
        """What `rel` held in `snap`."""
        if rel in snap.files:
            return snap.files[rel].content
        return None if rel in snap.gone else self._base(rel)

    def created_paths(self) -> list[str]:
        return [p for p, e in self.files.items() if e.origin != p]

    def removed_paths(self) -> set[str]:
        return {p for p in self.gone if p not in self.files}

    def change_set(self) -> ChangeSet:
        # Order matters to the editor: a rename must free its old path before a create reuses it.
        changes: list[FileChange] = []
        kept_origins = {e.origin for e in self.files.values() if e.origin}
        for origin in sorted(self.gone - kept_origins):
            changes.append(self._change("delete", origin, origin, None))
        for path, entry in sorted(self.files.items()):
            before = self.base.get(entry.origin) if entry.origin else None
            if entry.origin is None:
                changes.append(self._change("create", path, None, entry.content))
            elif entry.origin != path:
                changes.append(self._change("rename", path, entry.origin, entry.content))
            elif before != entry.content:
                changes.append(self._change("modify", path, path, entry.content))
        order = {"delete": 0, "rename": 1, "create": 2, "modify": 3}
        return ChangeSet(sorted(changes, key=lambda c: order[c.kind]))

    def _change(self, kind: str, path: str, old: str | None, after: str | None) -> FileChange:
        before = self.base.get(old) if old else None
        version = self.ws.version(old) if old else None
        return self.file_change(kind, path, old, before, after, version)

    def file_change(
        self,
        kind: str,
        path: str,
        old: str | None,
        before: str | None,
        after: str | None,
        version: int | None = None,
    ) -> FileChange:
        """One file's change from `before` to `after`, with the digest and mode undo needs."""
        return FileChange(kind, path, old, before, after, version, digest(before), self._mode(old))

    def _mode(self, rel: str | None) -> int | None:
        """Permission bits on disk; None for an unsaved buffer (undo then uses the umask's)."""
        try:
            return os.stat(self.ws.abs(rel)).st_mode & 0o7777 if rel else None
        except OSError:
            return None


def unified_diff(change: FileChange) -> str:
    """A git-style diff of one change (a/ and b/ prefixes, /dev/null for created and deleted)."""
    old = f"a/{change.old_path}" if change.old_path else "/dev/null"
    new = "/dev/null" if change.kind == "delete" else f"b/{change.path}"
    before = (change.before or "").splitlines(keepends=True)
    after = (change.after or "").splitlines(keepends=True)
    lines = list(difflib.unified_diff(before, after, old, new))
    if not lines:  # a pure rename
        return f"--- {old}\n+++ {new}\n"
    out = []
    for line in lines:
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)


class ApplyFailed(Exception):
    """A change set that could not be written; the workspace is as it was (or the message says
    which files could not be put back)."""


def check_unchanged(root: Path, change_set: ChangeSet) -> list[str]:
    """Files changed on disk since the agent read them (a closed file edited by someone else)."""
    stale = []
    for c in change_set.changes:
        closed = c.old_path and c.version is None
        if closed and digest(textfile.read_native(root / c.old_path)) != c.base_hash:
            stale.append(c.old_path)
    return stale


def confinement_problems(
    root: Path, change_set: ChangeSet, state_dir: Path | None = None
) -> list[str]:
    """Paths of a change set that no longer resolve to the same place inside the workspace (a
    symlink or hard link made after the agent looked), or that point into .git or the state dir."""
    ws = Workspace(root, state_dir or root / ".glm-lsp")
    problems = []
    for c in change_set.changes:
        for path in dict.fromkeys(p for p in (c.old_path, c.path) if p):
            try:
                if ws.rel(path, writing=True) != path:
                    problems.append(f"'{path}' now resolves elsewhere (a symbolic link appeared)")
            except ToolError as exc:
                problems.append(str(exc))
    return problems


def apply_to_disk(root: Path, change_set: ChangeSet, state_dir: Path | None = None) -> None:
    """Write a change set (CLI --apply, undo) as one transaction: all of it or none of it.
    Every path is checked again first (ToolError), a failed write raises ApplyFailed."""
    problems = confinement_problems(root, change_set, state_dir)
    if problems:
        raise ToolError("not applied: " + "; ".join(problems))
    txn = Transaction()
    for c in change_set.changes:
        if c.kind == "delete" or (c.kind == "rename" and c.old_path):
            txn.remove(root / (c.old_path or c.path))
        if c.after is not None:
            # A renamed file keeps its mode; a recreated one (undo of a delete) gets its old one.
            txn.write(
                root / c.path, textfile.encode(c.after), c.mode if c.kind != "modify" else None
            )
    try:
        txn.run()
    except TransactionFailed as exc:
        where = os.path.relpath(exc.path, root) if exc.path.is_absolute() else str(exc.path)
        reason = exc.error.strerror or str(exc.error)
        if exc.leftovers:
            raise ApplyFailed(
                f"writing '{where}' failed ({reason}) and these could not be restored: "
                + ", ".join(os.path.relpath(p, root) for p in exc.leftovers)
            ) from None
        raise ApplyFailed(f"writing '{where}' failed ({reason}); nothing was changed") from None
