"""Change sets as an LSP WorkspaceEdit the client declared it can take, for agent edits and
glm.undo's inverses alike.

Text edits are line-level hunks against the text the agent started from, so an editor keeps
cursors and folds outside the changed lines; the one column that is not 0 (the end of a last
line without a newline) is counted in the negotiated position encoding.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lsprotocol import types as lsp

from glm_lsp import textfile
from glm_lsp.agent.edits import ChangeSet
from glm_lsp.agent.undo import OpenDocs

SENSITIVE_NOTE = "Can run code on its own (editor tasks, hooks, CI, agent settings): check it."
DocumentChange = lsp.TextDocumentEdit | lsp.CreateFile | lsp.RenameFile | lsp.DeleteFile


FILE_OPERATIONS = ("create", "rename", "delete")
Units = Callable[[str], int]  # a text's length in the negotiated position encoding


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


UNITS: dict[str, Units] = {
    "utf-8": lambda text: len(text.encode("utf-8")),
    "utf-16": utf16_len,
    "utf-32": len,
}


@dataclass(frozen=True)
class EditCapabilities:
    """What the client declared it takes in a workspace/applyEdit (LSP 3.17 defaults: neither
    documentChanges nor file operations, UTF-16 positions)."""

    document_changes: bool = False
    resource_operations: frozenset[str] = frozenset()
    position_encoding: str = "utf-16"

    @property
    def units(self) -> Units:
        return UNITS.get(self.position_encoding, utf16_len)


def unsupported(change_set: ChangeSet, caps: EditCapabilities) -> str | None:
    """One sentence naming the first file operation the client did not declare, else None: such
    an edit is never sent (a client drops what it does not know and still answers applied)."""
    for c in change_set.changes:
        if c.kind not in FILE_OPERATIONS or (
            caps.document_changes and c.kind in caps.resource_operations
        ):
            continue
        what = {
            "create": f"creates {c.path}",
            "rename": f"renames {c.old_path} to {c.path}",
            "delete": f"deletes {c.path}",
        }[c.kind]
        needed = f"workspace.workspaceEdit.resourceOperations '{c.kind}'"
        if not caps.document_changes:
            needed = f"workspace.workspaceEdit.documentChanges with {needed.split('.')[-1]}"
        return (
            f"this edit {what}, but the editor did not declare {needed}; nothing was written: "
            "ask for a change to existing files only, or use an editor (LSP client) that "
            "supports file operations"
        )
    return None


def text_edits(before: str, after: str, units: Units = utf16_len) -> list[lsp.TextEdit]:
    """Line hunks turning `before` into `after`, each range relative to `before`; `units`
    counts the one column that may not be 0."""
    old = before.splitlines(keepends=True)
    new = after.splitlines(keepends=True)
    edits = []
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        start = _line_start(old, i1, units)
        end = _line_start(old, i2, units)
        edits.append(
            lsp.TextEdit(range=lsp.Range(start=start, end=end), new_text="".join(new[j1:j2]))
        )
    return edits


def _line_start(lines: list[str], index: int, units: Units) -> lsp.Position:
    """Start of line `index`; past a last line without a newline that is the end of the text."""
    if index >= len(lines) and lines and not lines[-1].endswith(("\n", "\r")):
        return lsp.Position(line=len(lines) - 1, character=units(lines[-1]))
    return lsp.Position(line=index, character=0)


def _hunks(before: str, after: str, units: Units) -> list[lsp.TextEdit]:
    # An editor's document text has no BOM (it writes the BOM back itself): hunks must not
    # carry one, or the file would get a second.
    if before.startswith(textfile.BOM) and after.startswith(textfile.BOM):
        before, after = before[1:], after[1:]
    return text_edits(before, after, units)


def _doc_edit(
    uri: str,
    version: int | None,
    before: str,
    after: str,
    note: str | None = None,
    units: Units = utf16_len,
) -> lsp.TextDocumentEdit:
    edits: list[lsp.TextEdit | lsp.AnnotatedTextEdit] = list(_hunks(before, after, units))
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


def to_workspace_edit(
    root: Path,
    change_set: ChangeSet,
    open_docs: OpenDocs,
    caps: EditCapabilities,
    *,
    annotated: bool = False,
) -> lsp.WorkspaceEdit:
    """`documentChanges` when the client takes them, else `changes` (uri -> TextEdit[]), which
    hold text edits only: check `unsupported` first."""
    if caps.document_changes:
        return lsp.WorkspaceEdit(
            document_changes=to_document_changes(
                root, change_set, open_docs, annotated=annotated, units=caps.units
            )
        )
    changes: dict[str, list[lsp.TextEdit]] = {}
    for c in change_set.changes:
        if c.kind in FILE_OPERATIONS:  # unsupported() refused it before
            raise ValueError(f"a {c.kind} cannot be sent as `changes`")
        uri = (root / c.path).as_uri()
        changes[uri] = _hunks(c.before or "", c.after or "", caps.units)
    return lsp.WorkspaceEdit(changes=changes)


def to_document_changes(
    root: Path,
    change_set: ChangeSet,
    open_docs: OpenDocs,
    *,
    annotated: bool = False,
    units: Units = utf16_len,
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
                out.append(_doc_edit(uri, None, "", c.after, note, units))
        elif c.kind == "rename":
            old_uri = (root / (c.old_path or c.path)).as_uri()
            out.append(lsp.RenameFile(old_uri=old_uri, new_uri=uri, annotation_id=note))
            if c.after is not None and c.after != (c.before or ""):
                out.append(_doc_edit(uri, None, c.before or "", c.after, note, units))
        else:
            opened = open_docs(c.path)
            version = opened[1] if opened else None
            out.append(_doc_edit(uri, version, c.before or "", c.after or "", note, units))
    return out


def stale_open_docs(change_set: ChangeSet, open_docs: OpenDocs) -> list[str]:
    """Open buffers that no longer hold what the agent read (closed files: check_unchanged)."""
    stale = []
    for c in change_set.changes:
        opened = open_docs(c.old_path) if c.old_path else None
        if opened is not None and opened[0] != c.before:
            stale.append(c.old_path or c.path)
    return stale
