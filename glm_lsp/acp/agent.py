"""The ACP agent: sessions, prompts, cancel, modes and replay, over the shared core.

Requests are checked here (the SDK's pydantic models check the shapes); the work is the core's:
`Session.run` on the one worker thread, with the same log, KV cache, stale-read notes and stats
as the LSP server. Each ACP session is its own conversation under `<stateDir>/sessions/<id>/`.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from acp import PROTOCOL_VERSION, RequestError
from acp.schema import (
    AgentCapabilities,
    AuthenticateResponse,
    ClientCapabilities,
    Implementation,
    InitializeResponse,
    ListSessionsResponse,
    LoadSessionResponse,
    NewSessionResponse,
    PromptCapabilities,
    PromptResponse,
    SessionCapabilities,
    SessionInfo,
    SessionListCapabilities,
    SessionMode,
    SessionModeState,
    SetSessionModeResponse,
    Usage,
)

from glm_lsp import __version__
from glm_lsp.acp import updates
from glm_lsp.acp.client_bridge import ClientBridge
from glm_lsp.acp.relay import UpdateRelay
from glm_lsp.agent.prompts import AgentRequest
from glm_lsp.agent.session import Outcome, Session
from glm_lsp.config import Settings
from glm_lsp.core.conversations import (
    ActiveCache,
    SessionMeta,
    UnknownSession,
    create_session,
    keep_session,
    list_sessions,
    load_meta,
    logged_title,
    save_meta,
    session_dir,
)
from glm_lsp.core.worker import Job, Worker
from glm_lsp.mcp import config as mcp_config
from glm_lsp.memory.thinking_log import LOG_FILE, ThinkingLog, prepare_state_dir
from glm_lsp.runtime.base import BackendError, Cancelled
from glm_lsp.runtime.factory import make_backend
from glm_lsp.workspace import WorkspaceIndex
from glm_lsp.workspace.watcher import WorkspaceWatcher

log = logging.getLogger(__name__)
INVALID_PARAMS, BACKEND_ERROR = -32602, -32001
# Turn-level thinking as session modes (the request's `thinking` override).
MODES = {
    "auto": ("Thinking: auto", "Reasons before edits, answers questions directly", None),
    "think": ("Thinking: on", "Reasons before every answer", "enabled"),
    "fast": ("Thinking: off", "Answers without reasoning", "disabled"),
}
STOP_REASONS = {"maxTokens": "max_tokens", "maxSteps": "max_turn_requests"}


def invalid(message: str) -> RequestError:
    return RequestError(INVALID_PARAMS, message)


def modes(current: str) -> SessionModeState:
    return SessionModeState(
        current_mode_id=current,
        available_modes=[
            SessionMode(id=mode, name=name, description=text)
            for mode, (name, text, _) in MODES.items()
        ],
    )


def workspace_root(cwd: Any) -> Path:
    if not isinstance(cwd, str) or not cwd or "\x00" in cwd:
        raise invalid("cwd must be the absolute path of the workspace folder")
    path = Path(cwd)
    if not path.is_absolute():
        raise invalid(f"cwd {cwd!r} is not absolute; ACP paths are absolute")
    if not path.is_dir():
        raise invalid(f"cwd {cwd} is not a directory")
    return path.resolve()


class Workspace:
    """One folder's index and watcher, shared by the sessions open on it."""

    def __init__(self, root: Path, state_dir: Path) -> None:
        excluded = {".git", ".glm-lsp"}
        if root in state_dir.resolve().parents:
            excluded.add(state_dir.resolve().relative_to(root).parts[0])
        self.index = WorkspaceIndex(root, exclude_dirs=tuple(sorted(excluded)))
        self.watcher: WorkspaceWatcher | None = None

    def start(self) -> None:
        """On the worker thread: the first scan of a large folder takes a while."""
        if self.watcher is None:
            self.index.scan()
            self.watcher = WorkspaceWatcher(self.index)
            self.watcher.start()

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()


class AcpSession:
    def __init__(self, meta: SessionMeta, root: Path, state_dir: Path) -> None:
        self.meta, self.root, self.state_dir = meta, root, state_dir
        self.dir = session_dir(state_dir, meta.id)
        self.core: Session | None = None
        self.mcp_servers: list[dict[str, Any]] = []  # the client's, from session/new or load
        self.bridge: ClientBridge | None = None  # the running prompt's, for buffer reads
        self.job: Job | None = None

    @property
    def always_edits(self) -> bool:
        return self.meta.always_edits

    def remember_always_edits(self) -> None:
        self.meta.always_edits = True
        self.save()

    def save(self) -> None:
        if self.meta.kept:  # else it is saved with the first prompt
            save_meta(self.meta)

    def buffer(self, rel: str) -> tuple[str, int] | None:
        return self.bridge.buffer(rel) if self.bridge is not None else None


class GlmAcpAgent:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.conn: Any = None
        self.caps = ClientCapabilities()
        self.worker = Worker()
        self.sessions: dict[str, AcpSession] = {}
        self.workspaces: dict[Path, Workspace] = {}
        self.active = ActiveCache()
        self.scripted = None
        if settings.scriptedReplies:  # one script for the process: sessions read it in order
            from glm_lsp.runtime.scripted import ScriptedReplies

            self.scripted = ScriptedReplies.load(settings.scriptedReplies)

    def on_connect(self, conn: Any) -> None:
        self.conn = conn

    # -- lifecycle -----------------------------------------------------------------------------
    async def initialize(
        self,
        protocol_version: int,
        client_capabilities: ClientCapabilities | None = None,
        client_info: Implementation | None = None,
        **_: Any,
    ) -> InitializeResponse:
        self.caps = client_capabilities or ClientCapabilities()
        return InitializeResponse(
            protocol_version=min(protocol_version, PROTOCOL_VERSION),
            agent_capabilities=AgentCapabilities(
                load_session=True,
                prompt_capabilities=PromptCapabilities(embedded_context=True),
                session_capabilities=SessionCapabilities(list=SessionListCapabilities()),
            ),
            agent_info=Implementation(
                name="glm-lsp", title="GLM-4.7 (glm-lsp)", version=__version__
            ),
            auth_methods=[],
        )

    async def authenticate(self, method_id: str, **_: Any) -> AuthenticateResponse:
        return AuthenticateResponse()

    def state_dir(self, root: Path) -> Path:
        return prepare_state_dir(self.settings.state_dir(root))

    def workspace(self, root: Path) -> Workspace:
        if root not in self.workspaces:
            self.workspaces[root] = Workspace(root, self.settings.state_dir(root))
        return self.workspaces[root]

    async def new_session(self, cwd: str, mcp_servers: list[Any] | None = None, **_: Any):
        root = workspace_root(cwd)
        extra = client_mcp_servers(mcp_servers)
        state = self.state_dir(root)
        meta = create_session(root)
        session = AcpSession(meta, root, state)
        session.mcp_servers = extra
        self.sessions[meta.id] = session
        return NewSessionResponse(session_id=meta.id, modes=modes(meta.mode))

    async def load_session(
        self, cwd: str, session_id: str, mcp_servers: list[Any] | None = None, **_: Any
    ) -> LoadSessionResponse:
        root = workspace_root(cwd)
        extra = client_mcp_servers(mcp_servers)
        state = self.state_dir(root)
        try:
            meta = load_meta(root, session_id)
        except UnknownSession as exc:
            raise invalid(str(exc)) from None
        session = AcpSession(meta, root, state)
        session.mcp_servers = extra
        if meta.title is None:  # kept before sessions had titles
            meta.title = logged_title(session.dir / LOG_FILE)
        for update in updates.replay(root, ThinkingLog(session.dir).records()):
            await self.conn.session_update(session_id=meta.id, update=update)
        self.sessions[meta.id] = session
        return LoadSessionResponse(modes=modes(meta.mode))

    async def list_sessions(
        self, cwd: str | None = None, cursor: str | None = None, **_: Any
    ) -> ListSessionsResponse:
        if cwd is None:
            roots = sorted({s.root for s in self.sessions.values()})
        else:
            roots = [workspace_root(cwd)]
        found = []
        for root in roots:
            for meta, changed in list_sessions(root, self.settings.state_dir(root)):
                stamp = _iso(changed) if changed else meta.created
                found.append(
                    SessionInfo(
                        session_id=meta.id, cwd=meta.cwd, title=meta.title, updated_at=stamp
                    )
                )
        return ListSessionsResponse(sessions=found)

    async def set_session_mode(self, session_id: str, mode_id: str, **_: Any):
        session = self.session(session_id)
        if mode_id not in MODES:
            raise invalid(f"modeId {mode_id!r} is not one of {', '.join(MODES)}")
        session.meta.mode = mode_id
        session.save()
        return SetSessionModeResponse()

    def session(self, session_id: Any) -> AcpSession:
        session = self.sessions.get(session_id) if isinstance(session_id, str) else None
        if session is None:
            raise invalid(
                f"sessionId {str(session_id)[:40]!r} is not open in this connection; "
                "use session/new or session/load first"
            )
        return session

    # -- prompts -------------------------------------------------------------------------------
    async def prompt(self, session_id: str, prompt: list[Any], **_: Any) -> PromptResponse:
        session = self.session(session_id)
        text = prompt_text(prompt)
        if not text.strip():
            raise invalid("prompt has no text; send at least one text block")
        if session.job is not None:
            raise invalid(f"session {session_id} is already answering a prompt; cancel it first")
        request = AgentRequest(
            kind="prompt", instruction=text, thinking=MODES[session.meta.mode][2]
        )
        if not session.meta.kept:
            keep_session(session.state_dir, session.meta, first_text(prompt) or text)
        job = Job("session/prompt")
        relay = UpdateRelay(self.conn, session_id, session.root)
        bridge = ClientBridge(
            self.conn, session, self.caps, relay, job.cancel, f"ACP: {text}"[:120]
        )
        session.job, session.bridge = job, bridge

        def work() -> Outcome:
            core = self._core(session)
            self.active.activate(core.backend)  # only this conversation's KV cache in memory

            def numbered(turn: int) -> None:  # under the conversation's lock: the turn it logs
                bridge.turn = job.turn = turn

            return core.run(
                request,
                relay.sink,
                job.cancel,
                None,  # each edit is asked and written as the model makes it: approve
                bridge.ask_command,
                prompt=bridge.ask_tool,
                on_tool=relay.on_tool,
                runner=bridge.run_in_terminal if bridge.has_terminal else None,
                on_turn=numbered,
                approve=bridge.approve_edit,
            )

        try:
            outcome = await self.worker.run(job, work)
        except Cancelled:
            return PromptResponse(stop_reason="cancelled")
        except BackendError as exc:
            raise RequestError(BACKEND_ERROR, f"session/prompt failed: {exc}") from None
        finally:
            session.job = session.bridge = None
            await relay.close()
        return response(outcome)

    def _core(self, session: AcpSession) -> Session:
        """On the worker thread: the first prompt scans the folder and loads the model."""
        if session.core is None:
            workspace = self.workspace(session.root)
            workspace.start()
            backend = make_backend(self.settings, session.dir, scripted=self.scripted, client="acp")
            session.core = Session(
                session.root,
                self.settings,
                backend,
                index=workspace.index,
                buffers=session.buffer,
                conversation_dir=session.dir,
            )
            session.core.set_extra_mcp_servers(session.mcp_servers)  # checked at session/new
        return session.core

    async def cancel(self, session_id: str, **_: Any) -> None:
        session = self.sessions.get(session_id)
        if session is not None and session.job is not None:
            session.job.cancel.set()

    async def ext_method(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        raise RequestError(-32601, f"{method} is not a glm-lsp extension method")

    async def ext_notification(self, method: str, params: dict[str, Any]) -> None:
        return None

    def close(self) -> None:
        self.worker.shutdown()
        for session in self.sessions.values():
            if session.core is not None:
                session.core.close()
        for workspace in self.workspaces.values():
            workspace.stop()


def client_mcp_servers(given: list[Any] | None) -> list[dict[str, Any]]:
    """The client's MCP servers (session/new, session/load) in ACP's wire shape, checked now so
    a bad entry fails the request that brought it."""
    entries = [
        s.model_dump(by_alias=True, exclude_none=True) if hasattr(s, "model_dump") else s
        for s in given or []
    ]
    try:
        mcp_config.servers(entries, "acp")
    except mcp_config.McpConfigError as exc:
        raise invalid(f"mcpServers: {exc}") from None
    return entries


def first_text(blocks: list[Any]) -> str:
    """What the user typed first (a session's title), before any attached context."""
    return next((b.text for b in blocks if getattr(b, "type", None) == "text" and b.text), "")


def prompt_text(blocks: list[Any]) -> str:
    """Text blocks as typed; embedded files and links as context the model can read."""
    parts = []
    for block in blocks:
        kind = getattr(block, "type", None)
        if kind == "text":
            parts.append(block.text)
        elif kind == "resource" and hasattr(block.resource, "text"):
            parts.append(f"Context from {block.resource.uri}:\n```\n{block.resource.text}\n```")
        elif kind == "resource_link":
            parts.append(f"(see {block.uri})")
    return "\n\n".join(parts)


def response(outcome: Outcome) -> PromptResponse:
    result, stats = outcome.result, outcome.result.stats
    stop = STOP_REASONS.get(result.stop_limit or "", "end_turn")
    meta: dict[str, Any] = {"turn": outcome.turn, "stats": stats.to_dict()}
    if result.changes or outcome.landings:
        meta["applied"] = outcome.applied
        if not outcome.applied:
            meta["failureReason"] = outcome.failure_reason
    return PromptResponse(
        stop_reason=stop,
        usage=Usage(
            input_tokens=stats.promptTokens,
            output_tokens=stats.generatedTokens,
            total_tokens=stats.promptTokens + stats.generatedTokens,
            cached_read_tokens=stats.reusedTokens,
        ),
        field_meta={"glm": meta},
    )


def _iso(timestamp: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


async def serve_stdio(settings: Settings) -> None:
    from acp import run_agent
    from acp.core import DEFAULT_STDIO_BUFFER_LIMIT_BYTES

    from glm_lsp.acp.transport import protocol_streams

    writer, reader = await protocol_streams(DEFAULT_STDIO_BUFFER_LIMIT_BYTES)
    agent = GlmAcpAgent(settings)
    try:
        await run_agent(agent, writer, reader)
    finally:
        agent.close()


def main(settings: Settings) -> int:
    asyncio.run(serve_stdio(settings))
    return 0
