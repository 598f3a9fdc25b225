"""Edits the editor declined or that went stale, retry and undo across a restart, multi-root
folders, client file events, and `serve --tcp`: the real server over a real LSP connection."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp

from glm_lsp.glm.parse import tool_call_text
from glm_lsp.state_files import workspace_state
from tests.test_server import A_PY, TIMEOUT, command, open_doc, server, until, workspace

NEW_RETURN = "    return x + x\n"
EDIT_A = [
    "Read it.</think>" + tool_call_text("read_file", {"path": "pkg/a.py"}),
    "Rewrite the body.</think>"
    + tool_call_text(
        "edit_file",
        {"path": "pkg/a.py", "old_text": "    return 2 * x\n", "new_text": NEW_RETURN},
    ),
    "Done.</think>Rewrote foo.",
]


def change_doc(client: Any, uri: str, version: int, text: str) -> None:
    client.text_document_did_change(
        lsp.DidChangeTextDocumentParams(
            lsp.VersionedTextDocumentIdentifier(uri=uri, version=version),
            [lsp.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )


async def test_version_race_then_retry_merges_and_undo(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """The user types while the edit is in flight: the client rejects it, retry merges, undo works."""
    typed = "# typed by the user\n" + A_PY
    async with server(tmp_path, tiny_model_dir, EDIT_A) as (client, rec, root):
        uri = open_doc(client, root, "pkg/a.py", version=7)

        def user_types(edit: lsp.WorkspaceEdit) -> lsp.ApplyWorkspaceEditResult:
            # what an editor does when a keystroke lands first: new version, edit refused
            (root / "pkg" / "a.py").write_text(typed)
            change_doc(client, uri, 8, typed)
            rec.hook = None
            return lsp.ApplyWorkspaceEditResult(
                applied=False, failure_reason="document version 7 does not match 8"
            )

        rec.hook = user_types
        result = await command(client, "glm.refactor", {"uri": uri, "instruction": "simplify"})
        assert result["applied"] is False
        assert "version 7 does not match 8" in result["failureReason"]
        assert (root / "pkg" / "a.py").read_text() == typed  # nothing written by the server

        retried = await command(client, "glm.retry", {})
        assert retried["applied"] is True, retried
        assert retried["turn"] == result["turn"]
        (doc_edit,) = rec.edits[-1].document_changes
        assert doc_edit.text_document.version == 8  # against the buffer the user has now
        merged = typed.replace("    return 2 * x\n", NEW_RETURN)
        assert (root / "pkg" / "a.py").read_text() == merged

        again = await command(client, "glm.retry", {})
        assert again["applied"] is False and "no declined edit" in again["failureReason"]

        change_doc(client, uri, 9, merged)  # the editor's buffer after applying
        undone = await command(client, "glm.undo", {})
        assert undone["applied"] is True, undone
        assert rec.edits[-1].document_changes[0].text_document.version == 9
        assert (root / "pkg" / "a.py").read_text() == typed


async def test_stale_closed_file_refused_then_retry(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A closed file changed on disk after the model read it: refused before any applyEdit;
    retry merges a change elsewhere in the file and refuses one on the same lines."""
    slow = "Rewrite the body. " + "Let me think about it. " * 40 + "</think>"
    replies = [EDIT_A[0], slow + EDIT_A[1].split("</think>", 1)[1], EDIT_A[2]]
    replies += [EDIT_A[0], slow + EDIT_A[1].split("</think>", 1)[1], EDIT_A[2]]
    async with server(tmp_path, tiny_model_dir, replies) as (client, rec, root):
        path = root / "pkg" / "a.py"
        uri = path.as_uri()
        appended = A_PY + "\n\nTAIL = 1\n"

        async def change_after_read(text: str) -> None:
            await until(lambda: any(s["kind"] == "tool_result" for s in rec.stream))
            path.write_text(text)

        rec.stream.clear()
        writer = asyncio.ensure_future(change_after_read(appended))
        result = await command(client, "glm.refactor", {"uri": uri, "instruction": "simplify"})
        await writer
        assert result["applied"] is False and rec.edits == []
        assert "pkg/a.py" in result["failureReason"] and "glm.retry" in result["failureReason"]
        assert path.read_text() == appended

        retried = await command(client, "glm.retry", {})
        assert retried["applied"] is True, retried
        assert path.read_text() == appended.replace("    return 2 * x\n", NEW_RETURN)

        # the same line changed by someone else: no guessing
        path.write_text(A_PY)
        rec.stream.clear()
        conflicting = A_PY.replace("    return 2 * x\n", "    return x << 1\n")
        writer = asyncio.ensure_future(change_after_read(conflicting))
        result = await command(client, "glm.refactor", {"uri": uri, "instruction": "simplify"})
        await writer
        assert result["applied"] is False
        refused = await command(client, "glm.retry", {})
        assert refused["applied"] is False and "overlap" in refused["failureReason"]
        assert path.read_text() == conflicting and len(rec.edits) == 1


async def test_declined_edit_retry_and_undo_survive_restart(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    root = workspace(tmp_path)
    async with server(tmp_path, tiny_model_dir, EDIT_A, root=root, decline="the user said no") as (
        client,
        _rec,
        _root,
    ):
        uri = (root / "pkg" / "a.py").as_uri()
        result = await command(client, "glm.refactor", {"uri": uri, "instruction": "simplify"})
        assert result["applied"] is False and result["failureReason"] == "the user said no"
    assert (root / "pkg" / "a.py").read_text() == A_PY
    stored = workspace_state(root) / "edits.json"  # the user's record, not the workspace's
    assert stored.stat().st_mode & 0o077 == 0  # holds file contents: private like the log

    async with server(tmp_path, tiny_model_dir, [], root=root) as (client, _rec, _root):
        retried = await command(client, "glm.retry", {})
        assert retried["applied"] is True, retried
        assert (root / "pkg" / "a.py").read_text() == A_PY.replace("    return 2 * x\n", NEW_RETURN)

    async with server(tmp_path, tiny_model_dir, [], root=root) as (client, _rec, _root):
        undone = await command(client, "glm.undo", {})
        assert undone["applied"] is True, undone
        assert (root / "pkg" / "a.py").read_text() == A_PY
        nothing = await command(client, "glm.undo", {})
        assert nothing["applied"] is False and nothing["failureReason"] == "nothing to undo"


async def test_undo_refuses_when_a_file_changed(tmp_path: Path, tiny_model_dir: Path) -> None:
    async with server(tmp_path, tiny_model_dir, EDIT_A) as (client, _rec, root):
        path = root / "pkg" / "a.py"
        result = await command(
            client, "glm.refactor", {"uri": path.as_uri(), "instruction": "simplify"}
        )
        assert result["applied"] is True
        path.write_text(path.read_text() + "# later\n")
        refused = await command(client, "glm.undo", {})
        assert refused["applied"] is False and "pkg/a.py changed since" in refused["failureReason"]
        assert path.read_text().endswith("# later\n")


async def test_multi_root_folders_keep_their_own_state(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    one = workspace(tmp_path / "one")
    two = workspace(tmp_path / "two")
    async with server(tmp_path, tiny_model_dir, EDIT_A, root=one, folders=[one, two]) as (
        client,
        rec,
        _root,
    ):
        b_uri = (two / "pkg" / "a.py").as_uri()
        result = await command(client, "glm.refactor", {"uri": b_uri, "instruction": "simplify"})
        assert result["applied"] is True
        assert result["changes"] == [{"uri": b_uri, "kind": "modify"}]
        assert (two / "pkg" / "a.py").read_text() != A_PY
        assert (one / "pkg" / "a.py").read_text() == A_PY
        assert (two / ".glm-lsp" / "thinking.jsonl").exists()
        assert not (one / ".glm-lsp" / "thinking.jsonl").exists()
        status_two = await command(client, "glm.status", {"uri": b_uri})
        status_one = await command(client, "glm.status", {"uri": (one / "pkg" / "a.py").as_uri()})
        assert (status_one["turns"], status_two["turns"]) == (0, 1)
        # read_file in folder two read folder two's file
        tool_results = [s["text"] for s in rec.stream if s["kind"] == "tool_result"]
        assert any("Double x" in t for t in tool_results)


async def test_watched_files_registration_and_events(tmp_path: Path, tiny_model_dir: Path) -> None:
    registrations: list[lsp.Registration] = []

    def setup(client: Any) -> None:
        @client.feature(lsp.CLIENT_REGISTER_CAPABILITY)
        def register(params: lsp.RegistrationParams) -> None:
            registrations.extend(params.registrations)

    explain = ["foo doubles x.", "Still doubles x."]
    async with server(tmp_path, tiny_model_dir, explain, setup=setup, watched_dynamic=True) as (
        client,
        _rec,
        root,
    ):
        uri = (root / "pkg" / "a.py").as_uri()
        await until(lambda: registrations)
        (reg,) = registrations
        assert reg.method == lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES
        globs = [w["globPattern"] for w in reg.register_options["watchers"]]
        assert globs == ["**/*"]
        await command(client, "glm.explain", {"uri": uri})
        (root / "added.py").write_text("x = 1\n")
        (root / "notes.txt").unlink()
        client.workspace_did_change_watched_files(
            lsp.DidChangeWatchedFilesParams(
                [
                    lsp.FileEvent((root / "added.py").as_uri(), lsp.FileChangeType.Created),
                    lsp.FileEvent((root / "notes.txt").as_uri(), lsp.FileChangeType.Deleted),
                    lsp.FileEvent("file:///elsewhere/x.py", lsp.FileChangeType.Changed),
                ]
            )
        )
        # No wait here: the request waits for the events it was sent after to reach the index.
        await command(client, "glm.explain", {"uri": uri})
        log = [json.loads(line) for line in (root / ".glm-lsp" / "thinking.jsonl").open()]
        note = log[1]["messages"][0]["content"]
        assert "added.py" in note and "notes.txt" in note and "elsewhere" not in note

    # a client without dynamic registration is not asked
    registrations.clear()
    async with server(tmp_path / "plain", tiny_model_dir, [], setup=setup) as (client, _r, _root):
        await command(client, "glm.status", {})
        assert registrations == []


def _frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def _read_message(sock_file: Any) -> dict[str, Any]:
    length = 0
    while True:
        line = sock_file.readline()
        assert line, "server closed the connection"
        if line in (b"\r\n", b"\n"):
            break
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return json.loads(sock_file.read(length))


def _response(sock_file: Any, msg_id: int) -> dict[str, Any]:
    for _ in range(100):  # skip notifications and server requests
        message = _read_message(sock_file)
        if message.get("id") == msg_id and "method" not in message:
            return message
    raise AssertionError(f"no response to request {msg_id}")


def test_serve_over_tcp(tmp_path: Path, tiny_model_dir: Path) -> None:
    root = workspace(tmp_path)
    with socket.socket() as probe:  # a free port on 127.0.0.1
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "glm_lsp.cli", "serve", "--tcp", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--model", str(tiny_model_dir)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GLM_LSP_TOKEN": "tcp-test-token"}
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):  # bounded: up to 30 s for the interpreter to start listening
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.1)
        else:
            raise AssertionError("glm-lsp serve --tcp did not listen")
        with conn, conn.makefile("rb") as f:
            init = {
                "processId": None,
                "rootUri": root.as_uri(),
                "capabilities": {},
                "initializationOptions": {"token": "tcp-test-token"},
            }
            conn.sendall(
                _frame({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init})
            )
            caps = _response(f, 1)["result"]["capabilities"]
            assert "glm.retry" in caps["executeCommandProvider"]["commands"]
            conn.sendall(_frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
            params = {"command": "glm.status", "arguments": [{}]}
            conn.sendall(
                _frame(
                    {
                        "jsonrpc": "2.0",
                        "id": 2,
                        "method": "workspace/executeCommand",
                        "params": params,
                    }
                )
            )
            status = _response(f, 2)["result"]
            assert status["busy"] is False and status["model"] == str(tiny_model_dir)
            conn.sendall(_frame({"jsonrpc": "2.0", "id": 3, "method": "shutdown"}))
            assert "error" not in _response(f, 3)
            conn.sendall(_frame({"jsonrpc": "2.0", "method": "exit"}))
            assert f.read() == b""  # `exit` ends this connection (bounded by the socket timeout)
        assert proc.poll() is None  # but not the server: other clients may be connected
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
