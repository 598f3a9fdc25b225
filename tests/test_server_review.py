"""Review before apply: annotated edits, what landed per file and hunk, undo of the landed part,
retry of the rest, and the next request told what the user rejected. A real server over LSP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types as lsp

from glm_lsp.glm.parse import tool_call_text
from glm_lsp.server.client_edits import apply_workspace_edit
from tests.test_server import A_PY, B_PY, REFACTOR, command, open_doc, server
from tests.test_server_edits import change_doc

RESOURCES = [
    lsp.ResourceOperationKind.Create,
    lsp.ResourceOperationKind.Rename,
    lsp.ResourceOperationKind.Delete,
]
# What VS Code declares (it groups by label in its Refactor Preview) ...
VSCODE = lsp.WorkspaceEditClientCapabilities(
    document_changes=True,
    resource_operations=RESOURCES,
    failure_handling=lsp.FailureHandlingKind.Undo,
    normalizes_line_endings=True,
    change_annotation_support=lsp.ChangeAnnotationsSupportOptions(groups_on_label=True),
)
# ... and Neovim 0.11 with the glm_lsp plugin, which reviews the edit itself.
NEOVIM = lsp.WorkspaceEditClientCapabilities(
    document_changes=True,
    resource_operations=RESOURCES,
    change_annotation_support=lsp.ChangeAnnotationsSupportOptions(),
)
PLAIN = lsp.WorkspaceEditClientCapabilities(document_changes=True, resource_operations=RESOURCES)

A_NEW = A_PY.replace("def foo(x):", "def bar(x):").replace("return foo(1)", "return bar(1)")
A_FIRST = A_PY.replace("def foo(x):", "def bar(x):")  # the first of a.py's two hunks
B_NEW = B_PY.replace("import foo", "import bar").replace("foo(foo(x))", "bar(bar(x))")
RENAME_AB = [
    "Read a.py.</think>" + tool_call_text("read_file", {"path": "pkg/a.py"}),
    "Rename in both files.</think>"
    + tool_call_text(
        "edit_file", {"path": "pkg/a.py", "old_text": "def foo(x):", "new_text": "def bar(x):"}
    )
    + tool_call_text(
        "edit_file", {"path": "pkg/a.py", "old_text": "return foo(1)", "new_text": "return bar(1)"}
    )
    + tool_call_text(
        "edit_file", {"path": "pkg/b.py", "old_text": "import foo", "new_text": "import bar"}
    )
    + tool_call_text(
        "edit_file", {"path": "pkg/b.py", "old_text": "foo(foo(x))", "new_text": "bar(bar(x))"}
    ),
    "Done.</think>Renamed foo to bar in a.py and b.py.\n\nMore detail here.",
]
EXPLAIN = "Nothing to add."


def records(root: Path) -> list[dict[str, Any]]:
    log = root / ".glm-lsp" / "thinking.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("caps", [VSCODE, NEOVIM], ids=["vscode", "neovim"])
async def test_annotations_on_every_change(tmp_path: Path, tiny_model_dir: Path, caps) -> None:
    async with server(tmp_path, tiny_model_dir, REFACTOR, edit_caps=caps) as (client, rec, root):
        uri = (root / "pkg" / "a.py").as_uri()
        result = await command(client, "glm.refactor", {"uri": uri, "instruction": "rename"})
        assert result["applied"] is True, result
        (edit,) = rec.edits
        notes = edit.change_annotations
        assert set(notes) == {"pkg/a.py", "pkg/b.py", "pkg/c.py", "docs/notes.txt", "pkg/old.py"}
        for path, note in notes.items():
            assert note.needs_confirmation is True
            assert note.label == path
            assert note.description == "Renamed foo to bar in a.py and b.py, added c.py, " + (
                "moved notes, removed old.py."
            )
        kinds = set()
        for change in edit.document_changes:
            kinds.add(type(change).__name__)
            if isinstance(change, lsp.TextDocumentEdit):
                assert change.edits
                for text_edit in change.edits:
                    assert isinstance(text_edit, lsp.AnnotatedTextEdit)
                    assert text_edit.annotation_id in notes
            else:
                assert change.annotation_id in notes
        assert kinds == {"TextDocumentEdit", "CreateFile", "RenameFile", "DeleteFile"}
        assert all(c["applied"] is True for c in result["changes"])


@pytest.mark.parametrize(
    ("caps", "options"),
    [(PLAIN, None), (VSCODE, {"review": "direct"})],
    ids=["no-annotation-support", "review-direct"],
)
async def test_plain_edit_without_review(
    tmp_path: Path, tiny_model_dir: Path, caps, options
) -> None:
    async with server(
        tmp_path, tiny_model_dir, RENAME_AB, edit_caps=caps, init_options=options
    ) as (client, rec, root):
        uri = (root / "pkg" / "a.py").as_uri()
        result = await command(client, "glm.refactor", {"uri": uri, "instruction": "rename"})
        assert result["applied"] is True, result
        (edit,) = rec.edits
        assert edit.change_annotations is None
        for change in edit.document_changes:
            assert all(type(e) is lsp.TextEdit for e in change.edits)
        assert "applied" not in result["changes"][0]  # all or nothing: the top-level flag says


async def test_partly_taken_edit_landed_undo_retry_and_next_prompt(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """The user keeps one of a.py's two hunks (an open buffer) and rejects b.py (closed)."""
    replies = [*RENAME_AB, EXPLAIN]
    async with server(tmp_path, tiny_model_dir, replies, edit_caps=VSCODE) as (client, rec, root):
        a_path, b_path = root / "pkg" / "a.py", root / "pkg" / "b.py"
        a_uri = open_doc(client, root, "pkg/a.py", version=7)

        def review(edit: lsp.WorkspaceEdit) -> lsp.ApplyWorkspaceEditResult:
            rec.hook = None
            applied, reason = apply_workspace_edit(
                edit, lambda path, index: path == a_path and index == 0
            )
            change_doc(client, a_uri, 8, a_path.read_text())  # the buffer, as an editor sends it
            return lsp.ApplyWorkspaceEditResult(applied=applied, failure_reason=reason)

        rec.hook = review
        result = await command(client, "glm.refactor", {"uri": a_uri, "instruction": "rename"})
        assert a_path.read_text() == A_FIRST and b_path.read_text() == B_PY
        assert result["applied"] is True, result
        assert result["changes"] == [
            {"uri": a_uri, "kind": "modify", "applied": True, "hunks": {"applied": 1, "total": 2}},
            {"uri": b_path.as_uri(), "kind": "modify", "applied": False},
        ]
        (first,) = records(root)
        assert first["reviewed"] is True
        assert first["changes"] == [
            {
                "path": "pkg/a.py",
                "kind": "modify",
                "applied": True,
                "hunks": {"applied": 1, "total": 2},
            },
            {"path": "pkg/b.py", "kind": "modify", "applied": False},
        ]

        # the next request's user message names what was rejected
        await command(client, "glm.ask", {"question": "anything else?"})
        user = records(root)[-1]["messages"][0]["content"]
        assert "the user rejected the change to pkg/b.py" in user
        assert "the user took 1 of 2 hunks of the change to pkg/a.py" in user

        # undo reverts only the hunk that landed; b.py is not touched (nor refused as changed)
        undone = await command(client, "glm.undo", {})
        assert undone["applied"] is True, undone
        assert [c["uri"] for c in undone["changes"]] == [a_uri]
        assert a_path.read_text() == A_PY and b_path.read_text() == B_PY
        change_doc(client, a_uri, 9, A_PY)

        # the declined remainder is kept for glm.retry: all of b.py and a.py's second hunk
        retried = await command(client, "glm.retry", {})
        assert retried["applied"] is True, retried
        assert b_path.read_text() == B_NEW
        assert a_path.read_text() == A_PY.replace("return foo(1)", "return bar(1)")


async def test_everything_rejected_is_kept_for_retry(tmp_path: Path, tiny_model_dir: Path) -> None:
    async with server(tmp_path, tiny_model_dir, RENAME_AB, edit_caps=NEOVIM) as (client, rec, root):
        uri = (root / "pkg" / "a.py").as_uri()
        rec.hook = lambda edit: (
            setattr(rec, "hook", None),
            lsp.ApplyWorkspaceEditResult(applied=apply_workspace_edit(edit, lambda p, i: False)[0]),
        )[1]
        result = await command(client, "glm.refactor", {"uri": uri, "instruction": "rename"})
        assert result["applied"] is False
        assert result["failureReason"] == "the user rejected every change"
        assert [c["applied"] for c in result["changes"]] == [False, False]
        nothing = await command(client, "glm.undo", {})
        assert nothing["failureReason"] == "nothing to undo"
        retried = await command(client, "glm.retry", {})
        assert retried["applied"] is True, retried
        assert (root / "pkg" / "a.py").read_text() == A_NEW
        assert (root / "pkg" / "b.py").read_text() == B_NEW
