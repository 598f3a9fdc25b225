"""A plain LSP client (eglot, lsp-mode, Helix: no `experimental.glm.stream`) never waits for an
agent request: executeCommand is answered at once, the answer arrives as a markdown document
(window/showDocument) or as messages, the stream as work-done progress, and glm.cancel and the
progress token's cancel still stop it."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

from glm_lsp.core.worker import Job
from glm_lsp.glm.parse import tool_call_text
from glm_lsp.server.jobs import StreamRelay
from tests.test_server import B_PY, command, server, until

ANSWER = (
    "foo doubles its argument.\nBox.get calls it with 1.\nSo get returns 2.\nThat is all.\nMore."
)
ASK = [
    "The question is about foo; read a.py.</think>" + tool_call_text("read_file", {"path": "pkg/a.py"}),
    "foo returns 2 * x.</think>" + ANSWER,
]  # fmt: skip
SUMMARY = "Renamed foo to bar in b.py."
REFACTOR = [
    "Only b.py needs it.</think>"
    + tool_call_text(
        "edit_file", {"path": "pkg/b.py", "old_text": "foo(foo(x))", "new_text": "bar(bar(x))"}
    ),
    f"Done.</think>{SUMMARY}",
]
LONG = "word " * 4000


def progress_of(client: LanguageClient, title: str) -> list[lsp.ProgressParams]:
    (reports,) = [r for r in client.progress_reports.values() if r and r[0].title == title]
    return reports


async def test_answers_and_summaries_open_as_documents_and_progress_carries_the_stream(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    replies = [*ASK, *REFACTOR]
    async with server(tmp_path, tiny_model_dir, replies, stream=False, show_document=True) as (
        client,
        rec,
        root,
    ):
        started = await command(
            client, "glm.ask", {"question": "What does foo do?", "thinking": True}
        )
        assert started == {"turn": 1, "status": "started"}
        await until(lambda: client.shown_documents)
        (shown,) = client.shown_documents
        assert shown.take_focus is False and shown.uri.endswith("/answers/turn-1.md")
        doc = Path(shown.uri.removeprefix("file://")).read_text()
        assert doc.index(ANSWER) < doc.index("## Reasoning") < doc.index("## Stats")
        assert "> foo returns 2 * x." in doc and "prompt tokens" in doc
        assert Path(shown.uri.removeprefix("file://")).stat().st_mode & 0o077 == 0
        messages = [getattr(r, "message", None) for r in progress_of(client, "GLM: Ask")]
        assert "thinking…" in messages and "read_file pkg/a.py" in messages
        assert messages[-1] == "done"
        assert rec.stream == []  # glm/stream goes only to clients that declared it

        b_uri = (root / "pkg" / "b.py").as_uri()
        started = await command(client, "glm.refactor", {"uri": b_uri, "instruction": "rename"})
        assert started["turn"] == 2
        await until(lambda: len(client.shown_documents) == 2)
        assert (root / "pkg" / "b.py").read_text() == B_PY.replace("foo(foo(x))", "bar(bar(x))")
        assert len(rec.edits) == 1
        summary = Path(client.shown_documents[1].uri.removeprefix("file://")).read_text()
        assert summary.startswith("# GLM: Refactor (turn 2)\n\n" + SUMMARY)
        assert "- modify `pkg/b.py`" in summary and "Not applied" not in summary
        assert client.messages == [] and rec.stream == []


async def test_without_show_document_messages_carry_the_answer_and_cancel_still_works(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    async with server(tmp_path, tiny_model_dir, [*ASK, LONG, LONG], stream=False) as (
        client,
        rec,
        root,
    ):
        await command(client, "glm.ask", {"question": "What does foo do?", "thinking": True})
        await until(lambda: client.messages)
        (shown,) = client.messages
        first_four = "\n".join(ANSWER.splitlines()[:4])
        assert shown.type == lsp.MessageType.Info
        assert (
            shown.message.startswith(f"GLM: Ask: {first_four}\n") and "More." not in shown.message
        )
        await until(lambda: any(ANSWER in m.message for m in client.log_messages))
        (logged,) = [m for m in client.log_messages if ANSWER in m.message]
        assert "## Reasoning" in logged.message and "## Stats" in logged.message

        # glm.cancel stops a request that was answered long ago ...
        uri = (root / "pkg" / "a.py").as_uri()
        assert (await command(client, "glm.explain", {"uri": uri}))["status"] == "started"
        await until(
            lambda: any(r and r[-1].kind == "report" for r in client.progress_reports.values())
        )
        assert (await command(client, "glm.cancel", {}))["cancelled"] == 1
        await until(lambda: len(client.messages) == 2)
        assert client.messages[1].message == "glm.explain was cancelled; nothing was written"

        # ... and so does the progress token's cancel from the editor's progress UI.
        assert (await command(client, "glm.explain", {"uri": uri}))["turn"] == 2
        await until(
            lambda: any(r and r[-1].kind != "end" for r in client.progress_reports.values())
        )
        (token,) = [t for t, r in client.progress_reports.items() if r and r[-1].kind != "end"]
        client.window_work_done_progress_cancel(lsp.WorkDoneProgressCancelParams(token=token))
        await until(lambda: len(client.messages) == 3)
        assert "cancelled" in client.messages[2].message
        assert (await command(client, "glm.status", {}))["busy"] is False
        # Every progress ended, however its request ended: a client shows none left over.
        ends = [r[-1] for r in client.progress_reports.values()]
        assert [(e.kind, e.message) for e in ends] == [
            ("end", "done"),
            ("end", "cancelled"),
            ("end", "cancelled"),
        ]
        assert [t["turn"] for t in await command(client, "glm.thinking.show", {})] == [1]
        assert rec.stream == [] and rec.edits == []


class _Progress:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def report(self, message: str) -> None:
        self.messages.append(message)


class _Protocol:
    def notify(self, method: str, params: object) -> None:
        raise AssertionError(f"{method} sent to a client that did not declare the stream")


async def test_a_plain_clients_progress_shows_the_latest_streamed_words() -> None:
    progress = _Progress()
    stub = type("Server", (), {"protocol": _Protocol()})()
    relay = StreamRelay(stub, Job("glm.ask"), progress, stream=False)  # type: ignore[arg-type]
    relay.push("progress", "thinking")
    relay.push("reasoning", "The question is about foo;\n")
    relay.push("reasoning", "read a.py " + "x" * 80)
    assert relay.timer is not None  # reported at most every TAIL_S, not per token
    relay.report_tail()
    relay.push("tool_call", "read_file(path='pkg/a.py')")
    relay.push("progress", "read_file pkg/a.py")
    relay.push("content", "foo doubles x.")
    relay.flush()  # the end of the request: a pending tail is dropped, nothing is sent
    assert progress.messages == [
        "thinking…",
        "thinking… " + ("The question is about foo; read a.py " + "x" * 80)[-60:],
        "read_file pkg/a.py",
    ]


async def test_an_unexpected_failure_ends_the_progress_as_failed(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    blocker = tmp_path / "a-file"  # the state dir cannot be made under a file: an OSError
    blocker.write_text("")
    init = {"glm": {"stateDir": str(blocker / "state")}}
    async with server(tmp_path, tiny_model_dir, [], stream=False, init_options=init) as (
        client,
        _rec,
        _root,
    ):
        assert (await command(client, "glm.ask", {"question": "q"}))["status"] == "started"
        await until(lambda: client.messages)
        (failed,) = client.messages
        assert failed.type == lsp.MessageType.Error
        assert failed.message.startswith("GLM: Ask failed: ") and str(blocker) in failed.message
        (reports,) = client.progress_reports.values()
        assert (reports[-1].kind, reports[-1].message) == ("end", "failed")  # not "cancelled"
