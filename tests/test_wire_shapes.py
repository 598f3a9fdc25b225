"""The VS Code extension's unit tests read a real server answer, so the two cannot drift apart.

`editors/vscode/src/test/fixtures/explain-result.json` is a glm.explain result as the server sends
it; this test checks the live server still answers in that shape (keys and value types), and
that its answers to the other commands validate against the generated JSON schema.
Run with GLM_LSP_WRITE_FIXTURES=1 to rewrite the fixture from the live answer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from glm_lsp.glm.parse import tool_call_text
from glm_lsp.wire.schema import schema
from tests.test_server import command, model, open_doc, server  # noqa: F401  (model: fixture)

FIXTURE = (
    Path(__file__).resolve().parents[1] / "editors/vscode/src/test/fixtures/explain-result.json"
)
REPLIES = [
    "The question is about foo; read it first.</think>"
    + tool_call_text("read_file", {"path": "pkg/a.py"}),
    "foo doubles its argument.</think>`foo(x)` returns `2 * x`.",
]


def shape(value: Any) -> Any:
    """Keys and JSON types, not values (token counts and timings differ run to run)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return "number" if isinstance(value, (int, float)) else type(value).__name__


async def test_explain_result_matches_the_extension_fixture(tmp_path: Path, model: Path) -> None:  # noqa: F811
    async with server(tmp_path, model, REPLIES) as (client, _rec, root):
        uri = open_doc(client, root, "pkg/a.py")
        result = await command(client, "glm.explain", {"uri": uri, "thinking": "enabled"})
        live = {
            "glm.explain": result,
            "glm.status": await command(client, "glm.status", {}),
            "glm.thinking.show": await command(client, "glm.thinking.show", {}),
            "glm.cancel": await command(client, "glm.cancel", {}),
            "glm.undo": await command(client, "glm.undo", {}),
        }
    # Every live answer is what the schema (generated from the wire models) says it is.
    for name, answer in live.items():
        ref = schema()["x-commands"][name]["result"]
        Draft202012Validator({**schema(), **ref}).validate(answer)
    assert result["reasoning"] == [
        "The question is about foo; read it first.",
        "foo doubles its argument.",
    ]
    if os.environ.get("GLM_LSP_WRITE_FIXTURES"):
        FIXTURE.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    assert shape(result) == shape(json.loads(FIXTURE.read_text(encoding="utf-8")))
