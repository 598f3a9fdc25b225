"""Refactors any LSP client runs whole from its code-action menu (issue 27.3): the codeActions
setting's instructions, and an instruction written in the code as a `GLM:` comment, which the
edit then removes. A plain client has no prompt box, so "GLM: Refactor…" alone failed there."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types as lsp

from glm_lsp.agent.instruction_comments import instruction_comments, without_comment
from glm_lsp.config import Settings, SettingsError
from glm_lsp.glm.parse import tool_call_text
from glm_lsp.memory.thinking_log import ThinkingLog
from tests.test_server import command, open_doc, server, until

TOTAL_PY = "# GLM: sum the squares\ndef total(xs):\n    return sum(xs)\n"
SQUARES = [
    "Square each item.</think>"
    + tool_call_text(
        "edit_file",
        {"path": "pkg/total.py", "old_text": "sum(xs)", "new_text": "sum(x * x for x in xs)"},
    ),
    "Done.</think>total now sums the squares.",
]


async def test_whole_refactors_from_settings_and_from_a_glm_comment(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    root = tmp_path / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "total.py").write_text(TOTAL_PY)
    # A bad entry: reported by name, and codeActions keeps its default.
    init = {"glm": {"codeActions": [{"label": "Tidy", "instruction": "Tidy it."}, {"label": "X"}]}}
    async with server(tmp_path, tiny_model_dir, SQUARES, root=root, init_options=init) as (
        client,
        rec,
        _root,
    ):
        await until(lambda: client.messages)
        (message,) = client.messages
        assert message.message.startswith(
            'glm.codeActions[1] ({"label": "X"}): instruction is missing'
        )
        assert message.message.endswith("glm.codeActions keeps its default")

        uri = open_doc(client, root, "pkg/total.py")
        actions = await client.text_document_code_action_async(
            lsp.CodeActionParams(
                lsp.TextDocumentIdentifier(uri),
                lsp.Range(lsp.Position(2, 4), lsp.Position(2, 4)),  # in total: widened to it
                lsp.CodeActionContext(diagnostics=[]),
            )
        )
        assert [a.title for a in actions] == [
            "GLM: Explain",
            "GLM: Refactor…",
            "GLM: sum the squares",
            "GLM: Simplify",
            "GLM: Add docstrings",
            "GLM: Add type hints",
            "GLM: Write tests for this",
        ]
        assert "instruction" not in actions[1].command.arguments[0]  # the plugins ask for it
        simplify = actions[3].command
        assert simplify.arguments[0]["instruction"] == Settings().codeActions[0].instruction
        squares = actions[2]
        assert squares.kind == lsp.CodeActionKind.RefactorRewrite
        assert squares.command.command == "glm.refactor"
        arg = squares.command.arguments[0]
        assert arg["instruction"] == "sum the squares" and arg["range"]["start"]["line"] == 1

        result = await command(client, "glm.refactor", arg)
        assert result["applied"] is True, result
        # One edit: the model's change, and the comment it left taken out in the same change.
        (edit,) = rec.edits
        assert [Path(c.text_document.uri).name for c in edit.document_changes] == ["total.py"]
        assert (root / "pkg" / "total.py").read_text() == (
            "def total(xs):\n    return sum(x * x for x in xs)\n"
        )
    (record,) = ThinkingLog(Settings().state_dir(root)).records()
    told = record["messages"][0]["content"]
    assert "Instruction: sum the squares" in told
    assert "`GLM:` comment on line 1 of pkg/total.py" in told


def test_glm_comments_in_each_languages_comment_syntax() -> None:
    text = "\n".join(
        [
            "# GLM: python",  # 0: above the selection, in its run of comment lines
            "// not an instruction",
            "def f():",  # 2: the selection starts here
            "    // GLM:  go or rust  ",
            "    -- GLM: lua",
            "    ;; GLM: lisp",
            "    /* GLM: c block */",
            "    <!-- GLM: html -->",
            "    # glm: lower case is a comment about glm",
            "    # GLM:",
            "    x = 'GLM: in a string'",
            "# GLM: past the selection",
        ]
    )
    found = instruction_comments(text, 2, 10)
    assert [(c.line, c.instruction) for c in found] == [
        (0, "python"),
        (3, "go or rust"),
        (4, "lua"),
        (5, "lisp"),
        (6, "c block"),
        (7, "html"),
    ]
    assert instruction_comments("x = 1\n\n# GLM: apart\ny = 2\n", 3, 3)[0].line == 2
    assert instruction_comments("# GLM: gap\n\ny = 2\n", 2, 2) == []  # a blank line between
    assert instruction_comments("# GLM: x", 2**31 - 1, 2**31 - 1) == []  # past the end
    # The comment as written goes, wherever the edit moved it; CRLF files keep their breaks.
    edited = "import x\r\n# GLM: python\r\ndef f():\r\n"
    assert without_comment(edited, found[0]) == "import x\r\ndef f():\r\n"
    assert without_comment("def f():\n", found[0]) is None


def test_code_actions_setting_shape() -> None:
    mine = Settings().merged({"codeActions": [{"label": " Tidy ", "instruction": "Tidy it."}]})
    assert [(a.label, a.instruction) for a in mine.codeActions] == [("Tidy", "Tidy it.")]
    assert Settings().merged({"codeActions": []}).codeActions == ()  # none but the built-ins
    for bad, named in [
        ("Simplify", 'glm.codeActions is "Simplify"; accepted values: a list of'),
        (["Simplify"], 'glm.codeActions[0] is "Simplify"; accepted values: an object'),
        ([{"label": "A", "instruction": "B", "kind": "x"}], "glm.codeActions[0] has unknown keys"),
        ([{"label": "", "instruction": "B"}], 'glm.codeActions[0] ({"label": "", "ins'),
    ]:
        with pytest.raises(SettingsError) as err:
            Settings().merged({"codeActions": bad})
        assert str(err.value).startswith(named) and err.value.key == "codeActions"
