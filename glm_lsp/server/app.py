"""The language server object: settings, workspace folders and their sessions, edits."""

from __future__ import annotations

import asyncio
import functools
import hmac
import inspect
import logging
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams, JsonRpcInvalidRequest
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, default_converter
from pygls.uris import to_fs_path

from glm_lsp import __version__
from glm_lsp.agent.edits import ChangeSet, check_unchanged, confinement_problems
from glm_lsp.agent.landing import ApplyReport, Landing, fully_landed, split
from glm_lsp.agent.undo import current_text
from glm_lsp.config import Settings
from glm_lsp.core.folder import Folder
from glm_lsp.core.settings import SettingsState
from glm_lsp.core.worker import Job, Worker, wait_from_worker
from glm_lsp.runtime.base import Cancelled
from glm_lsp.sandbox.permissions import ALLOW_ALWAYS, ALLOW_ONCE, DENY, always_label
from glm_lsp.server.lsp_edits import (
    EditCapabilities,
    annotations,
    stale_open_docs,
    to_workspace_edit,
    unsupported,
)
from glm_lsp.state_files import foreign_note
from glm_lsp.wire.commands import STREAM_CAPABILITY

log = logging.getLogger(__name__)

# How long the server waits for didChange/didOpen of a reviewed edit before judging what landed.
LANDING_WAIT = 2.0


class AnsweredMalformed(JsonRpcInvalidParams):
    """A request pygls could not structure, already answered with InvalidParams."""


APPLY, DONT_APPLY = "Apply", "Don't apply"  # the answers for an edit of a sensitive file
NOT_AUTHORIZED = (
    "not authorized: this glm-lsp TCP server needs its token as initializationOptions.token "
    "(the value of GLM_LSP_TOKEN, of --token-file, or of the token file the server named on "
    "its stderr); closing the connection"
)


class GlmProtocol(LanguageServerProtocol):
    """pygls has no public hook to answer a request it cannot structure, to refuse a connection,
    or to cancel a handler it runs under a generator: this subclass is the one place that uses
    JsonRPCProtocol's own `_send_response`, `_handle_cancel_notification` and `_server`."""

    # A TCP connection's secret; None on stdio, where the pipe belongs to the parent process.
    expected_token: str | None = None
    authenticated = False
    refused = False  # this connection was refused and closed: whatever else it sent is dropped
    closing: asyncio.Future[Any] | None = None

    def handle_message(self, message: Any) -> None:
        """The token gate: before the right initialize, nothing reaches a handler."""
        if self.refused:
            return
        expected = self.expected_token
        if getattr(message, "method", None) == lsp.INITIALIZE:
            presented = _take_token(message.params)
            if not self.authenticated and expected is not None:
                if not _same_token(presented, expected):
                    self.refuse(message)
                    return
                self.authenticated = True
        elif not self.authenticated and expected is not None:
            self.refuse(message)
            return
        super().handle_message(message)

    def refuse(self, message: Any) -> None:
        """An error for a request (never echoing what it sent), then close the connection."""
        self.refused = True
        msg_id = getattr(message, "id", None)
        if msg_id is not None and getattr(message, "method", None) is not None:
            error = JsonRpcInvalidRequest(NOT_AUTHORIZED).to_response_error()
            self._send_response(msg_id, error=error)
        log.warning("refused a TCP connection that did not present the token")
        self.close_connection()

    def close_connection(self) -> None:
        if self.writer is not None:
            closing = self.writer.close()  # asyncio's StreamWriter: flushes what was written first
            if inspect.isawaitable(closing):  # a websocket-style writer
                self.closing = asyncio.ensure_future(closing)

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException:
            if not self.authenticated and self.expected_token is not None:
                self.refuse(_Unstructured(data))
                raise AnsweredMalformed(NOT_AUTHORIZED) from None
            # pygls logs and drops a request it cannot structure (e.g. executeCommand without
            # params): answer it, or the client waits for ever.
            if "id" in data and "method" in data:
                error = JsonRpcInvalidParams(
                    f"{str(data['method'])[:80]}: malformed params; expected the LSP shape "
                    "(executeCommand: {command, arguments: [...]})"
                )
                self._send_response(data["id"], error=error.to_response_error())
                raise AnsweredMalformed(error.message) from None
            log.warning("ignored a malformed %s message", str(data.get("method", "response"))[:80])
            raise

    def _handle_cancel_notification(self, msg_id: Any) -> None:
        # executeCommand runs our handler under a generator, so pygls cannot cancel it itself.
        server: GlmServer = self._server  # type: ignore[assignment]
        server.cancel_request(msg_id)
        super()._handle_cancel_notification(msg_id)


class _Unstructured:
    """A message pygls could not structure, as far as the gate needs it."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.id, self.method = data.get("id"), data.get("method")


def _take_token(params: Any) -> Any:
    """Removes `token` from initializationOptions, in every transport: it is not a setting, and
    pygls logs the initialize params."""
    options = getattr(params, "initialization_options", None)
    return options.pop("token", None) if isinstance(options, dict) else None


def _same_token(presented: Any, expected: str) -> bool:
    if not isinstance(presented, str):
        return False
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


class LspDocuments:
    """The core's OpenDocuments over pygls's workspace (didOpen/didChange)."""

    def __init__(self, server: GlmServer) -> None:
        self.server = server

    def _docs(self) -> dict[str, Any]:
        try:
            return self.server.workspace.text_documents
        except RuntimeError:  # before initialize there is no workspace, so no open buffers
            return {}

    def get(self, uri: str) -> tuple[str, int] | None:
        doc = self._docs().get(uri)
        if doc is None:
            return None
        return doc.source, doc.version if doc.version is not None else 0

    def texts(self) -> list[tuple[str, str]]:
        # a copy: the event loop may open or close one while the worker thread reads
        return [(uri, doc.source) for uri, doc in list(self._docs().items())]


@functools.cache
def _shared_converter() -> Any:
    """lsprotocol's converter takes ~15 ms to build: one for every TCP connection of the process
    (its hooks are the same for all), so a connection costs little before its token."""
    return default_converter()


class GlmServer(LanguageServer):
    protocol: GlmProtocol

    def __init__(self, flags: Settings, *, token: str | None = None) -> None:
        # pygls's pool only reads stdin (we have no @thread handlers): one reader needs one thread,
        # and a larger pool grows by a thread whenever a read is submitted before the last returns.
        super().__init__(
            "glm-lsp",
            __version__,
            protocol_cls=GlmProtocol,
            converter_factory=_shared_converter,
            max_workers=1,
        )
        self.protocol.expected_token = token  # a TCP connection must present it (server/tcp.py)
        # Command-line flags win over LSP settings (the README's Settings).
        self.settings_state = SettingsState(flags)
        self.documents = LspDocuments(self)
        self.folders: dict[Path, Folder] = {}
        self.worker = Worker()
        self.pending_messages: list[str] = []
        self.watch_registration: asyncio.Future[None] | None = None  # kept so it is not collected
        # Agent requests answered at once (a client without the stream capability), until they
        # end; kept so their tasks are not collected and glm.cancel finds them before they queue.
        self.detached: dict[Job, tuple[Path, asyncio.Task[None]]] = {}

    def report_server_error(self, error: Exception, source: Any) -> None:
        # pygls would also pop up "Error in server" for a request the client got an answer to.
        if not isinstance(error, AnsweredMalformed):
            super().report_server_error(error, source)

    # -- settings ------------------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self.settings_state.effective

    def update_settings(self, raw: Any, *, from_workspace: bool = False) -> str | None:
        """initializationOptions / didChangeConfiguration (`from_workspace`): core/settings.py."""
        return self.settings_state.update(raw, from_workspace=from_workspace)

    def show_error(self, message: str) -> None:
        self.window_show_message(lsp.ShowMessageParams(type=lsp.MessageType.Error, message=message))

    # -- what the client takes -----------------------------------------------------------------
    def streams(self) -> bool:
        """The client declared `experimental.glm.stream` (our plugins): it takes glm/stream
        and waits for an agent command's result; any other client gets it answered at once."""
        experimental = self.client_capabilities.experimental
        glm = experimental.get(STREAM_CAPABILITY) if isinstance(experimental, dict) else None
        return isinstance(glm, dict) and glm.get("stream") is True

    def shows_documents(self) -> bool:
        window = self.client_capabilities.window
        return bool(window and window.show_document and window.show_document.support)

    # -- folders -------------------------------------------------------------------------------
    def folder_roots(self) -> list[Path]:
        try:
            ws = self.workspace
        except RuntimeError:  # not initialized yet
            return []
        roots = [Path(to_fs_path(f.uri) or "") for f in ws.folders.values()]
        if not roots and ws.root_path:
            roots = [Path(ws.root_path)]
        return [r for r in roots if str(r)]

    def folder_for_path(self, path: Path) -> tuple[Folder, str] | None:
        best: tuple[Folder, str] | None = None
        for root in self.folder_roots():
            folder = self.folder(root)
            rel = folder.rel(path)
            if (
                rel is not None
                and not rel.startswith("..")
                and (best is None or len(str(folder.root)) > len(str(best[0].root)))
            ):
                best = (folder, rel)
        return best

    def folder(self, root: Path) -> Folder:
        key = Path(root).absolute()
        if key not in self.folders:
            self.folders[key] = Folder(key, lambda: self.settings, self.documents)
            note = foreign_note(key)  # a committed .glm-lsp/: said once, where the user looks
            if note is not None:
                self.window_show_message(
                    lsp.ShowMessageParams(type=lsp.MessageType.Warning, message=note)
                )
        return self.folders[key]

    def default_folder(self) -> Folder | None:
        roots = self.folder_roots()
        return self.folder(roots[0]) if roots else None

    # -- cancellation --------------------------------------------------------------------------
    def jobs(self) -> list[Job]:
        """The worker's jobs and the answered ones that have not reached it yet."""
        jobs = self.worker.jobs()
        return jobs + [job for job in self.detached if job not in jobs]

    def cancel_request(self, msg_id: Any) -> None:
        for job in self.worker.jobs():
            if job.msg_id == msg_id:
                job.cancel.set()

    def cancel_token(self, token: Any) -> None:
        for job in self.jobs():
            if job.token is not None and job.token == token:
                job.cancel.set()

    # -- edits ---------------------------------------------------------------------------------
    def reviews(self) -> bool:
        """Annotated edits: setting `review` is "preview" and the client can ask the user."""
        return self.settings.review == "preview" and self.annotates()

    def annotates(self) -> bool:
        """The client asks the user before a change annotated `needsConfirmation` (annotations
        travel in documentChanges only)."""
        workspace = self.client_capabilities.workspace
        edit_caps = workspace.workspace_edit if workspace else None
        return (
            edit_caps is not None
            and bool(edit_caps.document_changes)
            and edit_caps.change_annotation_support is not None
        )

    def edit_capabilities(self) -> EditCapabilities:
        """What the client's workspace/applyEdit takes, and the position encoding pygls
        negotiated at initialize (the client's first choice it knows, else UTF-16)."""
        workspace = self.client_capabilities.workspace
        edit_caps = workspace.workspace_edit if workspace else None
        try:
            negotiated = self.workspace.position_encoding
        except RuntimeError:  # not initialized
            negotiated = None
        encoding = str(getattr(negotiated, "value", negotiated) or "utf-16")
        if edit_caps is None:
            return EditCapabilities(position_encoding=encoding)
        operations = edit_caps.resource_operations or []
        return EditCapabilities(
            document_changes=bool(edit_caps.document_changes),
            resource_operations=frozenset(str(getattr(k, "value", k)) for k in operations),
            position_encoding=encoding,
        )

    async def confirm_sensitive(self, paths: list[str], label: str) -> bool:
        """window/showMessageRequest for a client that cannot annotate: apply or not."""
        answer = await self.window_show_message_request_async(
            lsp.ShowMessageRequestParams(
                type=lsp.MessageType.Warning,
                message=f"{label}: the edit changes {', '.join(paths)}, which can run code on "
                "its own (editor tasks, hooks, CI, agent settings). Apply it?",
                actions=[lsp.MessageActionItem(title=t) for t in (APPLY, DONT_APPLY)],
            )
        )
        return answer is not None and answer.title == APPLY

    async def send_edit(
        self, folder: Folder, change_set: ChangeSet, label: str, *, review: bool = False
    ) -> ApplyReport:
        """One workspace/applyEdit for the change set; the editor writes, never the server.
        `review`: annotated for the user's confirmation (when the client supports it), and
        afterwards what landed is looked up per change and hunk."""
        # Checked again now: a folder swapped for a symlink since the tool ran would lead the
        # editor's write outside the workspace (or into .git or the state dir).
        escapes = confinement_problems(
            folder.root, change_set, self.settings.state_dir(folder.root)
        )
        if escapes:
            return ApplyReport(False, "not applied: " + "; ".join(escapes))
        stale = sorted(
            set(check_unchanged(folder.root, change_set))
            | set(stale_open_docs(change_set, folder.open_doc))
        )
        if stale:
            return ApplyReport(
                False,
                f"changed since the agent read them: {', '.join(stale)}; "
                "glm.retry merges the edit onto the current text",
            )
        caps = self.edit_capabilities()
        refused = unsupported(change_set, caps)
        if refused:  # checked before anything is sent: never a partly applied edit
            return ApplyReport(False, refused)
        review = review and self.reviews()
        # A file that runs code on its own (sensitive.py) is never written unasked, whatever
        # the `review` setting: annotated for confirmation, else asked in a message.
        sensitive = change_set.sensitive()
        only_sensitive = bool(sensitive) and not review
        if only_sensitive and not self.annotates():
            if not await self.confirm_sensitive(sensitive, label):
                return ApplyReport(
                    False,
                    f"not applied: {', '.join(sensitive)} can run code on its own and the user "
                    "did not confirm the edit",
                )
            only_sensitive = False
        review = review or only_sensitive
        edit = to_workspace_edit(
            folder.client_root, change_set, folder.open_doc, caps, annotated=review
        )
        if review:
            edit.change_annotations = annotations(
                change_set, change_set.summary_text or label, only_sensitive=only_sensitive
            )
        result = await self.workspace_apply_edit_async(
            lsp.ApplyWorkspaceEditParams(edit=edit, label=label)
        )
        reason = result.failure_reason or "the editor declined the edit"
        if not result.applied and review:  # the user turned the whole preview down
            nothing = [Landing(c.path, c.kind, False) for c in change_set.changes]
            return ApplyReport(False, reason, nothing, ChangeSet(), change_set)
        if not result.applied:
            return ApplyReport(False, reason)
        if not review:
            return ApplyReport(True)
        return await self.what_landed(folder, change_set)

    async def what_landed(self, folder: Folder, change_set: ChangeSet) -> ApplyReport:
        """After a reviewed edit: open buffers from their didOpen/didChange (which may trail the
        answer: up to LANDING_WAIT seconds), closed files from disk."""

        def current(rel: str) -> str | None:
            return current_text(folder.root, rel, folder.open_doc)

        deadline = asyncio.get_running_loop().time() + LANDING_WAIT
        while not fully_landed(change_set, current):
            if asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(0.05)
        got = split(change_set, current, lambda rel: (folder.open_doc(rel) or (None, None))[1])
        if not got.landed:
            return ApplyReport(
                False, "the user rejected every change", got.landings, got.landed, got.remainder
            )
        return ApplyReport(True, None, got.landings, got.landed, got.remainder)

    def apply_from_worker(
        self, loop: asyncio.AbstractEventLoop, job: Job, folder: Folder, label: str
    ):
        """Session.run's `apply`, run on the worker thread: waits for the client, or a cancel."""

        def apply(change_set: ChangeSet) -> ApplyReport:
            future = asyncio.run_coroutine_threadsafe(
                self.send_edit(folder, change_set, label, review=True), loop
            )
            report = wait_from_worker(future, job.cancel)
            folder.remember(report, change_set, label, job.turn)
            return report

        return apply

    async def ask_permission(self, command: str, first: str) -> str:
        """window/showMessageRequest: Allow once / Always allow `first …` / Deny."""
        always = always_label(command)
        answer = await self.window_show_message_request_async(
            lsp.ShowMessageRequestParams(
                type=lsp.MessageType.Warning,
                message=f"GLM wants to run a command in a sandboxed copy of the workspace:\n{command}",
                actions=[
                    lsp.MessageActionItem(title="Allow once"),
                    lsp.MessageActionItem(title=always),
                    lsp.MessageActionItem(title="Deny"),
                ],
            )
        )
        title = answer.title if answer is not None else None
        return {"Allow once": ALLOW_ONCE, always: ALLOW_ALWAYS}.get(title or "", DENY)

    async def ask_user(self, message: str, always: str | None) -> str:
        """window/showMessageRequest for an MCP tool call or a workspace's .mcp.json."""
        titles = ["Allow once", *([always] if always else []), "Deny"]
        answer = await self.window_show_message_request_async(
            lsp.ShowMessageRequestParams(
                type=lsp.MessageType.Warning,
                message=message,
                actions=[lsp.MessageActionItem(title=t) for t in titles],
            )
        )
        title = answer.title if answer is not None else None
        return {"Allow once": ALLOW_ONCE, always: ALLOW_ALWAYS}.get(title or "", DENY)

    def prompt_from_worker(self, loop: asyncio.AbstractEventLoop, job: Job):
        """Session.run's `prompt`, run on the worker thread: waits for the user, or a cancel."""

        def prompt(message: str, always: str | None) -> str | None:
            return self._answer(self.ask_user(message, always), loop, job)

        return prompt

    def ask_from_worker(self, loop: asyncio.AbstractEventLoop, job: Job):
        """Session.run's `ask`, run on the worker thread: waits for the user, or a cancel."""

        def ask(command: str, first: str) -> str | None:
            return self._answer(self.ask_permission(command, first), loop, job)

        return ask

    @staticmethod
    def _answer(question: Any, loop: asyncio.AbstractEventLoop, job: Job) -> str | None:
        future = asyncio.run_coroutine_threadsafe(question, loop)
        try:
            return wait_from_worker(future, job.cancel)
        except Cancelled:
            raise
        except Exception as exc:  # the client cannot show the question: nobody to ask
            log.info("window/showMessageRequest failed: %s", exc)
            return None

    def stop(self) -> None:
        for job in self.detached:
            job.cancel.set()
        self.worker.shutdown()
        for folder in self.folders.values():
            folder.stop()
