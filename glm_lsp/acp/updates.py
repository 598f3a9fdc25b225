"""Agent events and logged turns as ACP `session/update` payloads.

Live prompts and `session/load` replays use the same shapes, so a reloaded session looks like
the one the user saw: thoughts, messages, and tool calls with their kind, locations and diffs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from acp import (
    start_tool_call,
    text_block,
    tool_content,
    tool_diff_content,
    update_agent_message_text,
    update_agent_thought_text,
    update_tool_call,
    update_user_message_text,
)
from acp.schema import ToolCallLocation, ToolKind

from glm_lsp.agent.edits import FileChange
from glm_lsp.agent.loop import ToolEvent
from glm_lsp.glm.tool_text import failed

PARAGRAPH = "\n\n"  # between two assistant messages of one turn when replayed
RESULT_LIMIT = 8000  # characters of a tool result shown in the client; the model saw all of it
KINDS: dict[str, ToolKind] = {
    "read_file": "read",
    "list_files": "search",
    "search": "search",
    "outline": "read",
    "edit_file": "edit",
    "write_file": "edit",
    "rename_file": "move",
    "delete_file": "delete",
    "run_command": "execute",
}


def tool_kind(name: str) -> ToolKind:
    return KINDS.get(name, "other")


def tool_title(name: str, arguments: dict[str, Any]) -> str:
    path = arguments.get("path")
    if name == "run_command":
        return f"Run `{arguments.get('command', '')}`"
    if name == "search":
        return f"Search {arguments.get('pattern', '')!r}" + (f" in {path}" if path else "")
    if name == "rename_file":
        return f"Rename {path} to {arguments.get('new_path')}"
    verb = {
        "read_file": "Read",
        "list_files": "List",
        "outline": "Outline",
        "edit_file": "Edit",
        "write_file": "Write",
        "delete_file": "Delete",
    }.get(name, name)
    return f"{verb} {path}" if path else verb


def locations(root: Path, arguments: dict[str, Any]) -> list[ToolCallLocation]:
    found = []
    for key in ("path", "new_path"):
        value = arguments.get(key)
        if isinstance(value, str) and value and "\x00" not in value:
            line = arguments.get("start_line") if key == "path" else None
            found.append(
                ToolCallLocation(
                    path=str(root / value), line=line if isinstance(line, int) else None
                )
            )
    return found


def diff_of(root: Path, change: FileChange) -> Any:
    return tool_diff_content(str(root / change.path), change.after or "", change.before)


def started(root: Path, event: ToolEvent) -> Any:
    return start_tool_call(
        event.id,
        tool_title(event.name, event.arguments),
        kind=tool_kind(event.name),
        status="in_progress",
        locations=locations(root, event.arguments),
        raw_input=event.arguments,
    )


def finished(root: Path, event: ToolEvent) -> Any:
    result = event.result or ""
    content = [tool_content(text_block(clip(result)))]
    if event.change is not None:
        content.insert(0, diff_of(root, event.change))
    status = "failed" if failed(result) else "completed"
    return update_tool_call(event.id, status=status, content=content)


def clip(text: str) -> str:
    return text if len(text) <= RESULT_LIMIT else text[:RESULT_LIMIT] + "\n… (shortened)"


def message_chunk(text: str, message_id: str) -> Any:
    chunk = update_agent_message_text(text)
    chunk.message_id = message_id
    return chunk


def replay(root: Path, records: list[dict[str, Any]]) -> list[Any]:
    """A logged conversation as the updates a client saw: each turn's user message (what was
    typed, for an ACP prompt), then every assistant step's thought (byte-exact), message and tool
    calls with their results."""
    updates: list[Any] = []
    for record in records:
        turn = record.get("turn")
        pending: list[tuple[str, str, dict[str, Any]]] = []
        said = False  # an assistant message of this turn was replayed: the next one is apart
        for index, message in enumerate(record.get("messages") or []):
            role = message.get("role")
            if role == "user":
                typed = record.get("prompt") if index == 0 else None
                updates.append(update_user_message_text(typed or str(message.get("content", ""))))
            elif role == "assistant":
                if message.get("reasoning_content"):
                    updates.append(update_agent_thought_text(message["reasoning_content"]))
                if message.get("content"):
                    # Each message its own (message_id), after a paragraph break, so a client
                    # that joins chunks shows "Reading it." and the answer apart.
                    message_id = f"turn{turn}-{index}"
                    if said:
                        updates.append(message_chunk(PARAGRAPH, message_id))
                    updates.append(message_chunk(message["content"], message_id))
                    said = True
                for number, call in enumerate(message.get("tool_calls") or []):
                    function = call.get("function") or {}
                    name, arguments = str(function.get("name")), function.get("arguments") or {}
                    call_id = f"turn{turn}-{index}-{number}"
                    pending.append((call_id, name, arguments))
                    updates.append(
                        start_tool_call(
                            call_id,
                            tool_title(name, arguments),
                            kind=tool_kind(name),
                            status="in_progress",
                            locations=locations(root, arguments),
                            raw_input=arguments,
                        )
                    )
            elif role == "tool" and pending:
                call_id, name, arguments = pending.pop(0)
                event = ToolEvent(call_id, name, arguments, str(message.get("content", "")))
                updates.append(finished(root, event))
    return updates
