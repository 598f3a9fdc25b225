"""What the agent asks of the ACP client while it runs on the worker thread: editor buffers,
permission for commands and edits, and writes through the client's file system.

Each call blocks the worker thread (never the event loop) until the client answers, the
request is cancelled, or the client takes longer than a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from acp import (
    RequestError,
    start_tool_call,
    text_block,
    tool_content,
    tool_terminal_ref,
    update_tool_call,
)
from acp.schema import ClientCapabilities, EnvVariable, PermissionOption, ToolCallUpdate

from glm_lsp import textfile
from glm_lsp.acp import updates
from glm_lsp.acp.relay import UpdateRelay
from glm_lsp.agent.edits import ChangeSet
from glm_lsp.agent.landing import ApplyReport, Landing
from glm_lsp.core.disk_apply import remember_edit, write_to_disk
from glm_lsp.core.worker import wait_from_worker
from glm_lsp.runtime.base import BackendError, Cancelled
from glm_lsp.sandbox.permissions import ALLOW_ALWAYS, ALLOW_ONCE, DENY, always_label
from glm_lsp.sandbox.process import HEAD_CHARS, TAIL_CHARS, Bounded, Finished

T = TypeVar("T")
READ_TIMEOUT_S = 15.0  # a client that does not answer a read: fall back to disk
WRITE_TIMEOUT_S = 30.0
CLIENT_WRITABLE = ("create", "modify")  # ACP fs has no rename or delete: those go to disk
EDIT_OPTIONS = [
    PermissionOption(option_id="allow_once", name="Apply", kind="allow_once"),
    PermissionOption(
        option_id="allow_always", name="Always apply edits in this session", kind="allow_always"
    ),
    PermissionOption(option_id="reject_once", name="Reject", kind="reject_once"),
]


class ClientBridge:
    def __init__(
        self,
        conn: Any,
        session: Any,  # acp.agent.AcpSession: meta, root, state_dir, always_edits
        caps: ClientCapabilities,
        relay: UpdateRelay,
        cancel: threading.Event,
        label: str,
    ) -> None:
        self.conn, self.session, self.caps, self.relay = conn, session, caps, relay
        self.cancel, self.label = cancel, label
        self.loop = asyncio.get_running_loop()
        self.turn = 0

    @property
    def session_id(self) -> str:
        return self.session.meta.id

    def _call(self, make: Callable[[], Awaitable[T]], timeout: float | None) -> T:
        """Runs a coroutine on the event loop and waits for it on this (worker) thread, giving up
        when the request is cancelled or the client takes longer than `timeout`."""
        future = asyncio.run_coroutine_threadsafe(_awaited(make), self.loop)
        return wait_from_worker(future, self.cancel, timeout)

    # -- reads -----------------------------------------------------------------------------------
    def buffer(self, rel: str) -> tuple[str, int] | None:
        """The client's view of a UTF-8 file (its unsaved buffer when open), None to read disk.
        Files the client cannot give us as text we read from disk ourselves."""
        if not (self.caps.fs and self.caps.fs.read_text_file):
            return None
        path = self.session.root / rel
        try:
            on_disk = textfile.read(path)
        except (OSError, textfile.NotText):
            return None
        if on_disk is None or not on_disk.editable:
            return None  # missing, or not UTF-8: the client would decode it its own way
        try:
            answer = self._call(
                lambda: self.conn.read_text_file(session_id=self.session_id, path=str(path)),
                READ_TIMEOUT_S,
            )
        except (RequestError, TimeoutError, ConnectionError):
            return None
        return answer.content, 0

    # -- permission ----------------------------------------------------------------------------
    def ask_command(self, command: str, _first_word: str) -> str | None:
        """run_command's question (sandbox/permissions.py) as session/request_permission."""
        call_id = self.relay.running_tool or f"command-{uuid.uuid4().hex[:12]}"
        options = [
            PermissionOption(option_id="allow_once", name="Allow once", kind="allow_once"),
            PermissionOption(
                option_id="allow_always", name=always_label(command), kind="allow_always"
            ),
            PermissionOption(option_id="reject_once", name="Reject", kind="reject_once"),
        ]
        tool_call = ToolCallUpdate(
            tool_call_id=call_id, title=f"Run `{command}`", kind="execute", status="pending"
        )
        choice = self._permission(tool_call, options)
        return {"allow_once": ALLOW_ONCE, "allow_always": ALLOW_ALWAYS}.get(choice or "", DENY)

    def ask_tool(self, message: str, always_label: str | None) -> str | None:
        """An MCP tool call (or an unapproved .mcp.json) that the settings do not allow, as
        session/request_permission; "always" only where the policy can remember it."""
        call_id = self.relay.running_tool or f"mcp-{uuid.uuid4().hex[:12]}"
        options = [PermissionOption(option_id="allow_once", name="Allow once", kind="allow_once")]
        if always_label:
            options.append(
                PermissionOption(option_id="allow_always", name=always_label, kind="allow_always")
            )
        options.append(PermissionOption(option_id="reject_once", name="Reject", kind="reject_once"))
        # The title is one line; the whole question (every entry an approval covers) is content.
        title = message.split("\n", 1)[0]
        tool_call = ToolCallUpdate(
            tool_call_id=call_id,
            title=title if len(title) <= 200 else title[:199] + "…",
            kind="other",
            status="pending",
            content=[tool_content(text_block(message))],
        )
        choice = self._permission(tool_call, options)
        return {"allow_once": ALLOW_ONCE, "allow_always": ALLOW_ALWAYS}.get(choice or "", DENY)

    def _permission(self, tool_call: ToolCallUpdate, options: list[PermissionOption]) -> str | None:
        """The chosen option id; None when the client cancelled the question."""

        async def ask() -> Any:
            await self.relay.barrier()  # the question comes after what the model said before it
            return await self.conn.request_permission(
                session_id=self.session_id, tool_call=tool_call, options=options
            )

        try:
            answer = self._call(ask, None)
        except RequestError as exc:
            raise BackendError(f"the client failed the permission request: {exc}") from None
        outcome = answer.outcome
        if getattr(outcome, "outcome", None) != "selected":
            raise Cancelled()  # the client cancels open questions when the prompt is cancelled
        return outcome.option_id

    # -- commands ------------------------------------------------------------------------------
    @property
    def has_terminal(self) -> bool:
        return bool(self.caps.terminal)

    def run_in_terminal(
        self,
        argv: list[str],
        cwd: Path,
        env: dict[str, str],
        timeout: float,
        cancel: threading.Event,
        _on_output: Any,
    ) -> Finished:
        """run_command's (sandboxed) command line in the client's terminal, shown in the tool
        call as it runs; killed on timeout or cancel, always released."""
        sid, call_id = self.session_id, self.relay.running_tool

        async def create() -> str:
            await self.relay.barrier()
            made = await self.conn.create_terminal(
                session_id=sid,
                command=argv[0],
                args=list(argv[1:]),
                cwd=str(cwd),
                env=[EnvVariable(name=k, value=v) for k, v in env.items()],
                output_byte_limit=4 * (HEAD_CHARS + TAIL_CHARS),
            )
            if call_id:
                await self.relay.send(
                    update_tool_call(call_id, content=[tool_terminal_ref(made.terminal_id)])
                )
            return made.terminal_id

        terminal = self._call(create, WRITE_TIMEOUT_S)
        timed_out = False
        try:
            try:
                self._call(
                    lambda: self.conn.wait_for_terminal_exit(session_id=sid, terminal_id=terminal),
                    timeout,
                )
            except (TimeoutError, Cancelled) as stop:
                timed_out = isinstance(stop, TimeoutError)
                self._quietly(lambda: self.conn.kill_terminal(session_id=sid, terminal_id=terminal))
                if not timed_out:
                    raise
            shown = self._call(
                lambda: self.conn.terminal_output(session_id=sid, terminal_id=terminal),
                WRITE_TIMEOUT_S,
            )
        finally:
            self._quietly(lambda: self.conn.release_terminal(session_id=sid, terminal_id=terminal))
        bounded = Bounded()
        bounded.add(shown.output)
        status = shown.exit_status
        code = status.exit_code if status and status.exit_code is not None else -1
        return Finished(code, bounded.text(), timed_out, bounded.dropped)

    def _quietly(self, make: Callable[[], Awaitable[Any]]) -> None:
        """A clean-up call whose failure changes nothing for the model (the client may have
        ended the terminal itself); bounded, and never cancelled by the request's cancel."""
        future = asyncio.run_coroutine_threadsafe(_awaited(make), self.loop)
        with contextlib.suppress(Exception):
            future.result(timeout=10)

    # -- edits ---------------------------------------------------------------------------------
    def land(self, changes: ChangeSet) -> ApplyReport:
        """Session.run's `apply`: ask (unless "always" was chosen), then write all or nothing."""
        root = self.session.root
        call_id = f"edit-{uuid.uuid4().hex[:12]}"
        sensitive = changes.sensitive()
        title = f"Apply the edit to {len(changes.changes)} file(s)"
        if sensitive:
            title += f" ({', '.join(sensitive)} can run code on its own)"
        diffs = [updates.diff_of(root, c) for c in changes.changes if c.after is not None]
        where = [updates.locations(root, {"path": c.path})[0] for c in changes.changes]
        self._send(
            start_tool_call(
                call_id, title, kind="edit", status="pending", content=diffs, locations=where
            )
        )
        if not self.session.always_edits:
            tool_call = ToolCallUpdate(
                tool_call_id=call_id, title=title, kind="edit", status="pending", content=diffs
            )
            choice = self._permission(tool_call, EDIT_OPTIONS)
            if choice == "reject_once":
                self._finish(call_id, False, "rejected")
                landings = [Landing(c.path, c.kind, False) for c in changes.changes]
                return ApplyReport(
                    False, "the user rejected the edit", landings, ChangeSet(), changes
                )
            if choice == "allow_always":
                self.session.remember_always_edits()
        if self._client_writes(changes):
            applied, reason = self._write_through_client(changes)
        else:
            applied, reason = write_to_disk(
                root,
                self.session.state_dir,
                changes,
                allow_sensitive=True,  # the user saw it
            )
        if applied:
            remember_edit(self.session.root, changes, ChangeSet(), self.label, self.turn)
        self._finish(call_id, applied, "applied" if applied else reason or "not applied")
        return ApplyReport(applied, reason)

    def _client_writes(self, changes: ChangeSet) -> bool:
        fs = self.caps.fs
        return bool(fs and fs.write_text_file) and all(
            c.kind in CLIENT_WRITABLE for c in changes.changes
        )

    def _write_through_client(self, changes: ChangeSet) -> tuple[bool, str | None]:
        """Through the editor, so its buffers and undo see the edit; a failed write puts the
        files written before it back."""
        stale = [
            c.path
            for c in changes.changes
            if c.kind == "modify" and self._current(c.path) != c.before
        ]
        if stale:
            return False, f"not applied: changed since the agent read them: {', '.join(stale)}"
        written = []
        for change in changes.changes:
            try:
                self._write(change.path, change.after or "")
            except (RequestError, TimeoutError, ConnectionError) as exc:
                for done in reversed(written):
                    # A failed undo write is not reported apart: the sentence below names the
                    # file that failed first, and the editor's undo has the rest.
                    with contextlib.suppress(RequestError, TimeoutError, ConnectionError):
                        self._write(done.path, done.before or "")
                return False, f"not applied: the client could not write {change.path}: {exc}"
            written.append(change)
        return True, None

    def _current(self, rel: str) -> str | None:
        buffered = self.buffer(rel)
        if buffered is not None:
            return buffered[0]
        try:
            return textfile.read_native(self.session.root / rel)
        except (OSError, textfile.NotText):
            return None

    def _write(self, rel: str, content: str) -> None:
        path = str(self.session.root / rel)
        self._call(
            lambda: self.conn.write_text_file(
                session_id=self.session_id, path=path, content=content
            ),
            WRITE_TIMEOUT_S,
        )

    def _send(self, update: Any) -> None:
        async def send() -> None:
            await self.relay.barrier()
            await self.relay.send(update)

        self._call(send, None)

    def _finish(self, call_id: str, applied: bool, note: str) -> None:
        self._send(
            update_tool_call(
                call_id,
                status="completed" if applied else "failed",
                content=None if applied else [tool_content(text_block(note))],
            )
        )


async def _awaited(make: Callable[[], Awaitable[Any]]) -> Any:
    return await make()
