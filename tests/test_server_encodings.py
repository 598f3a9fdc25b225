"""A real server editing closed CRLF, BOM and latin-1 files: glm.refactor used to refuse every CRLF
file as "changed since the agent read them"; now the edit keeps the file's bytes, glm.undo puts
them back exactly, and a latin-1 file is never sent to the editor."""

from __future__ import annotations

from pathlib import Path

from glm_lsp.glm.parse import tool_call_text
from tests.test_server import command, server

CRLF = b"def foo(x):\r\n    return 2 * x\r\n"
BOM = b"\xef\xbb\xbfNAME = 'caf\xc3\xa9'\r\nSIZE = 1\r\n"
LATIN1 = "NAME = 'caf\xe9'\nSIZE = 1\n".encode("latin-1")
REPLIES = [
    "Read them.</think>" + tool_call_text("read_file", {"path": "crlf.py"}),
    "Edit them.</think>"
    + tool_call_text(
        "edit_file",
        {"path": "crlf.py", "old_text": "def foo(x):\n    return 2 * x\n", "new_text": "def foo(x):\n    return x + x\n"},
    )
    + tool_call_text("edit_file", {"path": "bom.py", "old_text": "SIZE = 1", "new_text": "SIZE = 2\nMORE = 3"})
    + tool_call_text("edit_file", {"path": "latin1.py", "old_text": "SIZE = 1", "new_text": "SIZE = 2"}),
    "Done.</think>Edited two files; latin1.py is not UTF-8.",
]  # fmt: skip


async def test_closed_crlf_and_bom_files_are_edited_and_undone_byte_exactly(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    for name, data in {"crlf.py": CRLF, "bom.py": BOM, "latin1.py": LATIN1}.items():
        (root / name).write_bytes(data)
    async with server(tmp_path, tiny_model_dir, REPLIES, root=root) as (client, rec, _root):
        uri = (root / "crlf.py").as_uri()
        result = await command(client, "glm.refactor", {"uri": uri, "instruction": "simplify"})
        assert result["applied"] is True, result
        assert sorted(c["uri"].rsplit("/", 1)[1] for c in result["changes"]) == [
            "bom.py",
            "crlf.py",
        ]
        assert (root / "crlf.py").read_bytes() == CRLF.replace(b"2 * x", b"x + x")
        assert (root / "bom.py").read_bytes() == BOM.replace(b"SIZE = 1", b"SIZE = 2\r\nMORE = 3")
        assert (root / "latin1.py").read_bytes() == LATIN1
        sent = [e.text_document.uri for e in rec.edits[0].document_changes]
        assert all("latin1" not in u for u in sent)

        undone = await command(client, "glm.undo", {})
        assert undone["applied"] is True, undone
        assert (root / "crlf.py").read_bytes() == CRLF
        assert (root / "bom.py").read_bytes() == BOM
