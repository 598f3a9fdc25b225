"""Real clients' capabilities, declared exactly (tests/fixtures/clients/README.md says where each
comes from): each gets an Ask answer and a file-creating refactor's outcome the way it can show
them, progress only where it declared it, never glm/stream (none declares
experimental.glm.stream) and never a file operation it did not declare."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from lsprotocol import types as lsp
from pygls.protocol import default_converter
from pytest_lsp import LanguageClient, client_capabilities

from glm_lsp.glm.parse import tool_call_text
from tests.test_plain_clients import ANSWER, ASK, progress_of
from tests.test_server import WHOLE_REFACTORS, command, open_doc, server, until

FIXTURES = Path(__file__).parent / "fixtures" / "clients"
C_PY = "C = 1\n"
SUMMARY = "Added pkg/c.py."
CREATE_C = [
    "Add c.py.</think>" + tool_call_text("write_file", {"path": "pkg/c.py", "content": C_PY}),
    f"Done.</think>{SUMMARY}",
]


@dataclass(frozen=True)
class Profile:
    name: str
    capabilities: lsp.ClientCapabilities
    documents: bool  # window.showDocument
    progress: bool  # window.workDoneProgress
    creates: bool  # workspace.workspaceEdit.resourceOperations has "create"
    encoding: str  # the position encoding the server picks from general.positionEncodings


def captured(file: str) -> lsp.ClientCapabilities:
    data = json.loads((FIXTURES / file).read_text())
    return default_converter().structure(data["capabilities"], lsp.ClientCapabilities)


PROFILES = [
    Profile("eglot 1.9", captured("eglot_v1.9.json"), False, False, False, "utf-16"),
    Profile("eglot 1.24", captured("eglot_v1.24.json"), True, True, True, "utf-32"),
    Profile("lsp-mode 8.0.0", captured("lsp_mode_v8.0.0.json"), False, True, True, "utf-16"),
    Profile("Helix 25.07.1+", captured("helix_v25.07.1-079a789e.json"), True, True, True, "utf-8"),
    Profile(
        "VS Code 1.65.2",
        client_capabilities("visual-studio-code@1.65.2"),
        True,
        True,
        True,
        "utf-16",
    ),
]


def accept_registrations(client: LanguageClient) -> None:
    """Real clients accept the file watchers that a dynamicRegistration client is asked for."""

    @client.feature(lsp.CLIENT_REGISTER_CAPABILITY)
    def on_register(_params: lsp.RegistrationParams) -> None:
        return None


def shown_text(client: LanguageClient, index: int) -> str:
    return Path(client.shown_documents[index].uri.removeprefix("file://")).read_text()


@pytest.mark.parametrize("profile", PROFILES, ids=[p.name for p in PROFILES])
async def test_each_client_gets_what_it_can_show(
    profile: Profile, tmp_path: Path, tiny_model_dir: Path
) -> None:
    caps = profile.capabilities
    assert not (caps.experimental or {}).get("glm"), "a real client never declares our stream"
    async with server(
        tmp_path,
        tiny_model_dir,
        [*ASK, *CREATE_C],
        capabilities=caps,
        stream=False,
        setup=accept_registrations,
    ) as (client, rec, root):
        assert rec.encoding == profile.encoding
        # The menu holds only what runs whole: no "GLM: Refactor…" that would need a prompt.
        actions = await client.text_document_code_action_async(
            lsp.CodeActionParams(
                lsp.TextDocumentIdentifier(open_doc(client, root, "pkg/a.py")),
                lsp.Range(lsp.Position(0, 0), lsp.Position(2, 0)),
                lsp.CodeActionContext(diagnostics=[]),
            )
        )
        assert [a.title for a in actions] == ["GLM: Explain", *WHOLE_REFACTORS]
        started = await command(
            client, "glm.ask", {"question": "What does foo do?", "thinking": True}
        )
        assert started == {"turn": 1, "status": "started"}
        if profile.documents:
            await until(lambda: client.shown_documents)
            assert client.shown_documents[0].take_focus is False
            assert shown_text(client, 0).startswith(f"# GLM: Ask (turn 1)\n\n{ANSWER}")
        else:
            await until(lambda: client.messages)
            assert client.messages[0].message.startswith("GLM: Ask: foo doubles its argument.")
            await until(lambda: any(ANSWER in m.message for m in client.log_messages))
        if profile.progress:
            reports = progress_of(client, "GLM: Ask")
            assert [r.kind for r in (reports[0], reports[-1])] == ["begin", "end"]
            messages = [getattr(r, "message", None) for r in reports]
            assert "thinking…" in messages and "read_file pkg/a.py" in messages
            assert messages[-1] == "done"
        else:
            assert client.progress_reports == {}

        uri = (root / "pkg" / "a.py").as_uri()
        refactor = await command(client, "glm.refactor", {"uri": uri, "instruction": "add c"})
        assert refactor == {"turn": 2, "status": "started"}
        c_py = root / "pkg" / "c.py"
        if profile.creates:
            await until(lambda: len(client.shown_documents) == 2 or len(client.messages) == 2)
        else:
            await until(lambda: any(m.type == lsp.MessageType.Error for m in client.messages))
        creates = [
            c for e in rec.edits for c in e.document_changes or [] if isinstance(c, lsp.CreateFile)
        ]
        if profile.creates:
            assert c_py.read_text() == C_PY and len(creates) == 1
            summary = shown_text(client, 1) if profile.documents else client.messages[-1].message
            assert SUMMARY in summary
        else:
            (error,) = [m.message for m in client.messages if m.type == lsp.MessageType.Error]
            assert error == (
                "GLM: Refactor: not applied: this edit creates pkg/c.py, but the editor did not "
                "declare workspace.workspaceEdit.resourceOperations 'create'; nothing was written: "
                "ask for a change to existing files only, or use an editor (LSP client) that "
                "supports file operations"
            )
            assert not c_py.exists() and rec.edits == [] and creates == []
        assert rec.stream == []
        if not profile.documents:
            assert client.shown_documents == []
