"""Change sets as LSP `documentChanges`, and their inverses for glm.undo.

Text edits are line-level hunks against the text the agent started from, so an editor keeps
cursors and folds outside the changed lines; positions at column 0 need no UTF-16 arithmetic.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from lsprotocol import types as lsp

from glm_lsp import textfile
from glm_lsp.agent.edits import ChangeSet
from glm_lsp.agent.undo import OpenDocs

SENSITIVE_NOTE = "Can run code on its own (editor tasks, hooks, CI, agent settings): check it."
DocumentChange = lsp.TextDocumentEdit | lsp.CreateFile | lsp.RenameFile | lsp.DeleteFile


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


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


def _doc_edit(
    uri: str, version: int | None, before: str, after: str, note: str | None = None
) -> lsp.TextDocumentEdit:
    # An editor's document text has no BOM (it writes the BOM back itself): hunks must not
    # carry one, or the file would get a second.
    if before.startswith(textfile.BOM) and after.startswith(textfile.BOM):
        before, after = before[1:], after[1:]
    edits: list[lsp.TextEdit | lsp.AnnotatedTextEdit] = list(text_edits(before, after))
    if note is not None:
        edits = [
            lsp.AnnotatedTextEdit(range=e.range, new_text=e.new_text, annotation_id=note)
            for e in edits
        ]
    return lsp.TextDocumentEdit(
        text_document=lsp.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version),
        edits=edits,
    )


def annotations(
    change_set: ChangeSet, description: str, *, only_sensitive: bool = False
) -> dict[str, lsp.ChangeAnnotation]:
    """One annotation per file, keyed by its path: the editor asks before each is applied
    (`only_sensitive`: before each file that can run code on its own, the rest go through)."""
    line = description.strip().splitlines()[0] if description.strip() else ""
    return {
        c.path: lsp.ChangeAnnotation(
            label=c.path,
            needs_confirmation=c.sensitive or not only_sensitive,
            description=" ".join(filter(None, (SENSITIVE_NOTE if c.sensitive else "", line)))
            or None,
        )
        for c in change_set.changes
    }


def to_document_changes(
    root: Path, change_set: ChangeSet, open_docs: OpenDocs, *, annotated: bool = False
) -> list[DocumentChange]:
    """One list in the change set's order (deletes, renames, creates, modifies); `annotated`:
    every change carries its file's annotation id (the path, as `annotations` keys them)."""
    out: list[DocumentChange] = []
    for c in change_set.changes:
        uri = (root / c.path).as_uri()
        note = c.path if annotated else None
        if c.kind == "delete":
            out.append(lsp.DeleteFile(uri=uri, annotation_id=note))
        elif c.kind == "create":
            out.append(lsp.CreateFile(uri=uri, annotation_id=note))
            if c.after:
                out.append(_doc_edit(uri, None, "", c.after, note))
        elif c.kind == "rename":
            old_uri = (root / (c.old_path or c.path)).as_uri()
            out.append(lsp.RenameFile(old_uri=old_uri, new_uri=uri, annotation_id=note))
            if c.after is not None and c.after != (c.before or ""):
                out.append(_doc_edit(uri, None, c.before or "", c.after, note))
        else:
            opened = open_docs(c.path)
            version = opened[1] if opened else None
            out.append(_doc_edit(uri, version, c.before or "", c.after or "", note))
    return out


def stale_open_docs(change_set: ChangeSet, open_docs: OpenDocs) -> list[str]:
    """Open buffers that no longer hold what the agent read (closed files: check_unchanged)."""
    stale = []
    for c in change_set.changes:
        opened = open_docs(c.old_path) if c.old_path else None
        if opened is not None and opened[0] != c.before:
            stale.append(c.old_path or c.path)
    return stale
