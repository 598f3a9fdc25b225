"""A Chat Completions request body checked into a `ChatRequest` (the host's OpenAI endpoint,
openai_api.py), and the OpenAI error body.

Every refusal is a `WireError` naming the field (`messages[2].role`), so a client gets one sentence
that says what to fix, never a traceback. Fields this endpoint does not use (`user`, `seed`,
penalties, `stop`) are accepted and ignored, as mlx_lm.server does with what it does not support.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_TOKENS = 8192  # a reasoning model's answer to a coding task is often past 4096
ROLES = ("system", "developer", "user", "assistant", "tool")


class WireError(ValueError):
    """A request the endpoint refuses: HTTP `status`, the OpenAI error `code` and `param`."""

    def __init__(
        self, message: str, param: str | None, *, status: int = 400, code: str = "invalid_value"
    ) -> None:
        super().__init__(message)
        self.param, self.status, self.code = param, status, code


def error_body(
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    kind: str = "invalid_request_error",
) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass
class ChatRequest:
    messages: list[dict[str, Any]]
    model: str
    tools: list[dict[str, Any]] | None = None
    stream: bool = False
    include_usage: bool = False
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 0.7
    top_p: float = 1.0
    enable_thinking: bool = True
    clear_thinking: bool = False


def parse_request(raw: bytes, default_model: str) -> ChatRequest:
    """The body of POST /v1/chat/completions, checked; WireError names the first bad field."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise WireError(
            f"the request body is not valid JSON ({exc}); send a JSON object",
            None,
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise WireError("the request body must be a JSON object", None, code="invalid_json")
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise WireError("'model' must be a non-empty string", "model", code="invalid_type")
    chat = ChatRequest(messages=_messages(body), model=model or default_model)
    chat.tools = _tools(body.get("tools"))
    chat.stream = _typed(body, "stream", bool, False)
    options = _typed(body, "stream_options", dict, None) or {}
    chat.include_usage = _typed(options, "include_usage", bool, False, "stream_options.")
    given = [k for k in ("max_completion_tokens", "max_tokens") if body.get(k) is not None]
    if given:  # the newer name wins, as OpenAI's does
        name, limit = given[0], body[given[0]]
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise WireError(f"'{name}' must be a positive integer", name, code="invalid_type")
        chat.max_tokens = limit
    chat.temperature = _number(body, "temperature", 0.0, 2.0, chat.temperature)
    chat.top_p = _number(body, "top_p", 0.0, 1.0, chat.top_p)
    if body.get("n") not in (None, 1):
        raise WireError("'n' must be 1: one choice per request", "n", code="unsupported_value")
    _thinking(body, chat)
    return chat


def _typed(body: Mapping[str, Any], key: str, kind: type, default: Any, prefix: str = "") -> Any:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, kind):
        wanted = {bool: "true or false", dict: "an object", str: "a string"}[kind]
        raise WireError(f"'{prefix}{key}' must be {wanted}", prefix + key, code="invalid_type")
    return value


def _number(body: Mapping[str, Any], key: str, low: float, high: float, default: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not low <= value <= high:
        raise WireError(f"'{key}' must be a number from {low:g} to {high:g}", key)
    return float(value)


def _thinking(body: Mapping[str, Any], chat: ChatRequest) -> None:
    """`chat_template_kwargs` as mlx_lm.server and vLLM take it, and Z.ai's `thinking` object."""
    kwargs = _typed(body, "chat_template_kwargs", dict, None) or {}
    prefix = "chat_template_kwargs."
    chat.enable_thinking = _typed(kwargs, "enable_thinking", bool, True, prefix)
    chat.clear_thinking = _typed(kwargs, "clear_thinking", bool, False, prefix)
    thinking = _typed(body, "thinking", dict, None)
    if thinking is not None:
        kind = thinking.get("type", "enabled")
        if kind not in ("enabled", "disabled"):
            raise WireError('\'thinking.type\' must be "enabled" or "disabled"', "thinking.type")
        chat.enable_thinking = kind == "enabled"
        chat.clear_thinking = _typed(
            thinking, "clear_thinking", bool, chat.clear_thinking, "thinking."
        )


def _messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if messages is None:
        raise WireError(
            "'messages' is required: a list of chat messages",
            "messages",
            code="missing_required_parameter",
        )
    if not isinstance(messages, list) or not messages:
        raise WireError("'messages' must be a non-empty list of chat messages", "messages")
    return [_message(m, f"messages[{i}]") for i, m in enumerate(messages)]


def _message(m: Any, where: str) -> dict[str, Any]:
    if not isinstance(m, dict):
        raise WireError(f"'{where}' must be an object with a role", where, code="invalid_type")
    role = m.get("role")
    if role not in ROLES:
        raise WireError(
            f"'{where}.role' is {role!r}; it must be one of {', '.join(ROLES)}", f"{where}.role"
        )
    out: dict[str, Any] = {"role": "system" if role == "developer" else role}
    content = m.get("content")
    if content is None and role not in ("assistant",):
        raise WireError(f"'{where}.content' is required for a {role} message", f"{where}.content")
    out["content"] = _content(content, f"{where}.content")
    if role == "assistant":
        reasoning = m.get("reasoning_content", m.get("reasoning"))
        if reasoning is not None:
            if not isinstance(reasoning, str):
                raise WireError(
                    f"'{where}.reasoning_content' must be a string", f"{where}.reasoning_content"
                )
            out["reasoning_content"] = reasoning
        calls = m.get("tool_calls")
        if calls is not None:
            if not isinstance(calls, list):
                raise WireError(f"'{where}.tool_calls' must be a list", f"{where}.tool_calls")
            out["tool_calls"] = [_call(c, f"{where}.tool_calls[{j}]") for j, c in enumerate(calls)]
    return out


def _content(content: Any, where: str) -> str | None:
    """Text content: a string, or a list of text parts (images are not for this model)."""
    if content is None or isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise WireError(f"'{where}' must be a string or a list of text parts", where)
    parts = []
    for j, part in enumerate(content):
        if (
            isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        ):
            parts.append(part["text"])
        else:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise WireError(
                f"'{where}[{j}]' is a {kind!r} part; GLM-4.7 takes text parts only "
                '({"type": "text", "text": ...})',
                f"{where}[{j}]",
            )
    return "".join(parts)


def _call(call: Any, where: str) -> dict[str, Any]:
    fn = call.get("function") if isinstance(call, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise WireError(f"'{where}.function.name' must be a string", f"{where}.function.name")
    args = fn.get("arguments") or "{}"
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except ValueError:
            args = None
    if not isinstance(args, dict):
        raise WireError(
            f"'{where}.function.arguments' must be a JSON object (as a string)",
            f"{where}.function.arguments",
        )
    return {
        "id": call.get("id"),
        "type": "function",
        "function": {"name": fn["name"], "arguments": args},
    }


def _tools(tools: Any) -> list[dict[str, Any]] | None:
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise WireError("'tools' must be a list of function tools", "tools")
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise WireError(
                f"'tools[{i}].function.name' must be a non-empty string",
                f"tools[{i}].function.name",
            )
        if tool.get("type", "function") != "function":
            raise WireError(f"'tools[{i}].type' must be \"function\"", f"tools[{i}].type")
    return tools or None
