"""run_command over LSP (pytest-lsp): the permission prompt and its persisted "always", output
streamed as tool_result pieces, verification in the result, and workspace settings that try to
allow commands or turn the sandbox off changing nothing."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

from glm_lsp.glm.parse import tool_call_text
from glm_lsp.state_files import workspace_state
from tests.test_server import command, server, until

pytestmark = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and shutil.which("bwrap")),
    reason="bubblewrap is not installed",
)

REPLIES = [
    # request 1: the same command twice; the user answers "always" the first time
    "Where am I?</think>" + tool_call_text("run_command", {"command": "pwd"}),
    "Again.</think>" + tool_call_text("run_command", {"command": "pwd"}),
    "Done.</think>I looked around.",
    # request 2: a new file, a command the user denies, then verifyCommand runs on the edit
    "Write it.</think>"
    + tool_call_text("write_file", {"path": "NEW.txt", "content": "hello\n"})
    + tool_call_text("run_command", {"command": "touch ran.txt"}),
    "Denied; fine.</think>Added NEW.txt.",
]


async def test_permission_prompt_always_is_persisted_and_workspace_settings_are_refused(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    asked: list[lsp.ShowMessageRequestParams] = []
    answers = ["Always allow `pwd …`", "Deny"]

    def setup(client: LanguageClient) -> None:
        @client.feature(lsp.WINDOW_SHOW_MESSAGE_REQUEST)
        def on_request(params: lsp.ShowMessageRequestParams) -> lsp.MessageActionItem:
            asked.append(params)
            return lsp.MessageActionItem(title=answers[len(asked) - 1])

    init = {"glm": {"verifyCommand": "cat NEW.txt"}}
    async with server(tmp_path, tiny_model_dir, REPLIES, setup=setup, init_options=init) as (
        client,
        rec,
        root,
    ):
        before = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
        # A repository's settings arrive this way too: they must change nothing.
        client.workspace_did_change_configuration(
            lsp.DidChangeConfigurationParams(
                settings={"glm": {"allowCommands": ["*"], "sandbox": "off", "maxSteps": 20}}
            )
        )
        await until(lambda: client.messages)
        (message,) = client.messages
        assert message.message.startswith("glm.allowCommands, glm.sandbox ignored: settings")
        assert "--allow-command, --sandbox" in message.message

        uri = (root / "pkg" / "a.py").as_uri()
        first = await command(client, "glm.refactor", {"uri": uri, "instruction": "look"})
        assert first["failureReason"] == "the model proposed no changes"
        assert len(asked) == 1  # the second `pwd` was covered by "always"
        assert [a.title for a in asked[0].actions] == ["Allow once", "Always allow `pwd …`", "Deny"]
        assert "pwd" in asked[0].message
        state = workspace_state(root) / "permissions.json"  # the user's, not the workspace's
        assert json.loads(state.read_text()) == {"v": 1, "always": ["pwd"]}
        results = [s["text"] for s in rec.stream if s["kind"] == "tool_result"]
        # sandboxed (the shadow is mounted at the workspace's path), not "off" as the
        # workspace settings asked: pwd streams first, then the exit code
        assert results[:2] == [f"{root.resolve()}\n", "\nexit code 0"]

        second = await command(client, "glm.refactor", {"uri": uri, "instruction": "add"})
        assert len(asked) == 2 and "touch ran.txt" in asked[1].message
        denied = [s["text"] for s in rec.stream if s["kind"] == "tool_result"][-3]
        assert denied.startswith("Error: not run: the user denied")
        assert second["applied"] is True
        assert second["verification"] == {
            "command": "cat NEW.txt",
            "exitCode": 0,
            "summary": "hello",
        }
        assert (root / "NEW.txt").read_text() == "hello\n"
        after = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
        assert [p for p in after if p not in before and not p.startswith(".glm-lsp")] == ["NEW.txt"]


BUFFER_REPLIES = [
    "What does it hold?</think>" + tool_call_text("run_command", {"command": "cat pkg/a.py"}),
    "Done.</think>It holds the unsaved text.",
]


async def test_commands_see_the_unsaved_buffer_and_the_disk_file_stays(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """The agent reads open buffers first, so its commands must run against them too."""
    init = {"glm": {"allowCommands": ["cat *"]}}
    async with server(tmp_path, tiny_model_dir, BUFFER_REPLIES, init_options=init) as (
        client,
        rec,
        root,
    ):
        disk = (root / "pkg" / "a.py").read_bytes()
        uri = (root / "pkg" / "a.py").as_uri()
        client.text_document_did_open(
            lsp.DidOpenTextDocumentParams(
                lsp.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text="UNSAVED = True\r\n"
                )
            )
        )
        result = await command(client, "glm.refactor", {"uri": uri, "instruction": "look"})
        assert result["failureReason"] == "the model proposed no changes"
        results = [s["text"] for s in rec.stream if s["kind"] == "tool_result"]
        assert results == ["UNSAVED = True\r\n", "\nexit code 0"]
        assert (root / "pkg" / "a.py").read_bytes() == disk
