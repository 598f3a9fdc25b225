"""Change sets as LSP `documentChanges`, and their inverses for glm.undo.

Text edits are line-level hunks against the text the agent started from, so an editor keeps
cursors and folds outside the changed lines; positions at column 0 need no UTF-16 arithmetic.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

from lsprotocol import types as lsp

from glm_lsp.agent.edits import ChangeSet, FileChange
from glm_lsp.agent.files import digest

# workspace-relative path -> (text, version) of the open buffer, or None when not open
OpenDocs = Callable[[str], "tuple[str, int] | None"]
DocumentChange = lsp.TextDocumentEdit | lsp.CreateFile | lsp.RenameFile | lsp.DeleteFile


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def end_position(text: str) -> lsp.Position:
    lines = text.split("\n")
    return lsp.Position(line=len(lines) - 1, character=utf16_len(lines[-1]))


def text_edits(before: str, after: str) -> list[lsp.TextEdit]:
    """Line hunks turning `before` into `after`, each range relative to `before`."""
    old = before.splitlines(keepends=True)
    new = after.splitlines(keepends=True)
    edits = []
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        start = _line_start(old, i1)
        end = _line_start(old, i2)
        edits.append(
            lsp.TextEdit(range=lsp.Range(start=start, end=end), new_text="".join(new[j1:j2]))
        )
    return edits


def _line_start(lines: list[str], index: int) -> lsp.Position:
    """Start of line `index`; past a last line without a newline that is the end of the text."""
    if index >= len(lines) and lines and not lines[-1].endswith(("\n", "\r")):
        return lsp.Position(line=len(lines) - 1, character=utf16_len(lines[-1]))
    return lsp.Position(line=index, character=0)


def _doc_edit(uri: str, version: int | None, before: str, after: str) -> lsp.TextDocumentEdit:
    return lsp.TextDocumentEdit(
        text_document=lsp.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version),
        edits=text_edits(before, after),
    )


def to_document_changes(
    root: Path, change_set: ChangeSet, open_docs: OpenDocs
) -> list[DocumentChange]:
    """One list in the change set's order (deletes, renames, creates, modifies)."""
    out: list[DocumentChange] = []
    for c in change_set.changes:
        uri = (root / c.path).as_uri()
        if c.kind == "delete":
            out.append(lsp.DeleteFile(uri=uri))
        elif c.kind == "create":
            out.append(lsp.CreateFile(uri=uri))
            if c.after:
                out.append(_doc_edit(uri, None, "", c.after))
        elif c.kind == "rename":
            out.append(
                lsp.RenameFile(old_uri=(root / (c.old_path or c.path)).as_uri(), new_uri=uri)
            )
            if c.after is not None and c.after != (c.before or ""):
                out.append(_doc_edit(uri, None, c.before or "", c.after))
        else:
            opened = open_docs(c.path)
            out.append(_doc_edit(uri, opened[1] if opened else None, c.before or "", c.after or ""))
    return out


def current_text(root: Path, rel: str, open_docs: OpenDocs) -> str | None:
    """What the editor sees: the open buffer, else the disk, else None."""
    opened = open_docs(rel)
    if opened is not None:
        return opened[0]
    path = root / rel
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None


def stale_open_docs(change_set: ChangeSet, open_docs: OpenDocs) -> list[str]:
    """Open buffers that no longer hold what the agent read (closed files: check_unchanged)."""
    stale = []
    for c in change_set.changes:
        opened = open_docs(c.old_path) if c.old_path else None
        if opened is not None and opened[0] != c.before:
            stale.append(c.old_path or c.path)
    return stale


def undo_problems(root: Path, change_set: ChangeSet, open_docs: OpenDocs) -> list[str]:
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
    """The change set that restores what `change_set` replaced, in reverse order."""
    out: list[FileChange] = []
    for c in reversed(change_set.changes):
        produced = digest(c.after)  # what the files hold now, so staleness checks still apply
        if c.kind == "create":
            out.append(FileChange("delete", c.path, c.path, c.after, None, None, produced))
        elif c.kind == "delete":
            out.append(FileChange("create", c.path, None, None, c.before, None, None))
        elif c.kind == "rename":
            old = c.old_path or c.path
            out.append(FileChange("rename", old, c.path, c.after, c.before, None, produced))
        else:
            out.append(FileChange("modify", c.path, c.path, c.after, c.before, None, produced))
    return ChangeSet(out)
