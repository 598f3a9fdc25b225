"""One request: completion -> tool calls -> results -> next completion ... -> final answer.

The model thinks between tool calls (interleaved thinking): every completion after a tool result
starts with its own reasoning, and all of it stays in the request's messages, byte-exact.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from glm_lsp.agent.approval import ApproveEdit, EditGate, Review
from glm_lsp.agent.edits import ChangeSet, FileChange, Overlay
from glm_lsp.agent.prompts import SYSTEM_PROMPT, AgentRequest, user_message
from glm_lsp.agent.run_command import Verification
from glm_lsp.agent.tools import ToolBox
from glm_lsp.glm.format import render_prompt
from glm_lsp.glm.parse import ContentDelta, End, ParseError, ReasoningDelta, StreamParser
from glm_lsp.glm.parse import ToolCall as ParsedCall
from glm_lsp.glm.tool_schemas import TOOLS
from glm_lsp.glm.tool_text import error, failed, not_run
from glm_lsp.runtime.base import Backend, CompletionRequest, Stats
from glm_lsp.wire.records import StopLimit

# (kind, text): reasoning | content | tool_call | tool_result | progress, and tool_output: a
# piece of a running command's output (sent to the editor as tool_result as it comes).
Sink = Callable[[str, str], None]


FILE_TOOLS = ("edit_file", "write_file", "rename_file", "delete_file")


@dataclass
class ToolEvent:
    """One tool call as a front-end shows it: once when it starts (result None), once when done."""

    id: str  # unique in the conversation
    name: str
    arguments: dict[str, Any]
    result: str | None = None
    change: FileChange | None = None  # for a file tool: the request's pending change to that file


OnTool = Callable[[ToolEvent], None]


NOT_RUN = not_run("the request reached its tool-call limit (maxSteps).")


@dataclass
class Options:
    enable_thinking: bool
    preserve_thinking: bool = True
    max_tokens: int = 4096
    max_steps: int = 24
    context_length: int = 65536
    temperature: float = 0.7
    top_p: float = 1.0
    verify_rounds: int = 2  # verifyCommand failures sent back to the model, at most


@dataclass
class AgentResult:
    text: str
    reasoning: list[str]
    messages: list[dict[str, Any]]
    changes: ChangeSet
    stats: Stats
    reads: dict[str, str | None]
    compacted_turns: list[int] = field(default_factory=list)
    stopped: str | None = None  # why the loop ended early (maxSteps, maxTokens), as a sentence
    stop_limit: StopLimit | None = None  # which limit ended it
    verification: Verification | None = None  # verifyCommand's last outcome on the final edit
    reviews: list[Review] | None = None  # with an approver: what the user said to each edit


def _describe(call: ParsedCall) -> str:
    shown = ", ".join(
        f"{k}={v!r}" if not isinstance(v, str) or len(v) < 60 else f"{k}=<{len(v)} chars>"
        for k, v in call.arguments.items()
    )
    return f"{call.name}({shown})"


def _progress(call: ParsedCall) -> str:
    if call.name == "run_command":
        words = str(call.arguments.get("command", "")).split()
        return f"running {words[0] if words else 'a command'}…"
    target = call.arguments.get("path") or call.arguments.get("pattern") or ""
    return f"{call.name} {target}".strip()


def _verify_feedback(v: Verification) -> str:
    return (
        f"The verification command `{v.command}` failed on your edits (exit code {v.exit_code}):"
        f"\n{v.output}\nFix the cause, then answer again with a short summary."
    )


class Agent:
    def __init__(
        self,
        backend: Backend,
        toolbox: ToolBox,
        overlay: Overlay,
        options: Options,
        sink: Sink,
        cancel: threading.Event,
        verify: Callable[[Overlay], Verification | None] | None = None,
        on_tool: OnTool | None = None,
        schemas: list[dict[str, Any]] | None = None,
        approve: ApproveEdit | None = None,
    ) -> None:
        """`schemas`: the request's tools (the built-in ones, then its MCP tools); `approve`
        puts each file tool call's change to the user as it is made (approval.py)."""
        self.backend, self.tools, self.overlay = backend, toolbox, overlay
        self.opt, self.sink, self.cancel = options, sink, cancel
        self.verify, self.on_tool = verify, on_tool
        self.gate = EditGate(overlay, approve) if approve is not None else None
        self.schemas = schemas if schemas is not None else TOOLS

    def _prompt(self, history: list[list[dict]], messages: list[dict]) -> str:
        flat = [m for turn in history for m in turn]
        return render_prompt(
            [{"role": "system", "content": SYSTEM_PROMPT}, *flat, *messages],
            self.schemas,
            clear_thinking=not self.opt.preserve_thinking,
            enable_thinking=self.opt.enable_thinking,
        )

    def _fit(self, history: list[list[dict]], turns: list[int], messages: list[dict]) -> str:
        """Drop whole oldest requests until prompt + maxTokens fits the context (not the log)."""
        prompt = self._prompt(history, messages)
        while (
            history
            and self.backend.count_tokens(prompt) + self.opt.max_tokens > self.opt.context_length
        ):
            history.pop(0)
            self.compacted.append(turns.pop(0))
            prompt = self._prompt(history, messages)
        return prompt

    def run(
        self, request: AgentRequest, history: list[list[dict]], turns: list[int]
    ) -> AgentResult:
        history, turns = list(history), list(turns)
        self.compacted: list[int] = []
        messages: list[dict[str, Any]] = [{"role": "user", "content": user_message(request)}]
        stats, reasoning, steps, stopped, text = Stats(), [], 0, None, ""
        stop_limit: StopLimit | None = None
        verification: Verification | None = None
        rounds = 0
        while True:
            prompt = self._fit(history, turns, messages)
            self.sink("progress", "thinking" if self.opt.enable_thinking else "writing")
            end, finish, completion_stats = self._complete(prompt, history, messages)
            stats.add(completion_stats)
            if end.reasoning:
                reasoning.append(end.reasoning)
            # reasoning_content is always a string so the template never re-parses the content.
            message: dict[str, Any] = {
                "role": "assistant",
                "content": end.content,
                "reasoning_content": end.reasoning,
            }
            calls = list(end.tool_calls)
            if calls:
                message["tool_calls"] = [
                    {"type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in calls
                ]
            messages.append(message)
            text = end.content.strip()
            if finish == "length":
                stop_limit = "maxTokens"
                stopped = f"the model reached maxTokens ({self.opt.max_tokens}) in one completion"
            if not calls and not end.errors:
                verification = self._verify()
                if verification is None or verification.passed or verification.exit_code is None:
                    break
                if rounds >= self.opt.verify_rounds:
                    break
                rounds += 1  # the failure goes back to the model for another round
                messages.append({"role": "user", "content": _verify_feedback(verification)})
                continue
            # Unknown tools and malformed calls cost a step like real calls: a model that
            # repeats one must still stop at maxSteps.
            for item in [*calls, *end.errors]:
                if steps >= self.opt.max_steps:
                    result = NOT_RUN
                    stop_limit = "maxSteps"
                    stopped = f"stopped after maxSteps ({self.opt.max_steps}) tool calls"
                elif isinstance(item, ParsedCall):
                    steps += 1
                    self.sink("tool_call", _describe(item))
                    self.sink("progress", _progress(item))
                    event = ToolEvent(uuid.uuid4().hex[:16], item.name, dict(item.arguments))
                    if self.on_tool:
                        self.on_tool(event)
                    result = self._run_tool(item, event.id)
                    if self.on_tool:
                        event.result = str(getattr(result, "rest", result))
                        event.change = self._pending_change(event)
                        self.on_tool(event)
                else:
                    steps += 1
                    result = error(f"your tool call could not be parsed: {item.message}")
                # A command's output already streamed as it came: send only what it did not.
                self.sink("tool_result", getattr(result, "rest", result))
                messages.append({"role": "tool", "content": result})
            if stopped:
                break
        if stopped:
            self.sink(
                "content", f"\n[{stopped}; the edits proposed so far are returned for review]"
            )
        return AgentResult(
            text=text,
            reasoning=reasoning,
            messages=messages,
            changes=self.overlay.change_set(),
            stats=stats,
            reads=dict(self.tools.reads),
            compacted_turns=self.compacted,
            stopped=stopped,
            stop_limit=stop_limit,
            verification=verification,
            reviews=self.gate.reviews if self.gate is not None else None,
        )

    def _run_tool(self, call: ParsedCall, call_id: str) -> str:
        run = lambda: self.tools.run(call.name, dict(call.arguments))  # noqa: E731
        if self.gate is not None and call.name in FILE_TOOLS:
            return self.gate.run(run, call_id)
        return run()

    def _pending_change(self, event: ToolEvent) -> FileChange | None:
        if event.name not in FILE_TOOLS or failed(event.result or ""):
            return None
        touched = {event.arguments.get("path"), event.arguments.get("new_path")} - {None}
        for change in self.overlay.change_set().changes:
            if change.path in touched or change.old_path in touched:
                return change
        return None

    def _verify(self) -> Verification | None:
        """verifyCommand, when set and the request has pending edits."""
        if self.verify is None or not self.overlay.change_set():
            return None
        self.sink("progress", "verifying the edit")
        return self.verify(self.overlay)

    def _status(self, message: str, percent: int | None) -> None:
        """What the backend waits for (the host loading the model, another client's turn)."""
        self.sink("progress", message if percent is None else f"{message} ({percent}%)")

    def _complete(
        self, prompt: str, history: list[list[dict]], messages: list[dict]
    ) -> tuple[End, str, Stats]:
        parser = StreamParser(self.schemas, in_reasoning=self.opt.enable_thinking)

        def emit(events: list) -> None:
            for event in events:
                if isinstance(event, ReasoningDelta):
                    self.sink("reasoning", event.text)
                elif isinstance(event, ContentDelta):
                    self.sink("content", event.text)
                elif isinstance(event, ParseError):
                    self.sink("progress", f"malformed model output: {event.message}")

        request = CompletionRequest(
            prompt=prompt,
            messages=[
                {"role": "system", "content": SYSTEM_PROMPT},
                *(m for turn in history for m in turn),
                *messages,
            ],
            tools=self.schemas,
            enable_thinking=self.opt.enable_thinking,
            clear_thinking=not self.opt.preserve_thinking,
            max_tokens=self.opt.max_tokens,
            temperature=self.opt.temperature,
            top_p=self.opt.top_p,
            on_status=self._status,
        )
        completion = self.backend.complete(
            request, lambda piece: emit(parser.feed(piece)), self.cancel
        )
        final = parser.finish()
        emit(final)
        end = final[-1]
        assert isinstance(end, End)
        return end, completion.finish_reason, completion.stats
