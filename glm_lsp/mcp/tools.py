"""One workspace's MCP servers as agent tools: which servers (settings, an ACP session's, the
approved `.mcp.json`), started on the first request that needs the tool list, restarted after a
crash with a note, and every call through ToolPermissions with a bounded wait."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glm_lsp.config import Settings
from glm_lsp.glm.tool_text import error
from glm_lsp.mcp.approval import Approvals
from glm_lsp.mcp.config import (
    PROJECT_FILE,
    McpConfigError,
    ProjectFile,
    ServerConfig,
    merge,
    read_project_file,
    servers,
)
from glm_lsp.runtime.base import Cancelled
from glm_lsp.sandbox.permissions import ALLOW_ALWAYS, ALLOW_ONCE, DENY, Prompt, ToolPermissions

# The MCP SDK (client.py, format.py) is imported only once a server is configured: importing it
# costs ~0.8 s of every front-end's start-up, and most workspaces have no MCP server.
if TYPE_CHECKING:
    from mcp_types import Tool

    from glm_lsp.mcp.client import Connection, LoopThread

log = logging.getLogger(__name__)
TRUST_LABEL = f"Trust this {PROJECT_FILE}"


@dataclass
class Snapshot:
    """The MCP tools of one request: fixed for the request so its prompt prefix never moves."""

    schemas: list[dict[str, Any]] = field(default_factory=list)
    tools: dict[str, tuple[Connection, Tool]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # for the model and the log

    @property
    def digest(self) -> str:
        text = json.dumps(self.schemas, ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def approval_question(project: ProjectFile) -> str:
    """The question for an unapproved `.mcp.json`: everything its approval covers, `${VAR}`
    as written, and the user's variables it would read, named."""
    listed = "\n".join(f"- {line}" for line in project.disclosure())
    return (
        f"This workspace's {PROJECT_FILE} wants to start MCP servers. They run as you, outside "
        f"the sandbox, with exactly this (${{VAR}} is filled from your environment):\n{listed}\n"
        "Use them?"
    )


class McpServers:
    def __init__(self, root: Path, state_dir: Path, approvals: Approvals | None = None) -> None:
        self.root, self.state_dir = root, state_dir
        self.approvals = approvals or Approvals()
        self.extra: tuple[ServerConfig, ...] = ()
        self.connections: dict[str, Connection] = {}
        self._loop: LoopThread | None = None
        self._once: set[str] = set()  # .mcp.json digests allowed for this daemon only
        self._denied: set[str] = set()
        self._lock = threading.Lock()

    # -- which servers -------------------------------------------------------------------------
    def set_extra(self, raw: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None) -> None:
        """Servers a front end adds for its session (ACP `session/new` mcpServers, a list of
        `{name, command, args, env}` / `{name, type: "http", url, headers}`; or the settings
        shape). McpConfigError names a bad entry; nothing changes then."""
        self.extra = servers(raw, "acp") if raw else ()

    def configured(
        self, settings: Settings, ask: Prompt | None, notes: list[str]
    ) -> tuple[ServerConfig, ...]:
        own = servers(settings.mcpServers)  # validated already: settings refuse a bad shape
        return merge(own, self.extra, self._project(ask, notes))

    def _project(self, ask: Prompt | None, notes: list[str]) -> tuple[ServerConfig, ...]:
        try:
            project = read_project_file(self.root)
        except McpConfigError as exc:
            notes.append(f"{PROJECT_FILE} was not used: {exc}")
            log.warning("%s", notes[-1])
            return ()
        if project is None or project.digest in self._denied:
            return ()
        if project.digest in self._once or self.approvals.approved(self.root, project.digest):
            return project.servers
        answer = ask(approval_question(project), TRUST_LABEL) if ask is not None else None
        if answer == ALLOW_ALWAYS:
            self.approvals.approve(self.root, project.digest)
        elif answer == ALLOW_ONCE:
            self._once.add(project.digest)
        else:
            if answer == DENY:
                self._denied.add(project.digest)
            notes.append(
                f"{PROJECT_FILE} was not used: it is not approved (run `glm-lsp mcp approve "
                f"{self.root}` or `glm-lsp run --allow-mcp-json`, or accept the prompt)"
            )
            log.warning("%s", notes[-1])
            return ()
        return project.servers

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def loop(self) -> LoopThread:
        if self._loop is None:
            from glm_lsp.mcp.client import LoopThread

            self._loop = LoopThread(f"glm-lsp-mcp {self.root.name}")
        return self._loop

    def prepare(
        self,
        settings: Settings,
        ask: Prompt | None = None,
        cancel: threading.Event | None = None,
    ) -> Snapshot:
        """Start what is configured and not running (in parallel, each bounded by mcpTimeout),
        stop what is no longer configured, and list the tools."""
        snap = Snapshot()
        with self._lock:
            wanted = {c.name: c for c in self.configured(settings, ask, snap.notes)}
            stale = [n for n, conn in self.connections.items() if wanted.get(n) != conn.config]
            if not wanted and not stale:
                return snap
            from glm_lsp.mcp.client import CallTimeout, Connection

            for name in stale:  # removed or edited: the old process goes
                try:
                    self.loop.call(self.connections.pop(name).stop(), 10)
                except CallTimeout:
                    log.warning("MCP server %r did not stop in time", name)
            if not wanted:
                return snap
            for name, config in wanted.items():
                if name not in self.connections:
                    errlog = self.state_dir / f"mcp-{name}.log"
                    self.connections[name] = Connection(config, self.root, errlog)
            starting = [c for c in self.connections.values() if not c.running]
            if starting:
                self._start(starting, settings.mcpTimeout, cancel, snap.notes)
            for name in sorted(self.connections):
                self._add_tools(self.connections[name], snap)
        return snap

    def _start(
        self,
        conns: list[Connection],
        timeout: int,
        cancel: threading.Event | None,
        notes: list[str],
    ) -> None:
        async def start_all() -> list[BaseException | None]:
            async def one(conn: Connection) -> BaseException | None:
                try:
                    await asyncio.wait_for(conn.start(), timeout)
                except Exception as exc:  # TimeoutError too: reported below, per server
                    return exc
                return None

            return await asyncio.gather(*(one(c) for c in conns))

        crashed = {c.config.name for c in conns if c.state == "crashed"}
        outcomes = self.loop.call(start_all(), timeout + 10, cancel)
        for conn, exc in zip(conns, outcomes, strict=True):
            name = conn.config.name
            if exc is None:
                if name in crashed:
                    conn.restarts += 1
                    notes.append(f"MCP server {name!r} had stopped; it was restarted")
                continue
            why = conn.error if not isinstance(exc, TimeoutError) else None
            why = why or f"it did not answer within mcpTimeout ({timeout} s)"
            conn.state, conn.error = "failed", why
            where = f" (its stderr: {conn.errlog_path})" if conn.config.transport == "stdio" else ""
            note = (
                f"MCP server {name!r} ({conn.config.describe()}) could not start: {why}; "
                f"its tools are not available{where}"
            )
            log.warning("%s", note)
            notes.append(note)

    @staticmethod
    def _add_tools(conn: Connection, snap: Snapshot) -> None:
        from glm_lsp.mcp.format import TOOL_NAME, glm_name, glm_tool

        if not conn.running:
            return
        for tool in conn.tools:
            name = glm_name(conn.config.name, tool.name)
            if not TOOL_NAME.match(tool.name) or name in snap.tools:
                snap.notes.append(f"MCP tool {tool.name[:80]!r} of {conn.config.name!r} skipped")
                continue
            snap.tools[name] = (conn, tool)
            snap.schemas.append(glm_tool(conn.config.name, tool))

    def close(self) -> None:
        """Stop every server (bounded), then the loop thread."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        from glm_lsp.mcp.client import CallTimeout

        for conn in self.connections.values():
            try:
                loop.call(conn.stop(), 10)
            except CallTimeout:
                log.warning("MCP server %r did not stop in time", conn.config.name)
        self.connections.clear()
        loop.close()

    def status(self, settings: Settings) -> list[dict[str, Any]]:
        """For glm.status: every known server, its state and tools."""
        try:
            configured = {c.name: c for c in merge(servers(settings.mcpServers), self.extra)}
        except McpConfigError:
            configured = {}
        conns = dict(self.connections)  # one copy: the worker may start a server meanwhile
        out = []
        for name in sorted(set(configured) | set(conns)):
            conn = conns.get(name)
            config = conn.config if conn else configured[name]
            item: dict[str, Any] = {
                "name": name,
                "source": config.source,
                "transport": config.transport,
                "target": config.describe(),
                "state": conn.state if conn else "not started",
                "tools": _tool_names(conn) if conn else [],
            }
            if conn and conn.error and conn.state in ("failed", "crashed"):
                item["error"] = conn.error
            if conn and conn.restarts:
                item["restarts"] = conn.restarts
            out.append(item)
        return out

    # -- calls ---------------------------------------------------------------------------------
    def call(
        self,
        snap: Snapshot,
        name: str,
        arguments: dict[str, Any],
        settings: Settings,
        permissions: ToolPermissions,
        ask: Prompt | None,
        cancel: threading.Event,
    ) -> str:
        from glm_lsp.mcp.client import CallTimeout, connection_lost, describe_error
        from glm_lsp.mcp.format import read_only, result_text

        conn, tool = snap.tools[name]
        shown = json.dumps(arguments, ensure_ascii=False)
        shown = shown if len(shown) <= 300 else shown[:299] + "…"
        message = (
            f"GLM wants to call the MCP tool {name} (server {conn.config.name}: "
            f"{conn.config.describe()}) with {shown}"
        )
        refused = permissions.check_tool(name, read_only(tool), message, ask)
        if refused is not None:
            return refused
        note = ""
        if not conn.running:  # it crashed earlier in this request: one restart per call
            notes: list[str] = []
            self._start([conn], settings.mcpTimeout, cancel, notes)
            if not conn.running:
                return error(f"not called: {notes[-1] if notes else 'the server is not running'}")
            note = f"[{notes[-1]}]\n" if notes else ""
            snap.notes.extend(notes)
        timeout = settings.mcpTimeout
        try:
            result = self.loop.call(conn.call(tool.name, arguments), timeout, cancel)
        except Cancelled:
            raise
        except CallTimeout:
            return error(
                f"{name} did not answer within mcpTimeout ({timeout} s) and was "
                "cancelled; the server may be busy: try another way, or ask the user to raise "
                "glm.mcpTimeout"
            )
        except Exception as exc:
            if connection_lost(exc) or conn.state == "crashed":
                crash = (
                    f"MCP server {conn.config.name!r} stopped during the call ({describe_error(exc)}); "
                    "nothing more is known about the call's effect. The server is restarted "
                    "when one of its tools is called again"
                )
                log.warning("%s", crash)
                snap.notes.append(crash)
                return error(f"{crash}")
            return error(f"{name} failed: {describe_error(exc)}")
        return note + result_text(name, result)


def _tool_names(conn: Connection) -> list[str]:
    from glm_lsp.mcp.format import glm_name  # loaded already: this server started through it

    return [glm_name(conn.config.name, t.name) for t in conn.tools]
