"""GLM-4.7 output in OpenAI Chat Completions shapes (the host's OpenAI endpoint, openai_api.py),
without I/O: the parsed completion as a message, stream deltas and chunks, usage, SSE framing."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from glm_lsp.glm.parse import (
    CALL_CLOSE,
    CALL_OPEN,
    ContentDelta,
    Event,
    ParseError,
    ReasoningDelta,
    StreamParser,
    ToolCall,
    parse_completion,
)
from glm_lsp.wire.records import Stats


def usage(stats: Stats) -> dict[str, Any]:
    return {
        "prompt_tokens": stats.promptTokens,
        "completion_tokens": stats.generatedTokens,
        "total_tokens": stats.promptTokens + stats.generatedTokens,
        "prompt_tokens_details": {"cached_tokens": stats.reusedTokens},
    }


@dataclass
class Shaper:
    """GLM-4.7 completion text in, OpenAI deltas out, as the text streams. A call the request's
    tools reject (unknown name or argument) is still handed over as a tool call: the client's
    harness tells its model what was wrong, as it would for any other bad call."""

    tools: list[dict[str, Any]] | None = None
    thinking: bool = True
    reasoning: list[str] = field(default_factory=list)
    content: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.parser = StreamParser(self.tools, in_reasoning=self.thinking)

    def feed(self, text: str) -> list[dict[str, Any]]:
        return self._deltas(self.parser.feed(text))

    def finish(self) -> list[dict[str, Any]]:
        return self._deltas(self.parser.finish())

    def _deltas(self, events: list[Event]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for event in events:
            if isinstance(event, ReasoningDelta):
                self.reasoning.append(event.text)
                out.append({"reasoning_content": event.text})
            elif isinstance(event, ContentDelta):
                self.content.append(event.text)
                out.append({"content": event.text})
            elif isinstance(event, ToolCall):
                out.append({"tool_calls": [self._call(event)]})
            elif isinstance(event, ParseError) and event.raw:
                out += self._lenient(event.raw)
            # An End, or reasoning cut off by max_tokens: nothing more to send.
        return out

    def _lenient(self, raw: str) -> list[dict[str, Any]]:
        """The call without the tools' checks; text when it is not a call at all."""
        text = CALL_OPEN + raw + CALL_CLOSE
        for event in parse_completion(text, None, in_reasoning=False):
            if isinstance(event, ToolCall):
                return [{"tool_calls": [self._call(event)]}]
        self.content.append(text)
        return [{"content": text}]

    def _call(self, call: ToolCall) -> dict[str, Any]:
        shaped = {
            "index": len(self.calls),
            "id": f"call_{secrets.token_hex(12)}",
            "type": "function",
            "function": {
                "name": call.name,
                "arguments": json.dumps(call.arguments, ensure_ascii=False),
            },
        }
        self.calls.append(shaped)
        return shaped

    def finish_reason(self, finish: str) -> str:
        return "tool_calls" if self.calls else ("length" if finish == "length" else "stop")

    def message(self) -> dict[str, Any]:
        content = "".join(self.content)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": content if content or not self.calls else None,
        }
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.calls:
            message["tool_calls"] = [
                {k: v for k, v in c.items() if k != "index"} for c in self.calls
            ]
        return message


@dataclass
class Envelope:
    """What every object of one answer shares: its id, time and model."""

    model: str
    id: str = field(default_factory=lambda: f"chatcmpl-{secrets.token_hex(12)}")
    created: int = field(default_factory=lambda: int(time.time()))

    def completion(self, shaper: Shaper, finish: str, stats: Stats) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": shaper.message(),
                    "finish_reason": shaper.finish_reason(finish),
                }
            ],
            "usage": usage(stats),
        }

    def chunk(
        self, delta: dict[str, Any] | None, finish: str | None = None, stats: Stats | None = None
    ) -> dict[str, Any]:
        """A stream chunk; with `stats` the usage chunk (no choices), as OpenAI sends it last."""
        out: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": []
            if stats is not None
            else [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
        }
        if stats is not None:
            out["usage"] = usage(stats)
        return out


def sse(data: dict[str, Any] | str) -> bytes:
    text = (
        data
        if isinstance(data, str)
        else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    )
    return f"data: {text}\n\n".encode()
