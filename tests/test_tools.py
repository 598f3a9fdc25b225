"""The model-facing tools: confinement, overlay reads and writes, helpful edit errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from glm_lsp.agent.edits import Overlay
from glm_lsp.agent.files import Workspace
from glm_lsp.agent.tools import ToolBox
from glm_lsp.workspace import WorkspaceIndex


@pytest.fixture
def box(tmp_path: Path) -> ToolBox:
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.py").write_text(
        "def foo():\n    return 1\n\n\ndef bar():\n    return foo()\n"
    )
    (root / "notes.txt").write_text("x = 1\nx = 1\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    outside = tmp_path / "secret.txt"
    outside.write_text("TOP SECRET")
    os.symlink(outside, root / "link.txt")
    os.symlink(tmp_path, root / "escape")
    os.symlink(root / "src", root / "inner")  # a link that stays inside is fine
    buffers = {"src/a.py": ("def foo():\n    return 2  # unsaved\n", 7)}
    ws = Workspace(root, root / ".glm-lsp", lambda rel: buffers.get(rel))
    index = WorkspaceIndex(root)
    index.scan()
    return ToolBox(ws, index, Overlay(ws))


HOSTILE = [
    ("read_file", {"path": "../secret.txt"}),
    ("read_file", {"path": "src/../../secret.txt"}),
    ("read_file", {"path": "/etc/passwd"}),
    ("read_file", {"path": "~/.ssh/id_rsa"}),
    ("read_file", {"path": "link.txt"}),
    ("read_file", {"path": "escape/secret.txt"}),
    ("write_file", {"path": "../evil.py", "content": "x"}),
    ("write_file", {"path": "escape/evil.py", "content": "x"}),
    ("write_file", {"path": ".git/hooks/pre-commit", "content": "x"}),
    ("write_file", {"path": ".glm-lsp/thinking.jsonl", "content": "x"}),
    ("edit_file", {"path": "link.txt", "old_text": "TOP", "new_text": "NOT"}),
    ("rename_file", {"path": "src/a.py", "new_path": "../a.py"}),
    ("rename_file", {"path": "link.txt", "new_path": "mine.txt"}),
    ("delete_file", {"path": "escape/secret.txt"}),
    ("list_files", {"path": ".."}),
    ("search", {"pattern": "SECRET", "path": "escape"}),
]


@pytest.mark.parametrize(("tool", "args"), HOSTILE)
def test_hostile_paths_get_a_clear_error(
    box: ToolBox, tool: str, args: dict, tmp_path: Path
) -> None:
    result = box.run(tool, args)
    assert result.startswith("Error:"), result
    assert "TOP SECRET" not in result
    assert (tmp_path / "secret.txt").read_text() == "TOP SECRET"
    assert not box.overlay.change_set()


def test_reads_prefer_buffers_then_disk_then_pending_edits(box: ToolBox) -> None:
    assert "unsaved" in box.run("read_file", {"path": "src/a.py"})
    assert box.run("read_file", {"path": "inner/a.py"}).startswith("def foo")
    box.run("write_file", {"path": "src/new.py", "content": "NEW = 1\n"})
    assert box.run("read_file", {"path": "src/new.py"}) == "NEW = 1\n"
    assert "src/new.py" in box.run("list_files", {"glob": "*.py"}).splitlines()
    assert "src/new.py:1: NEW = 1" in box.run("search", {"pattern": "NEW"})
    box.run("delete_file", {"path": "notes.txt"})
    assert "notes.txt" not in box.run("list_files", {})
    assert box.run("read_file", {"path": "notes.txt"}).startswith("Error:")


def test_edit_file_needs_exactly_one_match(box: ToolBox) -> None:
    many = box.run("edit_file", {"path": "notes.txt", "old_text": "x = 1", "new_text": "y"})
    assert "occurs 2 times" in many and "lines 1, 2" in many
    none = box.run("edit_file", {"path": "src/a.py", "old_text": "def fooo():", "new_text": "x"})
    assert "not found" in none and "1: def foo():" in none
    ok = box.run("edit_file", {"path": "src/a.py", "old_text": "return 2", "new_text": "return 3"})
    assert ok.startswith("edited 'src/a.py'")
    change = box.overlay.change_set().changes[0]
    assert (change.kind, change.version) == ("modify", 7)
    assert "return 3" in change.after


def test_large_files_are_truncated_and_binary_refused(box: ToolBox) -> None:
    root = box.ws.root
    (root / "big.txt").write_text("".join(f"line {i}\n" for i in range(300_000)))  # ~3.5 MB
    result = box.run("read_file", {"path": "big.txt"})
    assert len(result) < 70_000 and "[truncated:" in result
    (root / "blob.bin").write_bytes(b"\x00\x01\x02" * 100)
    assert "binary" in box.run("read_file", {"path": "blob.bin"})


def test_rename_and_overlay_change_set_order(box: ToolBox) -> None:
    box.run("rename_file", {"path": "notes.txt", "new_path": "docs/notes.txt"})
    box.run("write_file", {"path": "notes.txt", "content": "fresh\n"})
    box.run("delete_file", {"path": "src/a.py"})
    kinds = [(c.kind, c.path) for c in box.overlay.change_set().changes]
    assert kinds == [("delete", "src/a.py"), ("rename", "docs/notes.txt"), ("create", "notes.txt")]


def test_unknown_tool_and_bad_arguments(box: ToolBox) -> None:
    assert "there is no tool 'rm'" in box.run("rm", {})
    assert "bad arguments for read_file" in box.run("read_file", {"file": "x"})


def test_the_edit_gate_asks_one_change_per_call_and_takes_a_rejected_one_back(
    box: ToolBox,
) -> None:
    from glm_lsp.agent.approval import EditGate, Verdict

    asked: list[tuple[str, str, str | None, str | None]] = []

    def approve(step, call_id, so_far):
        asked.append((step.kind, step.path, step.old_path, step.after))
        return Verdict(step.kind != "delete", f"{call_id}: {step.kind}")

    gate = EditGate(box.overlay, approve)
    run = lambda name, **args: gate.run(lambda: box.run(name, args), name)  # noqa: E731
    assert run("rename_file", path="notes.txt", new_path="n.txt").endswith("rename_file: rename")
    assert (
        run("write_file", path="n.txt", content="x = 1\nx = 1\n") == "overwrote 'n.txt' (2 lines)"
    )
    assert run("delete_file", path="n.txt") == "Error: delete_file: delete"
    assert run("read_file", path="nope.txt").startswith("Error:")  # failed: nothing asked
    assert asked == [
        ("rename", "n.txt", "notes.txt", "x = 1\nx = 1\n"),
        ("delete", "n.txt", "n.txt", None),
    ]
    # The rejected delete was taken back: the approved rename is all that is pending.
    assert [(c.kind, c.path) for c in box.overlay.change_set().changes] == [("rename", "n.txt")]
    assert [(r.path, r.applied) for r in gate.reviews] == [("n.txt", True), ("n.txt", False)]
