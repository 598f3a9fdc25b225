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
    text_block,
    tool_content,
    tool_diff_content,
    tool_terminal_ref,
    update_tool_call,
)
from acp.schema import (
    ClientCapabilities,
    EnvVariable,
    PermissionOption,
    ToolCallLocation,
    ToolCallUpdate,
)

from glm_lsp import textfile
from glm_lsp.acp.relay import UpdateRelay
from glm_lsp.agent.approval import Verdict
from glm_lsp.agent.edits import ChangeSet, FileChange
from glm_lsp.core.disk_apply import remember_edit, write_to_disk
from glm_lsp.core.worker import wait_from_worker
from glm_lsp.runtime.base import BackendError, Cancelled
from glm_lsp.sandbox.permissions import ALLOW_ALWAYS, ALLOW_ONCE, DENY, always_label
from glm_lsp.sandbox.process import HEAD_CHARS, TAIL_CHARS, Bounded, Finished

T = TypeVar("T")
READ_TIMEOUT_S = 15.0  # a client that does not answer a read: fall back to disk
WRITE_TIMEOUT_S = 30.0
CLIENT_WRITABLE = ("create", "modify")  # ACP fs has no rename or delete: those go to disk


def edit_options(step: FileChange) -> list[PermissionOption]:
    """Allow once / Always (not for a file that can run code: those are asked every time) /
    Reject."""
    options = [PermissionOption(option_id="allow_once", name="Allow once", kind="allow_once")]
    if not step.sensitive:
        options.append(
            PermissionOption(
                option_id="allow_always",
                name="Always allow edits in this session",
                kind="allow_always",
            )
        )
    options.append(PermissionOption(option_id="reject_once", name="Reject", kind="reject_once"))
    return options


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
    def approve_edit(self, step: FileChange, call_id: str, so_far: ChangeSet) -> Verdict:
        """Session.run's `approve`: one file's change put to the user as the model makes it (in
        its own tool call, with its own diff and path), then written. Sensitive files are asked
        every time; the request's approved edits so far become the one edit undo reverts."""
        rel = step.path
        if step.sensitive or not self.session.always_edits:
            choice = self._permission(self._edit_question(step, call_id), edit_options(step))
            if choice not in ("allow_once", "allow_always"):
                return Verdict(False, f"the user rejected this change to {rel}; it was not made")
            if choice == "allow_always":
                self.session.remember_always_edits()
            approved = f"the user approved this change to {rel}; it is saved"
        else:
            approved = f"this change to {rel} is saved (the user allows edits in this session)"
        written, reason = self._write_step(step)
        if not written:
            return Verdict(False, f"the change to {rel} was approved but not saved: {reason}")
        remember_edit(self.session.root, so_far, ChangeSet(), self.label, self.turn)
        return Verdict(True, approved)

    def _edit_question(self, step: FileChange, call_id: str) -> ToolCallUpdate:
        root = self.session.root
        verb = {"create": "Create", "delete": "Delete", "rename": "Rename"}.get(step.kind, "Edit")
        title = f"{verb} {step.path}"
        if step.kind == "rename":
            title = f"Rename {step.old_path} to {step.path}"
        if step.sensitive:
            title += " (it can run code on its own)"
        paths = [step.path] + ([step.old_path] if step.kind == "rename" and step.old_path else [])
        return ToolCallUpdate(
            tool_call_id=call_id,
            title=title,
            kind="edit",
            status="pending",
            content=[tool_diff_content(str(root / step.path), step.after or "", step.before)],
            locations=[ToolCallLocation(path=str(root / p)) for p in paths],
        )

    def _write_step(self, step: FileChange) -> tuple[bool, str | None]:
        """One approved change, written only where the file still holds what the change starts
        from: through the client (its buffers and undo see it) where it writes files, else to
        disk as one atomic transaction (renames and deletes always: ACP's fs has neither)."""
        now = self._current(step.old_path) if step.old_path else self._current(step.path)
        if now != step.before:
            what = step.old_path or step.path
            return False, f"{what} changed since you read it; read it again"
        fs = self.caps.fs
        if step.kind in CLIENT_WRITABLE and fs and fs.write_text_file:
            try:
                self._write(step.path, step.after or "")
            except (RequestError, TimeoutError, ConnectionError) as exc:
                return False, f"the client could not write {step.path}: {exc}"
            return True, None
        root, state = self.session.root, self.session.state_dir
        return write_to_disk(root, state, ChangeSet([step]), allow_sensitive=True)  # asked

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


async def _awaited(make: Callable[[], Awaitable[Any]]) -> Any:
    return await make()
