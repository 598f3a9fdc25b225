"""Connections to MCP servers on the `mcp` SDK, run on their own event-loop thread.

The agent runs on the worker thread and the SDK is async: every call crosses over with
run_coroutine_threadsafe and waits a bounded time, giving up early when the request is cancelled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from pathlib import Path
from typing import IO, Any, TypeVar

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client  # the SDK's client with MCP timeouts
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, CallToolResult, Tool

from glm_lsp import state_files
from glm_lsp.mcp.config import ServerConfig, expand
from glm_lsp.runtime.base import Cancelled

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_PAGES = 20  # tools/list pages: a paginator that never ends cannot hang a request
CLOSE_WAIT = 5.0


class CallTimeout(Exception):
    """A call that did not finish in time; it was cancelled."""


class LoopThread:
    """An asyncio loop on a daemon thread: the home of every MCP session of one workspace."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def call(
        self,
        coro: Coroutine[Any, Any, T],
        timeout: float,
        cancel: threading.Event | None = None,
    ) -> T:
        """The coroutine's result; CallTimeout past `timeout`, Cancelled when `cancel` is set
        (the coroutine is cancelled on the loop either way)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        deadline = time.monotonic() + timeout
        while not future.done():
            left = deadline - time.monotonic()
            if cancel is not None and cancel.is_set():
                future.cancel()
                raise Cancelled()
            if left <= 0:
                future.cancel()
                raise CallTimeout()
            concurrent.futures.wait([future], timeout=min(0.1, left))
        return future.result()

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(CLOSE_WAIT)
        if not self.thread.is_alive():
            self.loop.close()


def connection_lost(exc: BaseException) -> bool:
    """The server went away (process exited, stream broken), as opposed to a refused call."""
    if isinstance(exc, MCPError):
        return exc.code == CONNECTION_CLOSED
    return isinstance(
        exc, (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError)
    )


class Connection:
    """One server: its session lives in a task on the loop that holds `async with Client`
    open (anyio scopes must close in the task that opened them) until stop() or a crash."""

    def __init__(self, config: ServerConfig, cwd: Path, errlog: Path) -> None:
        self.config, self.cwd, self.errlog_path = config, cwd, errlog
        self.state = "not started"  # starting | running | failed | crashed | stopped
        self.error: str | None = None
        self.tools: list[Tool] = []
        self.restarts = 0
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._errlog: IO[str] | None = None

    @property
    def running(self) -> bool:
        return self.state == "running" and self._client is not None

    async def start(self) -> None:
        """Connect and list the tools; raises what went wrong (the state says "failed")."""
        await self.stop()
        self.state, self.error = "starting", None
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._serve(ready, self._stop))
        try:
            await ready
        except BaseException as exc:
            self.state = "failed"
            self.error = self.error or describe_error(exc)
            self._stop.set()  # what follows in _serve is this failure, not a crash
            self._task.cancel()
            raise

    async def _serve(self, ready: asyncio.Future[None], stop: asyncio.Event) -> None:
        try:
            async with AsyncExitStack() as stack:
                client = await stack.enter_async_context(await self._client_for(stack))
                tools: list[Tool] = []
                cursor: str | None = None
                for _ in range(MAX_PAGES):
                    page = await client.list_tools(cursor=cursor)
                    tools.extend(page.tools)
                    cursor = page.next_cursor
                    if cursor is None:
                        break
                if ready.done():  # start() gave up meanwhile
                    return
                self._client, self.tools, self.state = client, tools, "running"
                ready.set_result(None)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                self.error = describe_error(exc)
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(exc))
            elif not stop.is_set():
                self.lost(describe_error(exc))
            if not isinstance(exc, Exception):
                raise
        finally:
            self._client = None
            if self._errlog is not None:
                self._errlog.close()
                self._errlog = None

    async def _client_for(self, stack: AsyncExitStack) -> Client:
        c = expand(self.config)
        if c.command:
            state_files.private_dir(self.errlog_path.parent)
            self._errlog = state_files.open_append_text(self.errlog_path)  # never via a link
            params = StdioServerParameters(
                command=c.command, args=list(c.args), env=dict(c.env) or None, cwd=self.cwd
            )
            return Client(stdio_client(params, errlog=self._errlog), cache=None)
        http = await stack.enter_async_context(create_mcp_http_client(headers=dict(c.headers)))
        return Client(streamable_http_client(str(c.url), http_client=http), cache=None)

    def lost(self, why: str) -> None:
        """The server is gone: say so, and let the next need start it again."""
        if self.state == "running":
            log.warning("MCP server %r stopped unexpectedly: %s", self.config.name, why)
        self.state, self.error = "crashed", why
        self._client = None
        if self._stop is not None:
            self._stop.set()

    async def call(self, tool: str, arguments: dict[str, Any]) -> CallToolResult:
        client = self._client
        if client is None:
            raise MCPError(CONNECTION_CLOSED, "Connection closed")
        try:
            return await client.call_tool(tool, arguments)
        except Exception as exc:
            if connection_lost(exc):
                self.lost(describe_error(exc))
            raise

    async def stop(self) -> None:
        task, self._task = self._task, None
        if self._stop is not None:
            self._stop.set()
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(task, CLOSE_WAIT)
            except BaseException as exc:  # a server that will not go: its process is killed
                log.debug("MCP server %r stopped with %r", self.config.name, exc)
        if self.state in ("running", "starting"):
            self.state = "stopped"
        self._client = None


def describe_error(exc: BaseException) -> str:
    """One line for the model and the user; exception groups say what was inside."""
    while isinstance(getattr(exc, "exceptions", None), tuple) and exc.exceptions:  # type: ignore[attr-defined]
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    if isinstance(exc, FileNotFoundError):
        return f"the program was not found ({exc.filename or exc})"
    if isinstance(exc, MCPError):
        return f"{exc.message} (MCP error {exc.code})"
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 300 else text[:299] + "…"
