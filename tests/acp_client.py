"""A scripted ACP client for the tests: the Python SDK's client side over a real `glm-lsp acp`.

It records every session/update, answers permission requests from a list, serves reads from
its own "unsaved buffers" (else disk) and writes to disk as an editor that saves would.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from acp import PROTOCOL_VERSION, RequestError, spawn_agent_process
from acp.schema import (
    AllowedOutcome,
    ClientCapabilities,
    CreateTerminalResponse,
    DeniedOutcome,
    FileSystemCapabilities,
    KillTerminalResponse,
    ReadTextFileResponse,
    ReleaseTerminalResponse,
    RequestPermissionResponse,
    TerminalExitStatus,
    TerminalOutputResponse,
    WaitForTerminalExitResponse,
    WriteTextFileResponse,
)
from acp.transports import default_environment


class RecordingClient:
    def __init__(self, *, buffers: dict[str, str] | None = None, answers: list[str] | None = None):
        self.updates: list[tuple[str, Any]] = []
        self.permissions: list[Any] = []
        # what came in order: ("update", update) and ("answer", option id) once a question is
        # answered (the agent's next message can only follow the answer)
        self.timeline: list[tuple[str, Any]] = []
        self.answers = list(answers or [])  # option ids, in order; empty: cancelled
        self.buffers = dict(buffers or {})  # absolute path -> unsaved text
        self.reads: list[str] = []
        self.writes: list[tuple[str, str]] = []
        self.terminals: dict[str, tuple[list[str], Any]] = {}  # id -> (argv, process)
        self.released: list[str] = []
        self._arrived = asyncio.Condition()  # notified on every session update

    def on_connect(self, conn: Any) -> None:
        self.conn = conn

    async def session_update(self, session_id: str, update: Any, **_: Any) -> None:
        self.updates.append((session_id, update))
        self.timeline.append(("update", update))
        async with self._arrived:
            self._arrived.notify_all()

    async def first_of_kind(self, kind: str, timeout: float = 30) -> Any:
        """The first update of `kind`, as soon as it arrives (the timeout is a safety net)."""
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: self.of_kind(kind)), timeout)
        return self.of_kind(kind)[0]

    async def request_permission(self, session_id: str, tool_call: Any, options: list, **_: Any):
        self.permissions.append((tool_call, [o.option_id for o in options]))
        if not self.answers:
            return RequestPermissionResponse(outcome=DeniedOutcome(outcome="cancelled"))
        choice = self.answers.pop(0)
        self.timeline.append(("answer", choice))
        return RequestPermissionResponse(
            outcome=AllowedOutcome(outcome="selected", option_id=choice)
        )

    async def read_text_file(self, session_id: str, path: str, **_: Any) -> ReadTextFileResponse:
        self.reads.append(path)
        if path in self.buffers:
            return ReadTextFileResponse(content=self.buffers[path])
        file = Path(path)
        if not file.is_file():
            raise RequestError.resource_not_found(path)
        return ReadTextFileResponse(content=file.read_text(encoding="utf-8"))

    async def write_text_file(self, session_id: str, path: str, content: str, **_: Any):
        self.writes.append((path, content))
        self.buffers.pop(path, None)
        Path(path).write_text(content, encoding="utf-8")  # the editor saves
        return WriteTextFileResponse()

    # -- a terminal as an editor runs it: a real process, its output kept ----------------------
    async def create_terminal(self, session_id: str, command: str, args=None, env=None, cwd=None,
                              output_byte_limit=None, **_: Any) -> CreateTerminalResponse:  # fmt: skip
        argv = [command, *(args or [])]
        variables = {v.name: v.value for v in env or []}
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=variables or None,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        terminal_id = f"term-{len(self.terminals) + 1}"
        self.terminals[terminal_id] = (argv, process)
        return CreateTerminalResponse(terminal_id=terminal_id)

    async def wait_for_terminal_exit(self, session_id: str, terminal_id: str, **_: Any):
        code = await self.terminals[terminal_id][1].wait()
        return WaitForTerminalExitResponse(exit_code=code)

    async def terminal_output(self, session_id: str, terminal_id: str, **_: Any):
        process = self.terminals[terminal_id][1]
        out = (await process.stdout.read()).decode() if process.returncode is not None else ""
        status = TerminalExitStatus(exit_code=process.returncode)
        return TerminalOutputResponse(output=out, truncated=False, exit_status=status)

    async def kill_terminal(self, session_id: str, terminal_id: str, **_: Any):
        self.terminals[terminal_id][1].kill()
        return KillTerminalResponse()

    async def release_terminal(self, session_id: str, terminal_id: str, **_: Any):
        self.released.append(terminal_id)
        return ReleaseTerminalResponse()

    # -- what the tests read -------------------------------------------------------------------
    def of_kind(self, kind: str) -> list[Any]:
        return [u for _, u in self.updates if u.session_update == kind]

    def thoughts(self) -> str:
        return "".join(u.content.text for u in self.of_kind("agent_thought_chunk"))

    def messages(self) -> str:
        return "".join(u.content.text for u in self.of_kind("agent_message_chunk"))

    def said_after_the_last_answer(self) -> str:
        """The message text that came after the last permission answer."""
        last = max(i for i, (what, _) in enumerate(self.timeline) if what == "answer")
        return "".join(
            u.content.text
            for what, u in self.timeline[last:]
            if what == "update" and u.session_update == "agent_message_chunk"
        )

    def edit_questions(self) -> list[tuple[str, str, str | None, str, list[str]]]:
        """Each permission asked for an edit: (title, diff path, old text, new text, locations);
        it fails unless the question carries exactly one diff."""
        found = []
        for tool_call, _ in self.permissions:
            if tool_call.kind != "edit":
                continue
            (diff,) = tool_call.content  # one file's diff, nothing else
            assert diff.type == "diff"
            where = [loc.path for loc in tool_call.locations]
            found.append((tool_call.title, diff.path, diff.old_text, diff.new_text, where))
        return found


def acp_command(model: Path, replies: Path, *flags: str) -> list[str]:
    return [
        sys.executable, "-m", "glm_lsp.cli", "acp", "--model", str(model),
        "--scripted-replies", str(replies), *flags,
    ]  # fmt: skip


def write_replies(path: Path, replies: list[str]) -> Path:
    path.write_text(json.dumps(replies), encoding="utf-8")
    return path


@asynccontextmanager
async def acp_agent(
    client: RecordingClient, command: list[str], *, fs: bool = True, terminal: bool = False
):
    # The SDK's trimmed environment, plus the test's own user state (conftest's XDG_STATE_HOME).
    env = default_environment() | {
        k: v for k, v in os.environ.items() if k.startswith(("XDG_", "GLM_LSP_"))
    }
    # A loaded machine may need more than the SDK's 2 s to see the agent exit after stdin closes.
    spawn = spawn_agent_process(
        client, command[0], *command[1:], env=env, transport_kwargs={"shutdown_timeout": 20.0}
    )
    async with spawn as (conn, process):
        caps = ClientCapabilities(
            fs=FileSystemCapabilities(read_text_file=fs, write_text_file=fs), terminal=terminal
        )
        reply = await conn.initialize(protocol_version=PROTOCOL_VERSION, client_capabilities=caps)
        yield conn, reply, process
