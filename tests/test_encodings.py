"""Line endings, BOMs and encodings: an edit changes only the bytes it means to, in the tools, on
disk through `glm-lsp run --apply`, and back through `glm-lsp undo`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glm_lsp.agent.edits import Overlay, apply_to_disk, check_unchanged
from glm_lsp.agent.files import Workspace
from glm_lsp.agent.tools import ToolBox
from glm_lsp.glm.parse import tool_call_text
from glm_lsp.workspace import WorkspaceIndex

CRLF = b"def foo():\r\n    return 1\r\n\r\n\r\ndef bar():\r\n    return foo()\r\n"
BOM = b"\xef\xbb\xbfimport os\nprint('h\xc3\xa9')\n"
LATIN1 = "# Caf\xe9 cr\xe8me br\xfbl\xe9e\nname = 'Jos\xe9'\nprice = 4\n".encode("latin-1")
MIXED = b"one\r\ntwo\nthree\r\n"


def make_box(root: Path) -> ToolBox:
    ws = Workspace(root, root / ".glm-lsp")
    index = WorkspaceIndex(root)
    index.scan()
    return ToolBox(ws, index, Overlay(ws))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    for name, data in {
        "crlf.py": CRLF,
        "bom.py": BOM,
        "latin1.py": LATIN1,
        "mixed.txt": MIXED,
    }.items():
        (ws / name).write_bytes(data)
    return ws


def applied(box: ToolBox, root: Path) -> None:
    changes = box.overlay.change_set()
    assert check_unchanged(root, changes) == []  # a CRLF file is not "changed on disk"
    apply_to_disk(root, changes, root / ".glm-lsp")


def test_crlf_file_reads_as_lf_and_an_lf_edit_keeps_crlf(root: Path) -> None:
    box = make_box(root)
    shown = box.run("read_file", {"path": "crlf.py"})
    assert shown == CRLF.decode().replace("\r\n", "\n")
    assert box.run(
        "edit_file", {"path": "crlf.py", "old_text": "return 1", "new_text": "x = 1\nreturn x"}
    ).startswith("edited 'crlf.py': lines 2-2")
    multi = {"path": "crlf.py", "old_text": "def bar():\n    return foo()\n", "new_text": "Z\n"}
    assert box.run("edit_file", multi).startswith("edited 'crlf.py': lines 6-8")
    applied(box, root)
    assert (root / "crlf.py").read_bytes() == (
        b"def foo():\r\n    x = 1\r\nreturn x\r\n\r\n\r\nZ\r\n"
    )


def test_bom_is_kept_and_never_shown(root: Path) -> None:
    box = make_box(root)
    assert box.run("read_file", {"path": "bom.py"}) == "import os\nprint('hé')\n"
    assert "bom.py:1: import os" in box.run("search", {"pattern": "import"})
    box.run("edit_file", {"path": "bom.py", "old_text": "import os\n", "new_text": "import sys\n"})
    box.run("write_file", {"path": "crlf.py", "content": "a\nb\n"})  # overwrite keeps CRLF
    applied(box, root)
    assert (root / "bom.py").read_bytes() == BOM.replace(b"import os", b"import sys")
    assert (root / "crlf.py").read_bytes() == b"a\r\nb\r\n"


def test_mixed_line_endings_keep_each_line_its_own(root: Path) -> None:
    box = make_box(root)
    box.run("edit_file", {"path": "mixed.txt", "old_text": "two\nthree\n", "new_text": "2\n3\n"})
    applied(box, root)
    assert (root / "mixed.txt").read_bytes() == b"one\r\n2\n3\n"


def test_a_latin1_file_is_read_decoded_and_never_written(root: Path) -> None:
    box = make_box(root)
    shown = box.run("read_file", {"path": "latin1.py"})
    assert "\ufffd" not in shown and "price = 4" in shown
    assert "encoded as" in shown.splitlines()[0] and "does not edit" in shown.splitlines()[0]
    for tool, args in [
        ("edit_file", {"path": "latin1.py", "old_text": "price = 4", "new_text": "price = 5"}),
        ("write_file", {"path": "latin1.py", "content": "price = 5\n"}),
        ("rename_file", {"path": "latin1.py", "new_path": "moved.py"}),
        ("delete_file", {"path": "latin1.py"}),
    ]:
        result = box.run(tool, args)
        assert result.startswith("Error: 'latin1.py' is encoded as"), result
        assert "only UTF-8" in result
    assert not box.overlay.change_set()
    assert (root / "latin1.py").read_bytes() == LATIN1


@pytest.mark.parametrize(
    "data",
    [b"caf\xe9 na\xefve r\xe9sum\xe9\n", LATIN1, b"Gr\xfc\xdfe aus K\xf6ln\n"],
    ids=["short", "python", "german"],
)
def test_a_latin1_file_is_named_cp1252_and_shown_as_written(root: Path, data: bytes) -> None:
    """Short Western text fits several code pages equally well; charset-normalizer's first pick
    was cp1250 or cp1006 (naďve), while cp1252 (latin-1's superset) reads it as written."""
    (root / "western.txt").write_bytes(data)
    first, _, text = make_box(root).run("read_file", {"path": "western.txt"}).partition("\n")
    assert first.startswith("[western.txt is encoded as cp1252:"), first
    assert data.decode("latin-1") in text


def test_an_ambiguous_old_text_report_is_short_and_fast(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("x\n" * 100_000)
    box = make_box(tmp_path)
    start = time.monotonic()
    result = box.run("edit_file", {"path": "big.txt", "old_text": "x", "new_text": "y"})
    assert time.monotonic() - start < 2.0  # 14.7 s before: a line count per occurrence
    assert result.startswith("Error: old_text occurs 100000 times in 'big.txt'")
    assert "first at lines 1, 2, 3," in result and len(result) < 400


def test_write_file_content_is_capped(tmp_path: Path) -> None:
    box = make_box(tmp_path)
    result = box.run("write_file", {"path": "huge.txt", "content": "x" * 2_000_001})
    assert result.startswith("Error: content is 2,000,001 characters") and len(result) < 300
    assert not box.overlay.change_set()


# -- through the real CLI ----------------------------------------------------------------------
EDITS = [
    "Edit all four.</think>"
    + tool_call_text(
        "edit_file",
        {
            "path": "crlf.py",
            "old_text": "def foo():\n    return 1\n",
            "new_text": "def foo():\n    return 2\n",
        },
    )
    + tool_call_text("edit_file", {"path": "bom.py", "old_text": "os", "new_text": "sys"})
    + tool_call_text("edit_file", {"path": "latin1.py", "old_text": "4", "new_text": "5"})
    + tool_call_text("write_file", {"path": "mixed.txt", "content": "uno\ndos\n"}),
    "Done.</think>Edited them.",
]


def glm_lsp(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "glm_lsp.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def test_run_apply_then_undo_are_byte_exact(root: Path, tiny_model_dir: Path) -> None:
    before = {p.name: p.read_bytes() for p in root.iterdir()}
    replies = root.parent / "replies.json"
    replies.write_text(json.dumps(EDITS))
    out = glm_lsp(
        "run", str(root), "edit", "--model", str(tiny_model_dir), "--scripted-replies",
        str(replies), "--apply", "--no-persist-kv-cache",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "edit: 3 file(s), applied" in out.stderr
    assert (root / "crlf.py").read_bytes() == CRLF.replace(b"return 1", b"return 2")
    assert (root / "bom.py").read_bytes() == BOM.replace(b"import os", b"import sys")
    assert (root / "latin1.py").read_bytes() == LATIN1  # refused at tool time, untouched
    mixed = (root / "mixed.txt").read_bytes()
    assert mixed == b"uno\r\ndos\r\n"  # overwritten in the file's (mostly CRLF) style
    (record,) = [json.loads(x) for x in (root / ".glm-lsp" / "thinking.jsonl").open()]
    results = [m["content"] for m in record["messages"] if m["role"] == "tool"]
    assert results[2].startswith("Error: 'latin1.py' is encoded as"), results

    undone = glm_lsp("undo", str(root))
    assert undone.returncode == 0, undone.stderr
    assert {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()} == {
        k: v for k, v in before.items() if k != ".glm-lsp"
    }
    again = glm_lsp("undo", str(root))
    assert again.returncode == 3 and "nothing to undo" in again.stderr
