"""Session updates from the worker thread to the client, in order.

The agent runs on the worker thread; updates go through an asyncio queue to one sender task, so
the order the model produced is the order the client sees. Deltas of one kind that queued up
while the previous update was being written are joined into one chunk.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from acp import (
    start_tool_call,
    update_agent_message_text,
    update_agent_thought_text,
    update_plan,
    update_tool_call,
)

from glm_lsp.acp import updates
from glm_lsp.acp.plan import parse_plan
from glm_lsp.agent.loop import ToolEvent

JOINED = {"reasoning": update_agent_thought_text, "content": update_agent_message_text}
WAITS = ("loading", "waiting")  # progress that means the model is not generating yet
OUTPUT_LIMIT = 8000  # characters of a running command's output shown live


class UpdateRelay:
    def __init__(self, conn: Any, session_id: str, root: Path) -> None:
        self.conn, self.session_id, self.root = conn, session_id, root
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue()
        self.task = self.loop.create_task(self._send_all())
        self.running_tool: str | None = None  # the tool call a command's output belongs to
        self.output = ""
        self.said = ""  # the answer text since the last plan check
        self.plan: list[Any] | None = None
        self.wait_id: str | None = None  # the "Loading the model" tool call while it shows
        self.waits = 0

    # -- worker thread -------------------------------------------------------------------------
    def sink(self, kind: str, text: str) -> None:
        if kind == "progress" and text.startswith(WAITS):
            self._put("wait", text)
        elif kind in JOINED:
            self._put(kind, text)
        elif kind == "tool_output" and self.running_tool:
            self._put("tool_output", (self.running_tool, text))

    def on_tool(self, event: ToolEvent) -> None:
        self.running_tool = event.id if event.result is None else None
        self._put("tool", dataclasses.replace(event))  # a copy: the loop mutates the event

    def _put(self, kind: str, payload: Any) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (kind, payload))

    # -- event loop ----------------------------------------------------------------------------
    async def send(self, update: Any) -> None:
        await self.conn.session_update(session_id=self.session_id, update=update)

    async def _send_all(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty():  # whatever queued while the last update was written
                batch.append(self.queue.get_nowait())
            for item in joined(batch):
                if item is None:
                    if self.wait_id is not None:  # it failed or was cancelled while waiting
                        await self.send(update_tool_call(self.wait_id, status="failed"))
                        self.wait_id = None
                    await self._plan_check()
                    return
                await self._send_one(*item)

    async def _send_one(self, kind: str, payload: Any) -> None:
        if kind == "wait":
            await self._show_wait(payload)
            return
        if self.wait_id is not None and kind != "barrier":  # the model is generating now
            await self.send(update_tool_call(self.wait_id, status="completed"))
            self.wait_id = None
        if kind in JOINED:
            await self.send(JOINED[kind](payload))
            if kind == "content":
                self.said += payload
        elif kind == "tool":
            event: ToolEvent = payload
            if event.result is None:
                await self._plan_check()  # the model's text before its first call may be a plan
                self.output = ""
                await self.send(updates.started(self.root, event))
            else:
                await self.send(updates.finished(self.root, event))
        elif kind == "barrier":
            payload.set_result(None)
        elif kind == "tool_output":
            call_id, text = payload
            self.output = (self.output + text)[-OUTPUT_LIMIT:]
            block = updates.tool_content(updates.text_block(self.output))
            await self.send(update_tool_call(call_id, content=[block]))

    async def _show_wait(self, text: str) -> None:
        """The host loading the model or another client's generation first: an in-progress tool
        call the panel shows ("Loading GLM-4.7 (42%)"), completed when generation starts."""
        title = text[:1].upper() + text[1:]
        if self.wait_id is None:
            self.waits += 1
            self.wait_id = f"glm-wait-{self.waits}"
            await self.send(
                start_tool_call(self.wait_id, title, kind="other", status="in_progress")
            )
        else:
            await self.send(update_tool_call(self.wait_id, title=title))

    async def _plan_check(self) -> None:
        plan, self.said = parse_plan(self.said), ""
        if plan is not None and plan != self.plan:
            self.plan = plan
            await self.send(update_plan(plan))

    async def barrier(self) -> None:
        """Returns once everything queued before it has been sent (event loop side)."""
        reached = self.loop.create_future()
        self.queue.put_nowait(("barrier", reached))
        await reached

    async def close(self) -> None:
        """Waits until every queued update is sent."""
        self.queue.put_nowait(None)
        await self.task


def joined(batch: list[tuple[str, Any] | None]) -> list[tuple[str, Any] | None]:
    """Neighbouring reasoning (or content) deltas as one."""
    out: list[tuple[str, Any] | None] = []
    for item in batch:
        last = out[-1] if out else None
        if item is not None and last is not None and item[0] in JOINED and last[0] == item[0]:
            out[-1] = (item[0], last[1] + item[1])
        else:
            out.append(item)
    return out
