"""Streaming parser for raw GLM-4.7 completions: reasoning, content and tool calls.

The completion continues a generation prompt ending in `<think>` (thinking on) or `</think>`
(thinking off). Text may arrive split anywhere, even inside a tag; the event stream does not
depend on how it was split. Malformed input never raises: it becomes text or a ParseError.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import Any


def _deserialize(value: str) -> Any:
    """mlx_lm's GLM-4.7 tool parser decodes a value as JSON, then as a Python literal, else keeps
    the text (`mlx_lm.tool_parsers.glm47._deserialize`); this is that, so both agree. Written here
    because importing it imports all of mlx_lm and transformers: 1.6 s of every front-end's
    start-up, which with the host needs no MLX at all. tests/test_parse.py checks they agree."""
    try:
        return json.loads(value)
    except Exception:  # as mlx_lm: anything that does not decode (RecursionError too) stays text
        pass
    try:
        return ast.literal_eval(value)
    except Exception:
        pass
    return value


THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
KEY_OPEN, KEY_CLOSE = "<arg_key>", "</arg_key>"
VALUE_OPEN, VALUE_CLOSE = "<arg_value>", "</arg_value>"


@dataclass(frozen=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True)
class ContentDelta:
    text: str


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    raw: str  # the text between <tool_call> and </tool_call>


@dataclass(frozen=True)
class ParseError:
    message: str
    raw: str  # the offending tool-call body ("" when the problem is not a tool call)


@dataclass(frozen=True)
class End:
    reasoning: str
    content: str
    tool_calls: tuple[ToolCall, ...]
    errors: tuple[ParseError, ...]


Event = ReasoningDelta | ContentDelta | ToolCall | ParseError | End

_REASONING, _CONTENT, _CALL = "reasoning", "content", "call"
# Tags that end each text state; everything else in that state is plain text.
_TAGS = {_REASONING: (THINK_CLOSE,), _CONTENT: (CALL_OPEN, THINK_OPEN)}
_TYPES: dict[str, Any] = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
    "string": lambda v: isinstance(v, str),
}

_NAMES = {
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a JSON array",
    "object": "a JSON object",
}


def tool_call_text(name: str, arguments: dict[str, Any]) -> str:
    """One call rendered exactly as the chat template renders an assistant tool call."""
    args = "".join(
        f"{KEY_OPEN}{k}{KEY_CLOSE}{VALUE_OPEN}"
        f"{v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)}{VALUE_CLOSE}"
        for k, v in arguments.items()
    )
    return f"{CALL_OPEN}{name}{args}{CALL_CLOSE}"


def parse_completion(
    text: str, tools: list[dict] | None = None, *, in_reasoning: bool = True
) -> list[Event]:
    """All events of a complete completion; the same as feeding it in any pieces."""
    parser = StreamParser(tools, in_reasoning=in_reasoning)
    return parser.feed(text) + parser.finish()


def _held(text: str, tags: tuple[str, ...]) -> int:
    """Length of the longest suffix of text that could still grow into one of tags."""
    for n in range(min(len(text), max(map(len, tags)) - 1), 0, -1):
        if any(tag.startswith(text[-n:]) for tag in tags):
            return n
    return 0


def _is_json(value: Any) -> bool:
    # Iterative: a deeply nested value must not hit the recursion limit.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack += item
        elif isinstance(item, dict):
            if not all(isinstance(k, str) for k in item):
                return False
            stack += item.values()
        elif not (item is None or isinstance(item, (str, int, float))):
            return False
    return True


def _decode(raw: str) -> Any:
    # Python literals may decode to sets, tuples or bytes, which no tool can take: keep the text.
    value = _deserialize(raw)
    return value if _is_json(value) else raw


def _skip_space(text: str, pos: int) -> int:
    # A literal backslash-n between tags is tolerated too, as mlx_lm and vLLM do.
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
        elif text.startswith("\\n", pos):
            pos += 2
        else:
            break
    return pos


class StreamParser:
    """Feed completion text in any pieces; events come out as soon as the text decides them."""

    def __init__(self, tools: list[dict] | None = None, *, in_reasoning: bool = True) -> None:
        self._tools: dict[str, dict] | None = None
        if tools is not None:
            functions = [t.get("function", t) for t in tools]
            self._tools = {f.get("name"): f for f in functions}
        self._state = _REASONING if in_reasoning else _CONTENT
        self._at_start = in_reasoning  # a leading <think> is dropped
        self._buf = ""  # held-back tag prefix, or the tool-call body read so far
        self._scan = 0  # where to resume looking for </tool_call> in a long body
        self._reasoning: list[str] = []
        self._content: list[str] = []
        self._calls: list[ToolCall] = []
        self._errors: list[ParseError] = []
        self._end: End | None = None

    def feed(self, text: str) -> list[Event]:
        if self._end is not None:
            return []
        self._buf += text
        out: list[Event] = []
        while self._step(out):
            pass
        return out

    def finish(self) -> list[Event]:
        if self._end is not None:
            return [self._end]
        out: list[Event] = []
        if self._state == _CALL:
            self._error(out, "the completion ended inside a tool call (no </tool_call>)", self._buf)
        else:
            self._text(out, self._buf)
            if self._state == _REASONING:
                msg = "the reasoning was not closed: the completion ended before </think>"
                self._error(out, msg, "")
        self._buf = ""
        self._end = End(
            "".join(self._reasoning),
            "".join(self._content),
            tuple(self._calls),
            tuple(self._errors),
        )
        out.append(self._end)
        return out

    def _step(self, out: list[Event]) -> bool:
        """Consume what the buffer decides; False when the rest must wait for more text."""
        buf = self._buf
        if self._state == _CALL:
            end = buf.find(CALL_CLOSE, self._scan)
            if end < 0:
                self._scan = max(0, len(buf) - len(CALL_CLOSE) + 1)
                return False
            self._buf, self._scan, self._state = buf[end + len(CALL_CLOSE) :], 0, _CONTENT
            event = self._parse_call(buf[:end])
            if isinstance(event, ToolCall):
                self._calls.append(event)
                out.append(event)
            else:
                self._error(out, event.message, event.raw)
            return True
        if self._at_start:
            if len(buf) < len(THINK_OPEN) and THINK_OPEN.startswith(buf):
                return False
            self._at_start = False
            if buf.startswith(THINK_OPEN):
                self._buf = buf = buf[len(THINK_OPEN) :]
        tags = _TAGS[self._state]
        found = [(i, tag) for tag in tags if (i := buf.find(tag)) >= 0]
        if not found:
            keep = _held(buf, tags)
            self._text(out, buf[: len(buf) - keep])
            self._buf = buf[len(buf) - keep :]
            return False
        i, tag = min(found)
        self._text(out, buf[:i])
        self._buf = buf[i + len(tag) :]
        self._state = {THINK_CLOSE: _CONTENT, THINK_OPEN: _REASONING, CALL_OPEN: _CALL}[tag]
        return True

    def _text(self, out: list[Event], text: str) -> None:
        if not text:
            return
        reasoning = self._state == _REASONING
        (self._reasoning if reasoning else self._content).append(text)
        kind = ReasoningDelta if reasoning else ContentDelta
        if out and type(out[-1]) is kind:
            text = out.pop().text + text  # one delta per kind run within a feed
        out.append(kind(text))

    def _error(self, out: list[Event], message: str, raw: str) -> None:
        error = ParseError(message, raw)
        self._errors.append(error)
        out.append(error)

    def _parse_call(self, raw: str) -> ToolCall | ParseError:
        first = raw.find(KEY_OPEN)
        name = (raw if first < 0 else raw[:first]).strip()
        if not name:
            return ParseError("a tool call has no tool name before its arguments", raw)
        spec = None
        if self._tools is not None:
            spec = self._tools.get(name)
            if spec is None:
                known = ", ".join(str(n) for n in self._tools) or "(none)"
                return ParseError(f"unknown tool {name[:80]!r}; the tools are: {known}", raw)
        params = (spec or {}).get("parameters") or {}
        props: dict[str, Any] = params.get("properties") or {}
        arguments: dict[str, Any] = {}
        problems: list[str] = []
        unknown: list[str] = []
        pos = len(raw) if first < 0 else first
        while (pos := _skip_space(raw, pos)) < len(raw):
            key_end = raw.find(KEY_CLOSE, pos)
            if not raw.startswith(KEY_OPEN, pos) or key_end < 0:
                problems.append(f"expected <arg_key>name</arg_key>, found {raw[pos : pos + 40]!r}")
                break
            key = raw[pos + len(KEY_OPEN) : key_end].strip()
            pos = _skip_space(raw, key_end + len(KEY_CLOSE))
            value_end = raw.find(VALUE_CLOSE, pos)
            if not raw.startswith(VALUE_OPEN, pos) or value_end < 0:
                problems.append(f"argument {key!r} has no <arg_value>…</arg_value>")
                break
            value = raw[pos + len(VALUE_OPEN) : value_end]
            pos = value_end + len(VALUE_CLOSE)
            if key in arguments:
                problems.append(f"argument {key!r} is given twice")
            elif spec is not None and key not in props:
                unknown.append(key)
            else:
                arguments[key] = self._value(key, value, props.get(key) or {}, problems)
        if unknown:
            accepted = ", ".join(props) or "none"
            names = ", ".join(map(repr, unknown))
            problems.append(f"unknown argument {names}; {name} accepts: {accepted}")
        missing = [k for k in params.get("required") or () if k not in arguments]
        problems += [f"missing required argument {k!r}" for k in missing]
        if problems:
            return ParseError(f"bad call to {name[:80]}: " + "; ".join(problems), raw)
        return ToolCall(name, arguments, raw)

    @staticmethod
    def _value(key: str, raw: str, schema: dict, problems: list[str]) -> Any:
        types = schema.get("type") if isinstance(schema, dict) else None
        types = [types] if isinstance(types, str) else list(types or [])
        if "string" in types:
            return raw  # byte-exact: edit_file's old_text must match whitespace and all
        value = _decode(raw)
        if types and not any(_TYPES.get(t, lambda v: True)(value) for t in types):
            wanted = " or ".join(_NAMES.get(t, str(t)) for t in types)
            problems.append(f"argument {key!r} must be {wanted}, got {raw[:80]!r}")
        return value
