"""The LSP server end to end: pytest-lsp over stdio against `glm-lsp serve` with the tiny model.

Each test starts its own server with its own scripted replies (the README's Scripted replies), so what the
model "says" is fixed while tokens, KV cache, streaming and cancellation are all real.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient

from glm_lsp.glm.parse import tool_call_text
from glm_lsp.server.client_edits import apply_workspace_edit, fix_code_action_decoding

A_PY = 'def foo(x):\n    """Double x."""\n    return 2 * x\n\n\nclass Box:\n    def get(self):\n        return foo(1)\n'
B_PY = "from pkg.a import foo\n\n\ndef twice(x):\n    return foo(foo(x))\n"
OLD_PY = "# old helpers\n"
NOTES = "notes\n"
TIMEOUT = 60
# Offered for any selection besides Explain and Refactor… (the codeActions setting's defaults)
WHOLE_REFACTORS = [
    "GLM: Simplify",
    "GLM: Add docstrings",
    "GLM: Add type hints",
    "GLM: Write tests for this",
]
PLUGIN_EXPERIMENTAL = {"glm": {"stream": True}}  # what our VS Code and Neovim plugins declare


def workspace(tmp: Path) -> Path:
    root = tmp / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text(A_PY)
    (root / "pkg" / "b.py").write_text(B_PY)
    (root / "pkg" / "old.py").write_text(OLD_PY)
    (root / "notes.txt").write_text(NOTES)
    return root


class Recorder:
    """What the client saw: stream notifications, edits, and the order of events."""

    def __init__(self, decline: str | None = None) -> None:
        self.stream: list[dict[str, Any]] = []
        self.edits: list[lsp.WorkspaceEdit] = []
        self.events: list[str] = []
        self.decline = decline
        self.edit_seen = asyncio.Event()
        self.encoding = "utf-16"  # the position encoding the server chose at initialize
        # Tests that play the user mid-edit return their own answer here (None: apply as usual).
        self.hook: Callable[[lsp.WorkspaceEdit], lsp.ApplyWorkspaceEditResult | None] | None = None


@contextlib.asynccontextmanager
async def server(
    tmp: Path,
    model: Path | None,
    replies: list[str],
    *,
    root: Path | None = None,
    decline: str | None = None,
    init_options: dict[str, Any] | None = None,
    progress: bool = True,
    folders: list[Path] | None = None,
    setup: Callable[[LanguageClient], None] | None = None,
    watched_dynamic: bool = False,
    edit_caps: lsp.WorkspaceEditClientCapabilities | None = None,
    capabilities: lsp.ClientCapabilities | None = None,
    stream: bool = True,
    show_document: bool = False,
) -> AsyncIterator[tuple[LanguageClient, Recorder, Path]]:
    """`capabilities`: all of the client's, instead of those made of `progress`, `edit_caps`,
    `watched_dynamic` and `show_document` (e.g. pytest_lsp.client_capabilities("emacs"), a real
    client's). `stream`: declare experimental.glm.stream as our plugins do (they wait for an agent
    command's result and take glm/stream); False: a plain LSP client."""
    root = root or workspace(tmp)
    script = tmp / f"replies-{len(list(tmp.glob('replies-*')))}.json"
    script.write_text(json.dumps(replies))
    config = ClientServerConfig(
        # model None: no --model flag, so the client's settings choose the model (flags win)
        server_command=[
            sys.executable,
            "-m",
            "glm_lsp.cli",
            "serve",
            *(["--model", str(model)] if model is not None else []),
            "--scripted-replies",
            str(script),
        ],
        server_env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    client = await config.start()
    fix_code_action_decoding(client.protocol._converter)
    rec = Recorder(decline)

    @client.feature("glm/stream")
    def on_stream(params: Any) -> None:
        item = (
            params
            if isinstance(params, dict)
            else {k: getattr(params, k) for k in ("turn", "kind", "text")}
        )
        rec.stream.append(item)
        rec.events.append("stream")

    @client.feature(lsp.WORKSPACE_APPLY_EDIT)
    def on_apply(params: lsp.ApplyWorkspaceEditParams) -> lsp.ApplyWorkspaceEditResult:
        rec.edits.append(params.edit)
        rec.events.append("applyEdit")
        rec.edit_seen.set()
        answer = rec.hook(params.edit) if rec.hook else None
        if answer is not None:
            return answer
        if rec.decline:
            return lsp.ApplyWorkspaceEditResult(applied=False, failure_reason=rec.decline)
        applied, reason = apply_workspace_edit(params.edit, encoding=rec.encoding)
        return lsp.ApplyWorkspaceEditResult(applied=applied, failure_reason=reason)

    caps = capabilities or lsp.ClientCapabilities(
        window=lsp.WindowClientCapabilities(
            work_done_progress=progress,
            show_document=lsp.ShowDocumentClientCapabilities(support=True)
            if show_document
            else None,
        ),
        workspace=lsp.WorkspaceClientCapabilities(
            apply_edit=True,
            workspace_edit=edit_caps
            or lsp.WorkspaceEditClientCapabilities(
                document_changes=True,
                resource_operations=[
                    lsp.ResourceOperationKind.Create,
                    lsp.ResourceOperationKind.Rename,
                    lsp.ResourceOperationKind.Delete,
                ],
            ),
            did_change_watched_files=lsp.DidChangeWatchedFilesClientCapabilities(
                dynamic_registration=watched_dynamic
            ),
        ),
    )
    if stream:
        caps = attrs.evolve(caps, experimental={**(caps.experimental or {}), **PLUGIN_EXPERIMENTAL})
    if setup is not None:
        setup(client)
    initialized = await asyncio.wait_for(
        client.initialize_session(
            lsp.InitializeParams(
                capabilities=caps,
                root_uri=root.as_uri(),
                workspace_folders=[
                    lsp.WorkspaceFolder(uri=f.as_uri(), name=f.name) for f in (folders or [root])
                ],
                initialization_options=init_options,
            )
        ),
        TIMEOUT,
    )
    encoding = initialized.capabilities.position_encoding
    rec.encoding = str(getattr(encoding, "value", encoding) or "utf-16")
    try:
        yield client, rec, root
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.shutdown_session(), 20)
        with contextlib.suppress(Exception):
            await client.stop()


def command(client: LanguageClient, name: str, arg: Any = None):
    args = [] if arg is None else [arg]
    return asyncio.wait_for(
        client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command=name, arguments=args)
        ),
        TIMEOUT,
    )


def open_doc(client: LanguageClient, root: Path, rel: str, version: int = 7) -> str:
    uri = (root / rel).as_uri()
    client.text_document_did_open(
        lsp.DidOpenTextDocumentParams(
            lsp.TextDocumentItem(
                uri=uri, language_id="python", version=version, text=(root / rel).read_text()
            )
        )
    )
    return uri


def rng(l1: int, c1: int, l2: int, c2: int) -> dict[str, Any]:
    return {"start": {"line": l1, "character": c1}, "end": {"line": l2, "character": c2}}


@pytest.fixture
def model(tiny_model_dir: Path) -> Path:
    return tiny_model_dir


# -- tests ---------------------------------------------------------------------------------------


async def test_code_actions(tmp_path: Path, model: Path) -> None:
    async with server(tmp_path, model, []) as (client, _rec, root):
        uri = open_doc(client, root, "pkg/a.py")
        ctx = lsp.CodeActionContext(diagnostics=[])
        actions = await client.text_document_code_action_async(
            lsp.CodeActionParams(
                lsp.TextDocumentIdentifier(uri),
                lsp.Range(lsp.Position(0, 0), lsp.Position(2, 0)),
                ctx,
            )
        )
        assert [a.title for a in actions] == ["GLM: Explain", "GLM: Refactor…", *WHOLE_REFACTORS]
        assert actions[0].command.command == "glm.explain"
        # VS Code keeps `source.*` actions out of the light bulb: Explain must not be one.
        assert not str(actions[0].kind).startswith("source")
        assert actions[0].command.arguments[0]["uri"] == uri
        diag = lsp.Diagnostic(
            range=lsp.Range(lsp.Position(1, 0), lsp.Position(1, 3)), message="bad"
        )
        actions = await client.text_document_code_action_async(
            lsp.CodeActionParams(
                lsp.TextDocumentIdentifier(uri),
                lsp.Range(lsp.Position(6, 8), lsp.Position(6, 8)),
                lsp.CodeActionContext(diagnostics=[diag]),
            )
        )
        fix = [a for a in actions if a.title == "GLM: Fix"]
        assert fix and fix[0].kind == lsp.CodeActionKind.QuickFix
        assert fix[0].command.command == "glm.fix"
        # an empty range widens to the enclosing method `get` (lines 7-8, 0-based 6-7)
        widened = actions[0].command.arguments[0]["range"]
        assert widened["start"] == {"line": 6, "character": 0}
        assert widened["end"]["line"] == 7


C_PY = (
    '"""Helpers built on bar."""\nfrom pkg.a import bar\n\n\ndef quad(x):\n    return bar(bar(x))\n'
)
EXPLAIN = "foo doubles its argument; Box.get calls it with 1."
REFACTOR = [
    "I should read a.py first.</think>Reading a.py."
    + tool_call_text("read_file", {"path": "pkg/a.py"}),
    "foo is used in b.py too.</think>"
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
    )
    + tool_call_text("write_file", {"path": "pkg/c.py", "content": C_PY})
    + tool_call_text("rename_file", {"path": "notes.txt", "new_path": "docs/notes.txt"})
    + tool_call_text("delete_file", {"path": "pkg/old.py"}),
    "All done.</think>Renamed foo to bar in a.py and b.py, added c.py, moved notes, removed old.py.",
]


async def test_explain_then_multi_file_refactor_undo_and_restart(
    tmp_path: Path, model: Path
) -> None:
    async with server(tmp_path, model, [EXPLAIN, *REFACTOR]) as (client, rec, root):
        a_uri = open_doc(client, root, "pkg/a.py", version=7)
        explained = await command(client, "glm.explain", {"uri": a_uri, "range": rng(0, 0, 0, 0)})
        assert explained["text"] == EXPLAIN
        assert explained["reasoning"] == [] and explained["turn"] == 1
        assert set(explained["stats"]) >= {
            "promptTokens",
            "reusedTokens",
            "generatedTokens",
            "ttftMs",
        }
        assert "".join(s["text"] for s in rec.stream if s["kind"] == "content") == EXPLAIN

        rec.stream.clear()
        rec.events.clear()
        result = await command(
            client, "glm.refactor", {"uri": a_uri, "instruction": "rename foo to bar"}
        )
        rec.events.append("result")
        assert result["applied"] is True, result
        assert result["turn"] == 2
        assert "failureReason" not in result
        kinds = {(Path(c["uri"]).name, c["kind"]) for c in result["changes"]}
        assert kinds == {
            ("a.py", "modify"),
            ("b.py", "modify"),
            ("c.py", "create"),
            ("notes.txt", "rename"),
            ("old.py", "delete"),
        }
        # streamed reasoning and tool calls all came before the result, in order
        assert rec.events[-1] == "result" and rec.events.count("applyEdit") == 1
        assert rec.events.index("applyEdit") > rec.events.index("stream")
        streamed = "".join(s["text"] for s in rec.stream if s["kind"] == "reasoning")
        assert streamed.startswith("I should read a.py first.") and all(
            s["turn"] == 2 for s in rec.stream
        )
        assert any(s["kind"] == "tool_call" and "read_file" in s["text"] for s in rec.stream)

        # one applyEdit: delete, rename, create (+ its content), then modifies with versions
        changes = rec.edits[0].document_changes
        kinds_in_order = [type(c).__name__ for c in changes]
        assert kinds_in_order == [
            "DeleteFile",
            "RenameFile",
            "CreateFile",
            "TextDocumentEdit",
            "TextDocumentEdit",
            "TextDocumentEdit",
        ]
        versions = {
            Path(c.text_document.uri).name: c.text_document.version
            for c in changes
            if isinstance(c, lsp.TextDocumentEdit)
        }
        assert versions == {"c.py": None, "a.py": 7, "b.py": None}
        assert (root / "pkg" / "a.py").read_text() == A_PY.replace("foo", "bar")
        assert (root / "pkg" / "b.py").read_text() == B_PY.replace("foo", "bar")
        assert (root / "pkg" / "c.py").read_text() == C_PY
        assert (root / "docs" / "notes.txt").read_text() == NOTES
        assert not (root / "pkg" / "old.py").exists() and not (root / "notes.txt").exists()

        # progress: fresh token, begin ... one report per step ... end
        (reports,) = [
            r for r in client.progress_reports.values() if r and r[0].title == "GLM: Refactor"
        ]
        messages = [getattr(r, "message", None) for r in reports]
        assert "read_file pkg/a.py" in messages and "writing edits" in messages
        assert reports[-1].kind == "end"

        # undo restores every file (the client's buffer of a.py is stale, so close it first)
        client.text_document_did_close(
            lsp.DidCloseTextDocumentParams(lsp.TextDocumentIdentifier(a_uri))
        )
        undone = await command(client, "glm.undo", {})
        assert undone["applied"] is True, undone
        assert (root / "pkg" / "a.py").read_text() == A_PY
        assert (root / "pkg" / "b.py").read_text() == B_PY
        assert (root / "pkg" / "old.py").read_text() == OLD_PY
        assert (root / "notes.txt").read_text() == NOTES
        assert not (root / "pkg" / "c.py").exists() and not (root / "docs" / "notes.txt").exists()
        again = await command(client, "glm.undo", {})
        assert again["applied"] is False and again["failureReason"]

    # a new server process on the same workspace sees the conversation
    async with server(tmp_path, model, [], root=root) as (client, _rec, _root):
        shown = await command(client, "glm.thinking.show", {})
        assert [(t["turn"], t["command"]) for t in shown] == [
            (1, "glm.explain"),
            (2, "glm.refactor"),
        ]
        assert shown[1]["reasoning"][0] == "I should read a.py first."
        assert shown[1]["summary"].startswith("Renamed foo to bar")
        assert (await command(client, "glm.thinking.show", {"limit": 1}))[0]["turn"] == 2
        status = await command(client, "glm.status", {})
        assert status["turns"] == 2 and status["busy"] is False and status["backend"] == "mlx"
        reset = await command(client, "glm.thinking.reset", {})
        assert reset["archived"]
        assert await command(client, "glm.thinking.show", {}) == []


async def test_declined_edit_writes_nothing(tmp_path: Path, model: Path) -> None:
    replies = [
        "Rename it.</think>"
        + tool_call_text(
            "edit_file", {"path": "pkg/b.py", "old_text": "foo(foo(x))", "new_text": "bar(bar(x))"}
        ),
        "Done.</think>Renamed the call.",
    ]
    async with server(tmp_path, model, replies, decline="the user rejected it") as (
        client,
        rec,
        root,
    ):
        uri = (root / "pkg" / "b.py").as_uri()
        result = await command(client, "glm.refactor", {"uri": uri, "instruction": "rename"})
        assert result["applied"] is False
        assert result["failureReason"] == "the user rejected it"
        assert result["changes"] == [{"uri": uri, "kind": "modify"}]
        assert len(rec.edits) == 1
        assert (root / "pkg" / "b.py").read_text() == B_PY


async def until(predicate, timeout: float = TIMEOUT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


def cancelled(exc: BaseException) -> bool:
    return isinstance(exc, JsonRpcException) and exc.code == -32800


async def test_cancel_queue_and_responsiveness(tmp_path: Path, model: Path) -> None:
    long_reply = "word " * 4000  # thinking is off for explain: all of it streams as content
    async with server(tmp_path, model, [long_reply]) as (client, rec, root):
        uri = (root / "pkg" / "a.py").as_uri()
        first = asyncio.ensure_future(command(client, "glm.explain", {"uri": uri}))
        await until(lambda: rec.stream)
        # the loop answers while the worker generates
        started = asyncio.get_running_loop().time()
        actions = await client.text_document_code_action_async(
            lsp.CodeActionParams(
                lsp.TextDocumentIdentifier(uri),
                lsp.Range(lsp.Position(0, 0), lsp.Position(0, 0)),
                lsp.CodeActionContext(diagnostics=[]),
            )
        )
        assert actions and asyncio.get_running_loop().time() - started < 2 and not first.done()
        second = asyncio.ensure_future(command(client, "glm.ask", {"question": "why?"}))
        await until(
            lambda: any(r and r[0].title == "GLM: Ask" for r in client.progress_reports.values())
        )
        (ask_progress,) = [
            r for r in client.progress_reports.values() if r and r[0].title == "GLM: Ask"
        ]
        assert "waiting" in ask_progress[0].message
        status = await command(client, "glm.status", {})
        assert status["busy"] is True and status["queued"] == 1 and not first.done()

        assert (await command(client, "glm.cancel", {}))["cancelled"] == 2
        for task in (first, second):
            with pytest.raises(JsonRpcException) as err:
                await task
            assert cancelled(err.value), err.value
        assert (await command(client, "glm.status", {}))["busy"] is False

        # $/cancelRequest of the executeCommand itself stops the generation
        rec.stream.clear()
        params = lsp.ExecuteCommandParams(command="glm.explain", arguments=[{"uri": uri}])
        request = asyncio.ensure_future(
            client.protocol.send_request_async(
                lsp.WORKSPACE_EXECUTE_COMMAND, params, msg_id="cancel-me"
            )
        )
        await until(lambda: rec.stream)
        client.protocol.notify(lsp.CANCEL_REQUEST, lsp.CancelParams(id="cancel-me"))
        with pytest.raises(JsonRpcException):
            await asyncio.wait_for(request, TIMEOUT)
        for _ in range(100):
            if not (await command(client, "glm.status", {}))["busy"]:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("generation kept running after $/cancelRequest")

        # a progress cancel from the editor's progress UI
        rec.stream.clear()
        third = asyncio.ensure_future(command(client, "glm.explain", {"uri": uri}))
        await until(lambda: rec.stream)
        (token,) = [t for t, r in client.progress_reports.items() if r and r[-1].kind != "end"]
        client.window_work_done_progress_cancel(lsp.WorkDoneProgressCancelParams(token=token))
        with pytest.raises(JsonRpcException) as err:
            await third
        assert cancelled(err.value)

        # cancelled requests leave no trace in the log
        assert await command(client, "glm.thinking.show", {}) == []


async def test_bad_arguments_and_settings(tmp_path: Path, model: Path) -> None:
    async with server(tmp_path, model, [EXPLAIN], init_options={"glm": {"backend": "openai"}}) as (
        client,
        _rec,
        root,
    ):
        uri = (root / "pkg" / "a.py").as_uri()
        cases = [
            ("glm.refactor", 42, "one object"),
            ("glm.refactor", {"uri": uri}, "'instruction'"),
            ("glm.refactor", {"uri": uri, "instruction": 3}, "'instruction'"),
            ("glm.explain", {"uri": "file:///elsewhere/x.py"}, "'uri'"),
            ("glm.explain", {}, "'uri'"),
            ("glm.fix", {"uri": uri}, "'range'"),
            ("glm.explain", {"uri": uri, "range": "all"}, "'range'"),
            ("glm.ask", {"question": ""}, "'question'"),
            ("glm.explain", {"uri": uri, "thinking": "maybe"}, "'thinking'"),
            ("glm.thinking.show", {"limit": "x"}, "'limit'"),
        ]
        for name, arg, field in cases:
            with pytest.raises(JsonRpcException) as err:
                await command(client, name, arg)
            assert field in err.value.message, (name, arg, err.value.message)
        status = await command(client, "glm.status", {})
        assert status["backend"] == "openai"  # from initializationOptions

        client.workspace_did_change_configuration(
            lsp.DidChangeConfigurationParams(settings={"glm": {"thinking": "bogus"}})
        )
        await until(lambda: client.messages)
        (message,) = client.messages
        assert (
            message.type == lsp.MessageType.Error
            and "glm.thinking" in message.message
            and "auto" in message.message
        )

        # backend is the user's own (issue 25): a workspace's change, flat settings too, is
        # refused by name and the old value kept
        client.workspace_did_change_configuration(
            lsp.DidChangeConfigurationParams(settings={"backend": "mlx"})
        )
        await until(lambda: len(client.messages) == 2)
        assert client.messages[1].message.startswith("glm.backend ignored: settings")
        assert (await command(client, "glm.status", {}))["backend"] == "openai"  # old value kept
        # the server still serves after all that, on the user's backend (nothing listens there)
        with pytest.raises(JsonRpcException) as err:
            await command(client, "glm.explain", {"uri": uri})
        assert "cannot reach the server at http://127.0.0.1:1234/v1" in err.value.message
        assert (await command(client, "glm.status", {}))["busy"] is False
