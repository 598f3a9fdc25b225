"""The client side of `workspace/applyEdit`, for the demo and tests (editors do this themselves).

Applies `documentChanges` in order (or a `changes` map) to files on disk; positions are in the
negotiated encoding's code units (UTF-16 unless the server chose another).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Union

from lsprotocol import types as lsp
from pygls.uris import to_fs_path

from glm_lsp import textfile


def _char_units(ch: str, encoding: str) -> int:
    if encoding == "utf-8":
        return len(ch.encode("utf-8"))
    if encoding == "utf-32":
        return 1
    return 2 if ord(ch) > 0xFFFF else 1


def _offset(text: str, pos: lsp.Position, encoding: str) -> int:
    lines = text.splitlines(keepends=True)
    if pos.line >= len(lines):
        return len(text)
    offset = sum(len(line) for line in lines[: pos.line])
    units = 0
    for i, ch in enumerate(lines[pos.line]):
        if units >= pos.character:
            return offset + i
        units += _char_units(ch, encoding)
    return offset + len(lines[pos.line])


def apply_text_edits(
    text: str,
    edits: Sequence[lsp.TextEdit | lsp.AnnotatedTextEdit],
    encoding: str = "utf-16",
) -> str:
    spans = sorted(
        (
            (
                _offset(text, e.range.start, encoding),
                _offset(text, e.range.end, encoding),
                e.new_text,
            )
            for e in edits
        ),
        key=lambda s: (s[0], s[1]),
        reverse=True,
    )
    for start, end, new in spans:
        text = text[:start] + new + text[end:]
    return text


def _path(uri: str) -> Path:
    return Path(to_fs_path(uri) or uri)


# What a reviewing user takes: (path, hunk index) -> keep it; the index is None for a file
# operation (create, rename, delete) and the text edit's position within its document edit.
Keep = Callable[[Path, "int | None"], bool]


def _all(_path: Path, _index: int | None) -> bool:
    return True


def apply_workspace_edit(
    edit: lsp.WorkspaceEdit, keep: Keep = _all, encoding: str = "utf-16"
) -> tuple[bool, str | None]:
    """Apply in order; (False, reason) on the first change that cannot be done. `keep` plays
    a user reviewing an annotated edit: what it leaves out is not applied, the answer is still
    applied: true (as VS Code's Refactor Preview answers)."""
    document_changes = list(edit.document_changes or [])
    for uri, text_edits in (edit.changes or {}).items():  # the form without documentChanges
        identifier = lsp.OptionalVersionedTextDocumentIdentifier(uri=uri, version=None)
        document_changes.append(lsp.TextDocumentEdit(text_document=identifier, edits=text_edits))
    for change in document_changes:
        if not isinstance(change, lsp.TextDocumentEdit):
            target = change.new_uri if isinstance(change, lsp.RenameFile) else change.uri
            if not keep(_path(target), None):
                continue
        if isinstance(change, lsp.CreateFile):
            path = _path(change.uri)
            if path.exists():
                return False, f"{path} already exists"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("", encoding="utf-8")
        elif isinstance(change, lsp.RenameFile):
            new = _path(change.new_uri)
            if new.exists():
                return False, f"{new} already exists"
            new.parent.mkdir(parents=True, exist_ok=True)
            _path(change.old_uri).rename(new)
        elif isinstance(change, lsp.DeleteFile):
            path = _path(change.uri)
            if not path.exists():
                return False, f"{path} does not exist"
            path.unlink()
        else:
            path = _path(change.text_document.uri)
            edits = [
                e
                for i, e in enumerate(change.edits)
                if isinstance(e, (lsp.TextEdit, lsp.AnnotatedTextEdit)) and keep(path, i)
            ]
            if not edits and change.edits:
                continue  # the user left all of this file
            if not path.is_file():
                return False, f"{path} does not exist"
            # As an editor does: the BOM kept aside, line endings as they are.
            text = path.read_bytes().decode("utf-8")
            bom = textfile.BOM if text.startswith(textfile.BOM) else ""
            new = bom + apply_text_edits(text.removeprefix(bom), edits, encoding)
            path.write_bytes(new.encode("utf-8"))
    return True, None


def client_converter() -> Any:
    """A pygls client's converter (its `converter_factory`) with the CodeAction fix below."""
    from pygls.protocol import default_converter

    converter = default_converter()
    fix_code_action_decoding(converter)
    return converter


def fix_code_action_decoding(converter: Any) -> None:
    """lsprotocol decodes any object with a "command" key as a Command, even a CodeAction whose
    command is an object; editors look at the type of that key, and so do the demo and tests."""

    def hook(obj: Any, _type: Any) -> lsp.Command | lsp.CodeAction:
        is_command = isinstance(obj.get("command"), str)
        return converter.structure(obj, lsp.Command if is_command else lsp.CodeAction)

    # typing.Union on purpose: the key must equal the one lsprotocol registered
    converter.register_structure_hook(Union[lsp.Command, lsp.CodeAction], hook)  # noqa: UP007
