"""What the model saw and produced, completion by completion, rebuilt from a preserved-thinking log.

The agent renders every completion's prompt as: the system prompt, the tools, every message of the
earlier logged requests (minus the turns compaction dropped), then the request's own messages so
far (agent/loop.py). The completion is the assistant message in the template's canonical form,
ended by the stop token the model yields with (runtime/mlx.py picks the same one for scripts).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from glm_lsp.agent.prompts import SYSTEM_PROMPT
from glm_lsp.glm.format import (
    OBSERVATION,
    THINK_CLOSE,
    THINK_OPEN,
    USER,
    render_tool_call,
    tool_call_arguments,
)

Message = dict[str, Any]


@dataclass
class Step:
    """One completion: its context (system first), the assistant message, the render flags."""

    record: dict[str, Any]
    context: list[Message]
    message: Message
    enable_thinking: bool
    clear_thinking: bool
    skip: str | None = None  # why the log cannot reproduce this completion exactly


def stop_token(message: Mapping[str, Any]) -> str:
    """After a tool call the model yields to the tools, otherwise it hands back to the user."""
    return OBSERVATION if message.get("tool_calls") else USER


def assistant_completion(message: Mapping[str, Any], *, enable_thinking: bool) -> str:
    """The text the model generated after the generation prompt, through its stop token.

    Whitespace around reasoning and content is stripped as the template strips it, so the
    completion is exactly what later prompts show for this message.
    """
    reasoning = str(message.get("reasoning_content") or "").strip()
    content = message.get("content")
    content = content.strip() if isinstance(content, str) else ""
    if enable_thinking:  # the prompt ended in <think>: reasoning (maybe none), then </think>
        head = reasoning + THINK_CLOSE
    else:  # the prompt ended in </think>; a model that thinks anyway reopens the tag
        head = f"{THINK_OPEN}{reasoning}{THINK_CLOSE}" if reasoning else ""
    calls = "".join(
        render_tool_call(*tool_call_arguments(c)) for c in message.get("tool_calls") or ()
    )
    return head + content + calls + stop_token(message)


def _malformed(messages: Sequence[Mapping[str, Any]], index: int) -> bool:
    """A completion with an unparsable tool call: the log keeps the error result, not the call,
    so its text cannot be rebuilt (agent/loop.py adds one tool result per call and per error)."""
    results = 0
    for m in messages[index + 1 :]:
        if m.get("role") != "tool":
            break
        results += 1
    return results > len(messages[index].get("tool_calls") or ())


def steps(records: Sequence[dict[str, Any]], *, preserve_thinking: bool = True) -> Iterator[Step]:
    """Every assistant completion of a log, in order, with the exact context it was generated in.

    Completions the log cannot reproduce byte for byte carry `skip`: earlier completions of a
    request that compacted (the log says which turns were dropped, not before which completion),
    the one cut off by maxTokens, and ones holding a malformed tool call.
    """
    system: Message = {"role": "system", "content": SYSTEM_PROMPT}
    for i, record in enumerate(records):
        compacted = record.get("compacted") or {}
        dropped = {int(t) for t in compacted.get("droppedTurns") or ()}
        history = [
            m for r in records[:i] if int(r.get("turn", 0)) not in dropped for m in r["messages"]
        ]
        messages = record["messages"]
        last = max((j for j, m in enumerate(messages) if m.get("role") == "assistant"), default=-1)
        truncated = _cut_off(record)
        for j, message in enumerate(messages):
            if message.get("role") != "assistant":
                continue
            skip = None
            if dropped and j != last:
                skip = "compacted mid-request"
            elif truncated and j == last:
                skip = "cut off by maxTokens"
            elif _malformed(messages, j):
                skip = "malformed tool call"
            yield Step(
                record=record,
                context=[system, *history, *messages[:j]],
                message=message,
                enable_thinking=record.get("thinking") != "disabled",
                clear_thinking=not preserve_thinking,
                skip=skip,
            )


def _cut_off(record: dict[str, Any]) -> bool:
    """Whether maxTokens ended the request's last completion. Logs written before `stopLimit`
    existed say so only in the `stopped` sentence, which the loop worded "… maxTokens (N) …"."""
    if "stopLimit" in record:
        return record["stopLimit"] == "maxTokens"
    return "maxTokens" in str(record.get("stopped") or "")
