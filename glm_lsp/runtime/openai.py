"""OpenAI-compatible backend: LM Studio, mlx_lm.server, vLLM, Z.ai.

The server streams reasoning, content and tool-call deltas separately; they are turned back into
GLM-4.7's raw completion text so the agent parses every backend's output the same way. Plain
http.client keeps this dependency-free; a watcher closes the socket to cancel a blocked read.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from glm_lsp.config import Settings
from glm_lsp.glm.format import THINK_CLOSE, THINK_OPEN, render_tool_call
from glm_lsp.masking import api_key, mask
from glm_lsp.runtime.base import (
    BackendError,
    Cancelled,
    Completion,
    CompletionRequest,
    OnText,
    Stats,
)
from glm_lsp.runtime.scripted import ScriptedReplies

TIMEOUT_ENV = "GLM_LSP_HTTP_TIMEOUT"  # seconds a silent server is waited for (README)
DEFAULT_IDLE_TIMEOUT = 120.0
# Generous bounds per token: no real token is longer, so only a runaway stream is cut.
CHARS_PER_TOKEN = 16  # generated text
BYTES_PER_TOKEN = 2048  # raw SSE: JSON framing, ids, logprobs
MAX_STREAM_LINE = 1 << 20  # one SSE line


def idle_timeout_from_env() -> float:
    """A big local model may prefill for minutes before its first token; a test wants seconds."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_IDLE_TIMEOUT
    except ValueError:
        value = 0.0
    return value if value > 0 else DEFAULT_IDLE_TIMEOUT


def without_userinfo(url: str) -> str:
    """The base URL as error texts show it: a `user:password@` part is not repeated."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def to_openai_messages(messages: list[dict[str, Any]] | tuple) -> list[dict[str, Any]]:
    """Our log's messages in OpenAI shape: call ids added, arguments as JSON strings,
    reasoning_content passed through exactly as received."""
    out: list[dict[str, Any]] = []
    pending: list[str] = []
    for index, m in enumerate(messages):
        m = dict(m)
        if m.get("role") == "assistant" and m.get("tool_calls"):
            calls, pending = [], []
            for i, call in enumerate(m["tool_calls"]):
                fn = call.get("function", call)
                args = fn.get("arguments", {})
                call_id = call.get("id") or f"call_{index}_{i}"
                pending.append(call_id)
                calls.append(
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {
                            "name": fn.get("name"),
                            "arguments": args
                            if isinstance(args, str)
                            else json.dumps(args, ensure_ascii=False),
                        },
                    }
                )
            m["tool_calls"] = calls
        elif m.get("role") == "tool":
            m.setdefault("tool_call_id", pending.pop(0) if pending else f"call_{index}")
        out.append(m)
    return out


class OpenAIBackend:
    name = "openai"

    def __init__(
        self,
        settings: Settings,
        *,
        scripted: ScriptedReplies | None = None,
        connect_timeout: float = 10.0,
        idle_timeout: float | None = None,
    ) -> None:
        self.settings = settings
        self.model_name = settings.model
        self.url = urlsplit(settings.baseUrl.rstrip("/") + "/chat/completions")
        if self.url.scheme not in ("http", "https") or not self.url.hostname:
            raise BackendError(
                f"glm.baseUrl '{without_userinfo(settings.baseUrl)}' is not an http(s) URL"
            )
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout if idle_timeout is not None else idle_timeout_from_env()
        self.scripted = scripted  # accepted for symmetry; a real server picks its own tokens

    def body(self, request: CompletionRequest) -> dict[str, Any]:
        return {
            "model": self.settings.model,
            "messages": to_openai_messages(list(request.messages)),
            "tools": list(request.tools or []),
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "thinking": {
                "type": "enabled" if request.enable_thinking else "disabled",
                "clear_thinking": request.clear_thinking,
            },
            "chat_template_kwargs": {
                "enable_thinking": request.enable_thinking,
                "clear_thinking": request.clear_thinking,
            },
        }

    def _connect(self) -> http.client.HTTPConnection:
        cls = (
            http.client.HTTPSConnection
            if self.url.scheme == "https"
            else http.client.HTTPConnection
        )
        return cls(self.url.hostname, self.url.port, timeout=self.connect_timeout)

    def complete(
        self, request: CompletionRequest, on_text: OnText, cancel: threading.Event
    ) -> Completion:
        raw = os.environ.get(self.settings.apiKeyEnv) or ""
        key = api_key(raw, self.settings.apiKeyEnv)
        try:
            return self._complete(request, on_text, cancel, key)
        except Cancelled:
            raise
        except BackendError as exc:
            # A server may echo the key (a 401 body, a proxy's error page): never pass it on.
            message = mask(str(exc), [raw, key])
            if message != str(exc):
                raise BackendError(message) from None
            raise
        except Exception as exc:  # http.client quotes a header it refuses, key and all
            detail = mask(f"{type(exc).__name__}: {exc}", [raw, key])
            base = without_userinfo(self.settings.baseUrl)
            raise BackendError(f"the request to {base} failed: {detail}") from None

    def _complete(
        self,
        request: CompletionRequest,
        on_text: OnText,
        cancel: threading.Event,
        key: str | None,
    ) -> Completion:
        base = without_userinfo(self.settings.baseUrl)
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        payload = json.dumps(self.body(request), ensure_ascii=False).encode("utf-8")
        conn = self._connect()
        done = threading.Event()

        def close_on_cancel() -> None:
            while not done.is_set():
                if cancel.wait(0.05):
                    if conn.sock is not None:
                        with contextlib.suppress(OSError):
                            conn.sock.shutdown(socket.SHUT_RDWR)
                    return

        threading.Thread(target=close_on_cancel, daemon=True, name="glm-openai-cancel").start()
        start = time.perf_counter()
        try:
            try:
                conn.request("POST", self.url.path, body=payload, headers=headers)
                conn.sock.settimeout(self.idle_timeout)
                response = conn.getresponse()
            except ConnectionRefusedError:
                raise BackendError(
                    f"cannot reach the server at {base}: connection refused; start it or fix glm.baseUrl"
                ) from None
            except TimeoutError:
                raise BackendError(
                    f"the server at {base} did not answer within the timeout "
                    f"({self.idle_timeout:g} s; set {TIMEOUT_ENV} to wait longer)"
                ) from None
            except OSError as exc:
                if cancel.is_set():
                    raise Cancelled() from None
                raise BackendError(f"cannot reach the server at {base}: {exc}") from None
            if response.status != 200:
                detail = response.read(300).decode("utf-8", "replace").strip()
                raise BackendError(
                    f"the server at {base} answered HTTP {response.status}: {detail}"
                )
            return self._read_stream(response, request, on_text, cancel, start)
        finally:
            done.set()
            conn.close()

    def _read_stream(self, response, request, on_text, cancel, start) -> Completion:
        base = without_userinfo(self.settings.baseUrl)
        writer = _RawText(on_text, request.enable_thinking)
        calls: dict[int, dict[str, str]] = {}
        usage: dict[str, Any] = {}
        finish, first_at, finished = "stop", 0.0, False
        # A server that ignores max_tokens must not stream forever: past what max_tokens can
        # produce, stop reading (the caller closes the connection) and end as "length".
        text_limit = request.max_tokens * CHARS_PER_TOKEN
        byte_limit = request.max_tokens * BYTES_PER_TOKEN + MAX_STREAM_LINE
        received = 0
        while True:
            try:
                line = response.readline(MAX_STREAM_LINE + 1)
            except TimeoutError:
                raise BackendError(
                    f"the server at {base} stalled past the timeout mid-stream "
                    f"({self.idle_timeout:g} s; set {TIMEOUT_ENV} to wait longer)"
                ) from None
            except OSError as exc:
                if cancel.is_set():
                    raise Cancelled() from None
                raise BackendError(f"the stream from {base} broke off: {exc}") from None
            if cancel.is_set():
                raise Cancelled()
            if not line:
                break
            received += len(line)
            if len(line) > MAX_STREAM_LINE or received > byte_limit:
                raise BackendError(
                    f"the server at {base} sent over {received // 1_000_000 or 1} MB without "
                    f"finishing a completion of at most {request.max_tokens} tokens"
                )
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                finished = True
                break
            try:
                event = json.loads(data)
            except ValueError:
                raise BackendError(
                    f"the server at {base} sent invalid JSON in its stream: {data[:120]!r}"
                ) from None
            if not isinstance(event, dict):
                raise BackendError(
                    f"the server at {base} sent an unexpected stream event: {data[:120]!r}"
                )
            if event.get("error"):
                raise BackendError(f"the server at {base} reported an error: {event['error']}")
            usage = event.get("usage") or usage
            for choice in event.get("choices") or ():
                delta = choice.get("delta") or {}
                if not first_at and (
                    delta.get("content")
                    or delta.get("reasoning_content")
                    or delta.get("reasoning")
                    or delta.get("tool_calls")
                ):
                    first_at = time.perf_counter()
                writer.reasoning(delta.get("reasoning_content") or delta.get("reasoning") or "")
                writer.content(delta.get("content") or "")
                for tc in delta.get("tool_calls") or ():
                    slot = calls.setdefault(
                        int(tc.get("index", len(calls))), {"name": "", "arguments": ""}
                    )
                    fn = tc.get("function") or {}
                    slot["name"] += fn.get("name") or ""
                    slot["arguments"] += fn.get("arguments") or ""
                if choice.get("finish_reason"):
                    finish = "length" if choice["finish_reason"] == "length" else "stop"
                    finished = True
            if writer.chars + sum(len(c["arguments"]) for c in calls.values()) > text_limit:
                finish, finished = "length", True
                break
        if not finished:
            raise BackendError(f"the stream from {base} ended before the completion finished")
        for index in sorted(calls):
            writer.tool_call(calls[index]["name"], calls[index]["arguments"])
        text = writer.finish()
        return Completion(
            text=text, stats=self._stats(usage, start, first_at), finish_reason=finish
        )

    @staticmethod
    def _stats(usage: dict[str, Any], start: float, first_at: float) -> Stats:
        prompt = int(usage.get("prompt_tokens") or 0)
        cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        generated = int(usage.get("completion_tokens") or 0)
        end = time.perf_counter()
        stats = Stats(
            promptTokens=prompt, reusedTokens=cached, prefilledTokens=max(prompt - cached, 0)
        )
        stats.generatedTokens = generated
        stats.ttftMs = round(((first_at or end) - start) * 1000, 2)
        if generated > 1 and first_at and end > first_at:
            stats.decodeTps = round((generated - 1) / (end - first_at), 2)
        return stats

    def count_tokens(self, text: str) -> int:
        return len(text) // 3 + 1  # no tokenizer here: a conservative estimate for compaction

    def save(self) -> None:
        """The server keeps its own cache."""

    def close(self) -> None:
        """Connections are per request."""


class _RawText:
    """Rebuilds GLM-4.7 raw completion text from separate reasoning/content/tool-call deltas."""

    def __init__(self, on_text: OnText, thinking: bool) -> None:
        self.on_text, self.parts = on_text, []
        self.chars = 0  # generated text so far, for the max_tokens bound
        self.in_reasoning = thinking  # the generation prompt already opened <think>
        self.opened_extra = False

    def _emit(self, text: str) -> None:
        if text:
            self.parts.append(text)
            self.chars += len(text)
            self.on_text(text)

    def reasoning(self, text: str) -> None:
        if text and not self.in_reasoning:
            self._emit(THINK_OPEN)
            self.in_reasoning = self.opened_extra = True
        self._emit(text)

    def _close_reasoning(self) -> None:
        if self.in_reasoning:
            self._emit(THINK_CLOSE)
            self.in_reasoning = False

    def content(self, text: str) -> None:
        if text:
            self._close_reasoning()
            self._emit(text)

    def tool_call(self, name: str, arguments: str) -> None:
        self._close_reasoning()
        try:
            args = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            args = None
        if isinstance(args, dict):
            self._emit(render_tool_call(name, args))
        else:  # let the parser report it to the model as a malformed call
            self._emit(
                f"<tool_call>{name}<arg_key>arguments</arg_key><arg_value>{arguments}</arg_value></tool_call>"
            )

    def finish(self) -> str:
        self._close_reasoning()
        return "".join(self.parts)
