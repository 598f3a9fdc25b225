"""The GLM-4.7 conversation format: prompts rendered byte for byte as the official template does.

Written in Python instead of running the Jinja template so that each message renders on its own:
that is what makes incremental rendering (and so KV reuse) cheap and provable.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

PROMPT_START = "[gMASK]<sop>"
SYSTEM, USER, ASSISTANT, OBSERVATION = "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ENDOFTEXT = "<|endoftext|>"
STOP_TOKENS = (ENDOFTEXT, USER, OBSERVATION)

_TOOLS_HEADER = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
)
_TOOLS_FOOTER = (
    "</tools>\n\nFor each function call, output the function name and arguments within the "
    "following XML format:\n<tool_call>{function-name}<arg_key>{arg-key-1}</arg_key><arg_value>"
    "{arg-value-1}</arg_value><arg_key>{arg-key-2}</arg_key><arg_value>{arg-value-2}</arg_value>"
    "...</tool_call>"
)

Message = Mapping[str, Any]


def to_json(value: Any) -> str:
    """The template's `tojson(ensure_ascii=False)`: json.dumps with default separators."""
    return json.dumps(value, ensure_ascii=False)


def _text(value: Any) -> str:
    """The template's `visible_text` macro. A null content (the OpenAI shape of a pure tool call)
    is "": mlx_lm.server and vLLM turn None into "" before templating, where Jinja would print
    the text 'None' into the prompt."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        parts = []
        for item in value:
            if isinstance(item, Mapping) and item.get("type") == "text":
                parts.append(_text(item.get("text")))
            elif isinstance(item, str):
                parts.append(item)
        return "".join(parts)
    return str(value)  # Jinja prints other values with str(), so None becomes 'None'


def render_tools(tools: Sequence[Mapping[str, Any]] | None) -> str:
    if not tools:
        return ""
    return SYSTEM + "\n" + _TOOLS_HEADER + "".join(to_json(t) + "\n" for t in tools) + _TOOLS_FOOTER


def _split_reasoning(message: Message) -> tuple[str, str]:
    content = _text(message.get("content"))
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str):
        return reasoning, content
    if THINK_CLOSE in content:
        reasoning = content.split(THINK_CLOSE)[0].rstrip("\n").split(THINK_OPEN)[-1].lstrip("\n")
        return reasoning, content.split(THINK_CLOSE)[-1].lstrip("\n")
    return "", content


def tool_call_arguments(call: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """Name and arguments of a call in either OpenAI shape (`function` wrapper) or flat shape.

    OpenAI clients send arguments as a JSON string; the template needs a mapping, so decode it.
    """
    fn = call.get("function") or call
    args = fn.get("arguments") or {}
    if isinstance(args, str):
        args = json.loads(args) if args.strip() else {}
    return str(fn.get("name")), args


def render_tool_call(name: str, arguments: Mapping[str, Any]) -> str:
    pairs = "".join(
        f"<arg_key>{k}</arg_key><arg_value>{v if isinstance(v, str) else to_json(v)}</arg_value>"
        for k, v in arguments.items()
    )
    return f"<tool_call>{name}{pairs}</tool_call>"


def render_assistant(message: Message, *, show_reasoning: bool) -> str:
    reasoning, content = _split_reasoning(message)
    out = ASSISTANT
    out += (
        f"{THINK_OPEN}{reasoning.strip()}{THINK_CLOSE}"
        if show_reasoning and reasoning
        else THINK_CLOSE
    )
    out += content.strip()
    for call in message.get("tool_calls") or ():
        out += render_tool_call(*tool_call_arguments(call))
    return out


def render_tool_result(message: Message, *, first_in_run: bool) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return (OBSERVATION if first_in_run else "") + f"<tool_response>{content}</tool_response>"
    out = OBSERVATION
    for item in content or ():
        output = item.get("output", item) if isinstance(item, Mapping) else item
        out += f"<tool_response>{output}</tool_response>"
    return out


def generation_prompt(*, enable_thinking: bool = True) -> str:
    return ASSISTANT + (THINK_OPEN if enable_thinking else THINK_CLOSE)


def _last_user_index(messages: Sequence[Message]) -> int:
    return max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)


def _render_messages(
    messages: Sequence[Message], start: int, *, clear_thinking: bool, last_user: int
) -> str:
    out = []
    for i in range(start, len(messages)):
        m = messages[i]
        role = m.get("role")
        if role == "user":
            out.append(USER + _text(m.get("content")))
        elif role == "assistant":
            out.append(render_assistant(m, show_reasoning=not clear_thinking or i > last_user))
        elif role == "tool":
            first = i == 0 or messages[i - 1].get("role") != "tool"
            out.append(render_tool_result(m, first_in_run=first))
        elif role == "system":
            out.append(SYSTEM + _text(m.get("content")))
    return "".join(out)


def render_prompt(
    messages: Sequence[Message],
    tools: Sequence[Mapping[str, Any]] | None = None,
    *,
    clear_thinking: bool = False,
    enable_thinking: bool = True,
    add_generation_prompt: bool = True,
) -> str:
    """Exactly what GLM-4.7's chat template renders for these messages and tools."""
    body = _render_messages(
        messages, 0, clear_thinking=clear_thinking, last_user=_last_user_index(messages)
    )
    tail = generation_prompt(enable_thinking=enable_thinking) if add_generation_prompt else ""
    return PROMPT_START + render_tools(tools) + body + tail


def render_suffix(
    messages: Sequence[Message],
    history_length: int,
    *,
    clear_thinking: bool = False,
    enable_thinking: bool = True,
    add_generation_prompt: bool = True,
) -> str:
    """The text to append to the render of `messages[:history_length]` (without generation prompt)
    so that the result equals the full render of `messages`.

    Raises ValueError when no such suffix exists: with clear_thinking, a new user message hides
    reasoning the history showed, so the caller must re-render (and reuse the common prefix).
    """
    last_user = _last_user_index(messages)
    if clear_thinking and last_user >= history_length:
        hidden = any(
            m.get("role") == "assistant" and _split_reasoning(m)[0]
            for m in messages[_last_user_index(messages[:history_length]) + 1 : history_length]
        )
        if hidden:
            raise ValueError("clear_thinking hides earlier reasoning: render the whole prompt")
    body = _render_messages(
        messages, history_length, clear_thinking=clear_thinking, last_user=last_user
    )
    tail = generation_prompt(enable_thinking=enable_thinking) if add_generation_prompt else ""
    return body + tail


def completion_text(message: Message) -> str:
    """What the model generates after the generation prompt for this assistant message, in the
    canonical form the template renders back (used for scripted replies and KV accounting)."""
    reasoning, content = _split_reasoning(message)
    out = (reasoning.strip() + THINK_CLOSE if reasoning else "") + content.strip()
    for call in message.get("tool_calls") or ():
        out += render_tool_call(*tool_call_arguments(call))
    return out
