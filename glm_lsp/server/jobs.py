"""Requests in flight: the one worker thread, the stream relay and work-done progress.

The model runs on a single dedicated thread (not pygls's pool, which also reads stdin), so the
event loop keeps answering code actions, status and edits while a generation runs; a second
request waits its turn on the same thread.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import TYPE_CHECKING

from lsprotocol import types as lsp

from glm_lsp.core.worker import Job
from glm_lsp.wire.commands import STREAM_METHOD, StreamNotification
from glm_lsp.wire.converter import converter

if TYPE_CHECKING:
    from glm_lsp.server.app import GlmServer

PERCENT = re.compile(r"\((\d{1,3})%\)$")
FLUSH_S = 0.03  # stream deltas are sent at most this late, so a client is not flooded per token
TAIL_S = 0.25  # a plain client's progress shows the latest streamed words this often
TAIL_CHARS = 60
# A plain client sees the stream in the progress message: what the model is doing, then its words.
LABELS = {"thinking": "thinking…", "writing": "writing…"}
DELTA_LABELS = {"reasoning": "thinking…", "content": "writing…"}


class StreamRelay:
    """Sends `glm/stream` notifications in order, joining deltas of one kind for ~30 ms; for a
    client without the stream capability (`stream` False) the deltas go into the work-done
    progress message instead ("thinking… <its latest words>")."""

    def __init__(
        self, server: GlmServer, job: Job, progress: Progress, stream: bool = True
    ) -> None:
        self.server, self.job, self.progress = server, job, progress
        self.stream = stream
        self.loop = asyncio.get_running_loop()
        self.kind = ""
        self.parts: list[str] = []
        self.timer: asyncio.TimerHandle | None = None
        self.tail = ""  # a plain client's latest streamed words

    def sink(self, kind: str, text: str) -> None:
        """Called on the worker thread: hand over to the loop, keeping order."""
        self.loop.call_soon_threadsafe(self.push, kind, text)

    def push(self, kind: str, text: str) -> None:
        if kind == "tool_output":  # a running command's output: tool_result pieces on the wire
            kind = "tool_result"
        if kind == "progress":
            self.flush()
            self.progress.report(text if self.stream else LABELS.get(text, text))
            return
        if not self.stream:
            self.carry(kind, text)
            return
        if kind != self.kind:
            self.flush()
        self.kind = kind
        self.parts.append(text)
        if kind in ("tool_call", "tool_result"):  # whole messages: no reason to wait
            self.flush()
        elif self.timer is None:
            self.timer = self.loop.call_later(FLUSH_S, self.flush)

    def carry(self, kind: str, text: str) -> None:
        """A plain client: reasoning and answer text as the progress message, at most every
        TAIL_S (tool calls and results have their own progress message)."""
        if kind not in DELTA_LABELS:
            return
        if kind != self.kind:
            self.tail = ""
        self.kind = kind
        self.tail = (self.tail + text)[-4 * TAIL_CHARS :]
        if self.timer is None:
            self.timer = self.loop.call_later(TAIL_S, self.report_tail)

    def report_tail(self) -> None:
        self.timer = None
        words = " ".join(self.tail.split())[-TAIL_CHARS:]
        if words:
            self.progress.report(f"{DELTA_LABELS[self.kind]} {words}")

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.stream:  # what follows a step starts a new tail
            self.kind, self.tail = "", ""
        if self.parts:
            text, self.parts = "".join(self.parts), []
            note = StreamNotification(self.job.turn, self.kind, text)  # type: ignore[arg-type]
            self.server.protocol.notify(STREAM_METHOD, converter.unstructure(note))


class Progress:
    """`$/progress` for one request when the client supports it; a no-op otherwise."""

    def __init__(self, server: GlmServer, title: str) -> None:
        self.server, self.title = server, title
        self.token: str | None = None
        self.last = ""

    async def begin(self, message: str) -> str | None:
        caps = self.server.client_capabilities
        if not (caps and caps.window and caps.window.work_done_progress):
            return None
        token = str(uuid.uuid4())
        try:
            await self.server.work_done_progress.create_async(token)
        except Exception:  # the client refused: run without progress
            return None
        self.token = token
        self.server.work_done_progress.begin(
            token, lsp.WorkDoneProgressBegin(title=self.title, cancellable=True, message=message)
        )
        self.last = message
        return token

    def report(self, message: str) -> None:
        """A message ending in "(NN%)" (the host loading the model) carries its percentage."""
        if self.token and message != self.last:
            self.last = message
            match = PERCENT.search(message)
            self.server.work_done_progress.report(
                token=self.token,
                value=lsp.WorkDoneProgressReport(
                    message=message, percentage=int(match[1]) if match else None
                ),
            )

    def end(self, message: str) -> None:
        if self.token:
            self.server.work_done_progress.end(self.token, lsp.WorkDoneProgressEnd(message=message))
            self.server.work_done_progress.tokens.pop(self.token, None)
            self.token = None
