"""Which documents the server works on: local file URIs inside a workspace folder, in any
spelling of the scheme; code actions are not offered where the commands would refuse."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException

from tests.test_server import (  # noqa: F401  (model: fixture)
    EXPLAIN,
    WHOLE_REFACTORS,
    command,
    model,
    server,
)


async def actions_for(client, uri: str) -> list[lsp.CodeAction]:
    return await client.text_document_code_action_async(
        lsp.CodeActionParams(
            lsp.TextDocumentIdentifier(uri),
            lsp.Range(lsp.Position(0, 0), lsp.Position(1, 0)),
            lsp.CodeActionContext(diagnostics=[]),
        )
    )


async def test_no_code_actions_where_the_commands_refuse(tmp_path: Path, model: Path) -> None:  # noqa: F811
    async with server(tmp_path, model, []) as (client, _rec, root):
        a_path = (root / "pkg" / "a.py").as_posix()
        refused = [
            "untitled:Untitled-1",
            f"vscode-notebook-cell:{a_path}#W0sZmlsZQ%3D%3D",
            f"file://otherhost{a_path}",
            (tmp_path / "elsewhere.py").as_uri(),
        ]
        for uri in refused:
            assert len(await actions_for(client, uri)) == 0, uri
        offered = await actions_for(client, (root / "pkg" / "a.py").as_uri())
        assert [a.title for a in offered] == ["GLM: Explain", "GLM: Refactor…", *WHOLE_REFACTORS]


async def test_an_upper_case_scheme_is_a_file_uri(tmp_path: Path, model: Path) -> None:  # noqa: F811
    async with server(tmp_path, model, [EXPLAIN]) as (client, _rec, root):
        upper = "FILE://" + (root / "pkg" / "a.py").as_posix()
        assert [a.title for a in await actions_for(client, upper)] == [
            "GLM: Explain",
            "GLM: Refactor…",
            *WHOLE_REFACTORS,
        ]
        explained = await command(client, "glm.explain", {"uri": upper})
        assert explained["text"] == EXPLAIN


async def test_a_binary_file_is_named_as_such_not_as_missing(tmp_path: Path, model: Path) -> None:  # noqa: F811
    async with server(tmp_path, model, []) as (client, _rec, root):
        (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
        with pytest.raises(JsonRpcException) as err:
            await command(client, "glm.explain", {"uri": (root / "logo.png").as_uri()})
        assert "is not a text file" in err.value.message
        with pytest.raises(JsonRpcException) as err:
            await command(client, "glm.explain", {"uri": (root / "gone.py").as_uri()})
        assert "does not exist" in err.value.message
