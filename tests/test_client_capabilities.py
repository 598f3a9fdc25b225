"""Edits honour what the client declared: a file operation is never sent to a client without the
matching `resourceOperations` (it would drop it and still answer applied: true), a client
without `documentChanges` gets `changes`, and columns count in the negotiated encoding."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types as lsp
from pytest_lsp import client_capabilities

from glm_lsp.glm.parse import tool_call_text
from tests.test_server import A_PY, command, server

C_PY = "C = 1\n"
CREATE_C = [
    "Add c.py.</think>" + tool_call_text("write_file", {"path": "pkg/c.py", "content": C_PY}),
    "Done.</think>Added pkg/c.py.",
]
CREATE_D = [
    "Add d.py.</think>" + tool_call_text("write_file", {"path": "pkg/d.py", "content": "D = 1\n"}),
    "Done.</think>Added pkg/d.py.",
]
# A last line without a newline, with a character outside the BMP: the one column that is not 0
# (the end of that line) is 7 code points, 8 UTF-16 units and 10 UTF-8 bytes.
LAST = "x = '\U0001f600'"
SMILE = A_PY + LAST
EDIT_SMILE = [
    "Double it.</think>"
    + tool_call_text(
        "edit_file", {"path": "pkg/a.py", "old_text": LAST, "new_text": "x = '\U0001f600' * 2"}
    ),
    "Done.</think>Doubled x.",
]


def _text_edits(edit: lsp.WorkspaceEdit) -> list[lsp.TextEdit]:
    if edit.changes is not None:
        return [e for edits in edit.changes.values() for e in edits]
    return [
        e
        for c in edit.document_changes or []
        if isinstance(c, lsp.TextDocumentEdit)
        for e in c.edits
        if isinstance(e, lsp.TextEdit)
    ]


async def test_eglot_without_resource_operations_never_gets_a_file_operation(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # A client that takes file operations creates pkg/c.py ...
    async with server(tmp_path, tiny_model_dir, CREATE_C) as (client, _rec, root):
        uri = (root / "pkg" / "a.py").as_uri()
        created = await command(client, "glm.refactor", {"uri": uri, "instruction": "add c"})
        assert created["applied"] is True, created
    c_py = root / "pkg" / "c.py"
    assert c_py.read_text() == C_PY
    (root / "pkg" / "a.py").write_text(SMILE)

    # ... then Emacs's eglot (documentChanges, no resourceOperations, UTF-32 first) undoes it.
    eglot = client_capabilities("emacs")
    replies = [*CREATE_D, *EDIT_SMILE]
    async with server(tmp_path, tiny_model_dir, replies, root=root, capabilities=eglot) as (
        client,
        rec,
        _root,
    ):
        assert rec.encoding == "utf-32"
        undone = await command(client, "glm.undo", {})
        assert undone["applied"] is False
        assert undone["failureReason"].startswith(
            "this edit deletes pkg/c.py, but the editor did not declare "
            "workspace.workspaceEdit.resourceOperations 'delete'; nothing was written"
        )
        assert c_py.read_text() == C_PY

        uri = (root / "pkg" / "a.py").as_uri()
        refused = await command(client, "glm.refactor", {"uri": uri, "instruction": "add d"})
        assert refused["applied"] is False
        assert "creates pkg/d.py" in refused["failureReason"]
        assert "resourceOperations 'create'" in refused["failureReason"]
        assert rec.edits == [] and not (root / "pkg" / "d.py").exists()

        # A text edit lands, its end column counted in code points.
        doubled = await command(client, "glm.refactor", {"uri": uri, "instruction": "double x"})
        assert doubled["applied"] is True, doubled
        assert (root / "pkg" / "a.py").read_text() == A_PY + "x = '\U0001f600' * 2"
        (edit,) = rec.edits
        assert edit.document_changes and edit.changes is None
        assert [e.range.end.character for e in _text_edits(edit)] == [7]


async def test_client_without_document_changes_gets_changes_in_its_encoding(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    caps = lsp.ClientCapabilities(
        general=lsp.GeneralClientCapabilities(
            position_encodings=[lsp.PositionEncodingKind.Utf8, lsp.PositionEncodingKind.Utf16]
        ),
        workspace=lsp.WorkspaceClientCapabilities(
            apply_edit=True, workspace_edit=lsp.WorkspaceEditClientCapabilities()
        ),
    )
    async with server(tmp_path, tiny_model_dir, EDIT_SMILE, capabilities=caps) as (
        client,
        rec,
        root,
    ):
        assert rec.encoding == "utf-8"
        a_py = root / "pkg" / "a.py"
        a_py.write_text(SMILE)
        uri = a_py.as_uri()
        doubled = await command(client, "glm.refactor", {"uri": uri, "instruction": "double x"})
        assert doubled["applied"] is True, doubled
        # The test client applies UTF-8 columns: a UTF-16 count would leave "'" behind.
        assert a_py.read_text() == A_PY + "x = '\U0001f600' * 2"
        undone = await command(client, "glm.undo", {})
        assert undone["applied"] is True, undone
        assert a_py.read_text() == SMILE
        for edit in rec.edits:
            assert edit.document_changes is None and list(edit.changes or {}) == [uri]
        assert [e.range.end.character for e in _text_edits(rec.edits[0])] == [10]
