"""A workspace's conversation: its log, index and backend, one request at a time.

Both front ends (the LSP server and `glm-lsp run`) go through `Session.run`, so the log, the
"changed since" notes and the KV cache behave the same in an editor and on the command line.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glm_lsp.agent.approval import ApproveEdit, reviewed_report
from glm_lsp.agent.edits import ChangeSet, Overlay
from glm_lsp.agent.files import Buffers, ToolError, Workspace
from glm_lsp.agent.instruction_comments import drop_comment
from glm_lsp.agent.landing import ApplyReport, Landing
from glm_lsp.agent.loop import Agent, AgentResult, OnTool, Options, Sink
from glm_lsp.agent.prompts import COMMANDS, AgentRequest, resolve_thinking
from glm_lsp.agent.run_command import CommandTool, Runner
from glm_lsp.agent.tools import ToolBox
from glm_lsp.config import Settings
from glm_lsp.glm.tool_schemas import TOOLS
from glm_lsp.mcp.tools import McpServers, Snapshot
from glm_lsp.memory.conversation_lock import WAITING, WaitCancelled
from glm_lsp.memory.thinking_log import ThinkingLog, new_record, prepare_state_dir
from glm_lsp.runtime.base import Backend, Cancelled
from glm_lsp.sandbox.permissions import Ask, Prompt, ToolPermissions
from glm_lsp.sandbox.shadow import OpenBuffers, Shadow
from glm_lsp.textfile import digest
from glm_lsp.wire.records import Compacted
from glm_lsp.workspace import WorkspaceIndex

# Decides what happens to a request's edits: (applied, reason when not applied), or an
# ApplyReport when the user reviewed it and only part may have landed.
ApplyEdits = Callable[[ChangeSet], "tuple[bool, str | None] | ApplyReport"]
OnTurn = Callable[[int], None]  # told the request's turn once it is numbered, before it runs
MAX_STALE_CHECKS = 200
DRAIN_S = 1.0  # longest wait for changes already reported to reach the index (debounce: 50 ms)


@dataclass
class Outcome:
    result: AgentResult
    turn: int
    thinking: bool
    applied: bool
    failure_reason: str | None
    # per change: did it land, when the user reviewed the edit (None: all or nothing)
    landings: list[Landing] | None = None

    @property
    def summary(self) -> str:
        return summarize(self.result.text)


def summarize(text: str, limit: int = 200) -> str:
    first = text.strip().split("\n\n")[0].strip()
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "…"


class Session:
    def __init__(
        self,
        root: Path,
        settings: Settings,
        backend: Backend,
        *,
        index: WorkspaceIndex | None = None,
        buffers: Buffers | None = None,
        open_buffers: OpenBuffers | None = None,
        conversation_dir: Path | None = None,
    ) -> None:
        """`buffers` looks up one open editor buffer; `open_buffers` lists them all (the shadow
        workspace writes the ones that differ from disk). `conversation_dir` holds this
        conversation's log (default: the state dir itself, the LSP's conversation)."""
        self.root = root.resolve()
        self.settings = settings
        self.state_dir = prepare_state_dir(settings.state_dir(self.root))
        self.log = ThinkingLog(conversation_dir or self.state_dir)
        self.backend = backend
        excluded = {".git"}
        if self.root in self.state_dir.resolve().parents:
            excluded.add(self.state_dir.resolve().relative_to(self.root).parts[0])
        if index is None:
            index = WorkspaceIndex(self.root, exclude_dirs=tuple(excluded))
            index.scan()
        self.index = index
        self.buffers, self.open_buffers = buffers, open_buffers
        self.last_generation = index.generation
        # path -> digest the model knows it holds: what our applied edit (or another process's
        # logged request) left there
        self.own_writes: dict[str, str | None] = {}
        self.seen_records: int | None = None  # the log's length after our last request
        self.lock = threading.Lock()
        self._shadow: Shadow | None = None  # made by the first command, kept for the session
        self.mcp = McpServers(self.root, self.state_dir)  # started by the first request

    def set_extra_mcp_servers(self, servers: Any) -> None:
        """MCP servers a front end adds for this session (ACP `session/new` mcpServers: a list of
        `{name, command, args, env}` or `{name, type: "http", url, headers}`, env and headers as
        `{name, value}` lists or objects). Raises McpConfigError naming a bad entry. They are
        started by the next request, beside the user's mcpServers (which win a name)."""
        self.mcp.set_extra(servers)

    def shadow(self) -> Shadow:
        if self._shadow is None:
            self._shadow = Shadow(self.root, self.index, buffers=self.open_buffers)
        return self._shadow

    def close(self) -> None:
        self.mcp.close()
        if self._shadow is not None:
            self._shadow.close()
            self._shadow = None

    # -- conversation ------------------------------------------------------------------------
    def history(self) -> tuple[list[list[dict[str, Any]]], list[int]]:
        records = self.log.records()
        return [r["messages"] for r in records], [int(r.get("turn", 0)) for r in records]

    def _stale_reads(self, records: list[dict[str, Any]]) -> list[str]:
        latest: dict[str, str | None] = {}
        for record in records:
            latest.update(record.get("reads") or {})
        ws = Workspace(self.root, self.state_dir, self.buffers)
        stale = []
        for rel, seen in list(latest.items())[-MAX_STALE_CHECKS:]:
            try:
                now = digest(ws.read_base(rel))
            except ToolError:
                now = None
            if now != seen:
                stale.append(rel)
        return sorted(stale)

    def _seen_elsewhere(self, records: list[dict[str, Any]]) -> None:
        """Requests another glm-lsp logged on this conversation since ours: the model saw the
        files they read or edited (their `reads`) in the history, so a change the index reports
        for one that still holds what it saw is not news, just like our own edits."""
        seen = self.seen_records
        if seen is None or seen > len(records):  # our first request, or the log was reset
            return
        for record in records[seen:]:
            reads = record.get("reads")
            if isinstance(reads, dict):
                self.own_writes.update(reads)

    def _changed_since_last(self) -> list[str]:
        """Changes since the previous request, minus the ones its own applied edit made: the
        model knows those, and calling them news would read as the user touching its work.
        Changes already reported (the editor's events are debounced) are waited for, briefly."""
        if self.index.drain is not None:
            self.index.drain(DRAIN_S)
        changes = self.index.changes_since(self.last_generation)
        ws = Workspace(self.root, self.state_dir, self.buffers)
        notes = []
        for c in changes:
            if c.path in self.own_writes:
                try:
                    now = digest(ws.read_base(c.path))
                except ToolError:
                    now = None
                if now == self.own_writes[c.path]:
                    continue
            notes.append(f"{c.kind} {c.path}")
        self.own_writes = {}
        return notes[:100]

    def run(
        self,
        request: AgentRequest,
        sink: Sink,
        cancel: threading.Event,
        apply: ApplyEdits | None,
        ask: Ask | None = None,
        prompt: Prompt | None = None,
        on_tool: OnTool | None = None,
        runner: Runner | None = None,
        on_turn: OnTurn | None = None,
        approve: ApproveEdit | None = None,
    ) -> Outcome:
        """`apply` decides the request's edits at its end; `approve` instead asks for each edit
        as the model makes it and writes it (ACP; `apply` is then None). `ask` puts a command that allowCommands does not allow to the user, `prompt` an MCP
        tool call mcpAllow does not allow and an unapproved .mcp.json (None: nobody);
        `on_tool` sees each tool call start and finish (ACP shows them as tool calls); `runner`
        runs a permitted command line instead of a local process (an ACP client's terminal);
        `on_turn` learns the turn this request logs.

        The conversation is held from reading the log to appending to it, against this process's
        other threads and other glm-lsp processes on it alike: each request sees the ones
        before it and takes the next turn. Waiting on another process is shown and cancellable."""
        with self.lock:
            try:
                with self.log.lock.hold(cancel, lambda: sink("progress", WAITING)):
                    return self._run(
                        request, sink, cancel, apply, ask, prompt, on_tool, runner, on_turn, approve
                    )
            except WaitCancelled:  # only the wait raises it: nothing was done
                raise Cancelled() from None

    def _run(
        self,
        request: AgentRequest,
        sink: Sink,
        cancel: threading.Event,
        apply: ApplyEdits | None,
        ask: Ask | None,
        prompt: Prompt | None,
        on_tool: OnTool | None,
        runner: Runner | None,
        on_turn: OnTurn | None,
        approve: ApproveEdit | None,
    ) -> Outcome:
        s = self.settings
        records = self.log.records()
        turn = max((int(r.get("turn", 0)) for r in records), default=0) + 1
        if on_turn is not None:
            on_turn(turn)
        thinking = resolve_thinking(s.thinking, request.thinking, request.kind)
        self._seen_elsewhere(records)
        request.changed = request.changed or self._changed_since_last()
        request.stale = request.stale or self._stale_reads(records)
        request.rejected = request.rejected or rejected_notes(records[-1] if records else None)
        ws = Workspace(self.root, self.state_dir, self.buffers)
        overlay = Overlay(ws)
        options = Options(
            enable_thinking=thinking,
            preserve_thinking=s.preserveThinking,
            max_tokens=s.maxTokens,
            max_steps=s.maxSteps,
            context_length=s.contextLength,
            temperature=s.temperature,
            top_p=s.topP,
            verify_rounds=s.verifyRounds,
        )
        commands = CommandTool(self.root, s, self.state_dir, self.shadow, sink, cancel, ask, runner)
        snap = self.mcp.prepare(s, prompt, cancel)
        mcp_log = mcp_record(snap, records)
        request.notes = [*request.notes, *snap.notes, *mcp_log.get("notes", [])]
        permissions = ToolPermissions(self.root, s.mcpAllow, s.mcpAllowReadOnly)

        def mcp_tool(name: str) -> Callable[[dict[str, Any]], str]:
            return lambda args: self.mcp.call(snap, name, args, s, permissions, prompt, cancel)

        extra = {name: mcp_tool(name) for name in snap.tools}
        toolbox = ToolBox(ws, self.index, overlay, commands, extra)
        agent = Agent(
            self.backend,
            toolbox,
            overlay,
            options,
            sink,
            cancel,
            verify=commands.verify,
            on_tool=on_tool,
            schemas=[*TOOLS, *snap.schemas],
            approve=approve,
        )
        history = [r["messages"] for r in records]
        result = agent.run(request, history, [int(r.get("turn", 0)) for r in records])
        # A `GLM:` comment's instruction carried out: the same edit takes the comment away.
        comment, path = request.instruction_comment, request.path
        if (
            approve is None
            and result.changes
            and comment
            and path
            and drop_comment(overlay, path, comment)
        ):
            result.changes = overlay.change_set()
        report, error = ApplyReport(False), None
        if result.reviews is not None:  # approved and written edit by edit, as the model went
            report = reviewed_report(result.changes, result.reviews)
        elif result.changes and apply is not None:
            sink("progress", "writing edits")
            result.changes.summary_text = summarize(result.text)
            try:
                answer = apply(result.changes)
                report = answer if isinstance(answer, ApplyReport) else ApplyReport(*answer)
            except Cancelled:
                raise  # cancelled while the editor had it: nothing happened, nothing is logged
            except Exception as exc:  # logged first: the conversation happened all the same
                error, report = exc, ApplyReport(False, f"not applied: {exc}")
        applied, reason = report.applied, report.reason
        landings = report.per_change(result.changes)
        landed = report.landed_set(result.changes)
        reads = dict(result.reads)
        if landed:  # our own edits are not news to the model next time
            self.own_writes = self.written_by(landed)
            # What the edit left is what the model knows of those files (None: gone), for the
            # stale check and for another process's next request on this conversation.
            reads.update(self.own_writes)
        record = new_record(
            turn=turn,
            command=COMMANDS[request.kind],
            thinking="enabled" if thinking else "disabled",
            messages=result.messages,
            stats=result.stats,
            summary=summarize(result.text),
            reads=reads,
            changes=[got.record() for got in landings],
            applied=applied,
            reviewed=report.landings is not None,  # the user chose per file/hunk what landed
            compacted=Compacted(result.compacted_turns) if result.compacted_turns else None,
            stopped=result.stopped,
            stop_limit=result.stop_limit,
            verification=result.verification.wire() if result.verification else None,
            failure_reason=reason if reason and not applied else None,
            # session/load replays what the user typed, not the wrapper around it
            prompt=request.instruction if request.kind == "prompt" else None,
            mcp={**mcp_log, "notes": [*mcp_log.get("notes", []), *snap.notes]}
            if mcp_log or snap.notes
            else None,
        )
        self.log.append(record)
        self.seen_records = len(records) + 1
        self.last_generation = self.index.generation
        if self.settings.persistKvCache:
            self.backend.save()
        if error is not None:
            raise error
        return Outcome(result, turn, thinking, applied, reason, report.landings)

    @staticmethod
    def written_by(change_set: ChangeSet) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for c in change_set.changes:
            if c.old_path and c.old_path != c.path:
                out[c.old_path] = None  # renamed or deleted away
            out[c.path] = digest(c.after)
        return out

    def reset(self) -> str | None:
        with self.lock:
            return self.log.archive()


def mcp_record(snap: Snapshot, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The log's `mcp` entry: the request's MCP tools and, when they differ from the previous
    request's (the cached prompt prefix moved), what changed."""
    previous = next((r["mcp"] for r in reversed(records) if isinstance(r.get("mcp"), dict)), {})
    before, now = previous.get("digest"), snap.digest if snap.schemas else None
    if now is None and before is None:
        return {}
    entry: dict[str, Any] = {"tools": sorted(snap.tools), "digest": now}
    if now != before:
        old = set(previous.get("tools") or ())
        added, removed = sorted(set(snap.tools) - old), sorted(old - set(snap.tools))
        entry["changed"] = {"added": added, "removed": removed}
        what = "; ".join(
            part
            for part in (
                f"added {', '.join(added)}" if added else "",
                f"removed {', '.join(removed)}" if removed else "",
            )
            if part
        )
        entry["notes"] = [
            f"The MCP tools changed since the previous request: {what or 'new schemas'}"
        ]
    return entry


def rejected_notes(record: dict[str, Any] | None) -> list[str]:
    """What the user turned down of the previous request's reviewed edit, for the next user
    message: the model must not build on a change that never landed."""
    if not record or record.get("reviewed") is not True:
        return []
    notes = []
    for item in record.get("changes") or []:
        if not isinstance(item, dict):
            continue
        path, hunks = item.get("path"), item.get("hunks")
        if item.get("applied") is False:
            notes.append(f"the user rejected the change to {path}")
        elif isinstance(hunks, dict) and hunks.get("applied") != hunks.get("total"):
            notes.append(
                f"the user took {hunks.get('applied')} of {hunks.get('total')} hunks of the "
                f"change to {path} and rejected the rest"
            )
    return notes
