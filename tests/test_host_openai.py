"""The host's OpenAI-compatible endpoint driven by the `openai` Python SDK, against one real host
process (`glm-lsp host start --foreground --openai-port 0 --scripted-replies`) on the tiny model:
answers streamed and not, tools as tool_calls, the reasoning round trip and cached tokens, a restart
that keeps the prefix, a hang-up that frees the model, 401 and malformed bodies.

The tests share one host (a start costs seconds); its scripted replies are the selected tests'
REPLIES in file order, so any subset of the tests runs alone as well.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai import AuthenticationError, BadRequestError, NotFoundError, OpenAI

from glm_lsp.glm import render_prompt
from glm_lsp.glm.parse import tool_call_text
from glm_lsp.host.openai_prefix import PrefixPool
from glm_lsp.host.openai_request import WireError, parse_request
from glm_lsp.host.openai_response import Shaper

READ_FILE = {
    "type": "function",
    "function": {
        "name": "read_file",
        "description": "Read a file of the workspace.",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "line": {"type": "integer"}},
            "required": ["path"],
        },
    },
}
_rng = random.Random(7)  # words the prompt-lookup drafts cannot guess: decoding takes its time
LONG = "Thinking.</think>" + " ".join(
    f"{_rng.choice(['river', 'stone', 'lamp', 'north', 'paper'])}{_rng.randint(0, 999)}"
    for _ in range(100)
)
REPLIES: dict[str, list[str]] = {  # test -> the replies it consumes, in order
    "test_answer_and_the_reasoning_round_trip_reuse_the_cache": [
        "Let me think.</think>Hello there.",
        "Still easy.</think>Bye.",
    ],
    "test_tools_stream_as_tool_calls_and_their_result_continues_the_cache": [
        "I will read it.</think>" + tool_call_text("read_file", {"path": "a.py", "line": 3}),
        "It is short.</think>a.py is fine.",
    ],
    "test_two_conversations_keep_their_own_caches": [
        "First.</think>One.",
        "Two, without thinking.",
        "Again.</think>Three.",
    ],
    "test_a_client_that_hangs_up_frees_the_model": [LONG],
    "test_a_restart_keeps_the_prefix": ["Before.</think>Saved."],
}
AFTER_RESTART = ["After.</think>Restored."]


@dataclass
class Host:
    model: Path
    folder: Path  # where the script and logs go
    env: dict[str, str]
    proc: subprocess.Popen[str] | None = None
    url: str = ""
    token: str = ""

    def start(self, replies: list[str]) -> None:
        script = self.folder / f"replies-{time.monotonic_ns()}.json"
        script.write_text(json.dumps(replies))
        with open(self.folder / "host.log", "a") as log:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "glm_lsp.cli", "host", "start", "--foreground"),
                    *("--model", str(self.model), "--openai-port", "0"),
                    *("--scripted-replies", str(script)),
                ],
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # printed once registered and listening
        assert "OpenAI endpoint http://127.0.0.1:" in line, (self.folder / "host.log").read_text()
        runtime = Path(self.env["XDG_RUNTIME_DIR"]) / "glm-lsp"
        self.url = json.loads((runtime / "host.json").read_text())["openai"]
        self.token = (runtime / "host.token").read_text().strip()

    def stop(self) -> None:
        """`glm-lsp host stop`, reaping the host meanwhile (a zombie still answers kill(pid, 0))."""
        assert self.proc is not None
        stopper = subprocess.Popen(
            [sys.executable, "-m", "glm_lsp.cli", "host", "stop"],
            env=self.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.wait(timeout=60) == 0
        assert stopper.wait(timeout=60) == 0
        assert stopper.stdout is not None and "stopped" in stopper.stdout.read()

    def client(self, token: str | None = None) -> OpenAI:
        return OpenAI(base_url=self.url, api_key=token or self.token, max_retries=0, timeout=120)

    def status(self) -> dict[str, Any]:
        from glm_lsp.host.client import host_request

        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("XDG_RUNTIME_DIR", self.env["XDG_RUNTIME_DIR"])
            return host_request("status")


@pytest.fixture(scope="module")
def host(
    request: pytest.FixtureRequest, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Host]:
    """One host for the module, in its own runtime and state dirs (as host_env does for one
    test), killed at the end whatever happened."""
    folder = tmp_path_factory.mktemp("openai-host")
    env = {
        **os.environ,
        "XDG_RUNTIME_DIR": str(folder / "run"),
        "XDG_STATE_HOME": str(folder / "state"),
    }
    selected = [i.name for i in request.session.items if i.module is request.module]
    h = Host(tiny_model_dir, folder, env)
    h.start([reply for name in selected for reply in REPLIES.get(name, [])])
    yield h
    if h.proc is not None and h.proc.poll() is None:
        h.proc.kill()
        h.proc.wait(timeout=30)


def test_answer_and_the_reasoning_round_trip_reuse_the_cache(host: Host) -> None:
    client = host.client()
    assert str(host.model) in [m.id for m in client.models.list().data]
    question = [{"role": "user", "content": "Say hello."}]
    first = client.chat.completions.create(model=str(host.model), messages=question)
    message = first.choices[0].message
    assert (message.content, first.choices[0].finish_reason) == ("Hello there.", "stop")
    assert message.reasoning_content == "Let me think."  # type: ignore[attr-defined]
    assert first.usage is not None and first.usage.prompt_tokens > 0
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens

    # The reasoning sent back renders the very text generated, so the whole first exchange is
    # reused: the earlier prompt and every generated token (a dropped or altered reasoning
    # would render another text and reuse at most the earlier prompt).
    follow_up = [
        *question,
        {"role": "assistant", "content": "Hello there.", "reasoning_content": "Let me think."},
        {"role": "user", "content": "Now say bye."},
    ]
    second = client.chat.completions.create(messages=follow_up, model=str(host.model))  # type: ignore[arg-type]
    assert second.choices[0].message.content == "Bye."
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    reused = first.usage.prompt_tokens + first.usage.completion_tokens
    assert second.usage.prompt_tokens_details.cached_tokens == reused
    assert second.usage.prompt_tokens > reused


def test_tools_stream_as_tool_calls_and_their_result_continues_the_cache(host: Host) -> None:
    client = host.client()
    question = [{"role": "user", "content": "Is a.py fine?"}]
    stream = client.chat.completions.create(
        model=str(host.model),
        messages=question,  # type: ignore[arg-type]
        tools=[READ_FILE],  # type: ignore[list-item]
        stream=True,
        stream_options={"include_usage": True},
    )
    reasoning, calls, finish, usage = [], [], [], []
    for chunk in stream:
        if chunk.usage is not None:
            assert chunk.choices == []
            usage.append(chunk.usage)
        for choice in chunk.choices:
            reasoning.append(getattr(choice.delta, "reasoning_content", None) or "")
            calls += choice.delta.tool_calls or []
            finish += [choice.finish_reason] if choice.finish_reason else []
    assert "".join(reasoning) == "I will read it."
    assert len(reasoning) > 2  # streamed piece by piece, not in one delta at the end
    assert finish == ["tool_calls"] and len(calls) == 1 and len(usage) == 1
    call = calls[0]
    assert call.function is not None and call.function.name == "read_file" and call.id
    assert json.loads(call.function.arguments or "") == {"path": "a.py", "line": 3}

    # The harness runs the tool and sends the call and its result back.
    follow_up = [
        *question,
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "I will read it.",
            "tool_calls": [
                {"id": call.id, "type": "function", "function": call.function.model_dump()}
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "x = 1\n"},
    ]
    answer = client.chat.completions.create(
        model=str(host.model),
        messages=follow_up,  # type: ignore[arg-type]
        tools=[READ_FILE],  # type: ignore[list-item]
    )
    assert answer.choices[0].message.content == "a.py is fine."
    assert answer.choices[0].message.tool_calls is None
    assert answer.usage is not None and answer.usage.prompt_tokens_details is not None
    reused = usage[0].prompt_tokens + usage[0].completion_tokens
    assert answer.usage.prompt_tokens_details.cached_tokens == reused


def test_two_conversations_keep_their_own_caches(host: Host) -> None:
    """Two agents with one system prompt: the second takes its own slot, starting from a copy of
    the KV of the system prompt they share, and the first continues from its whole cache."""
    client = host.client()
    system = {"role": "system", "content": "You are a careful coding agent. " * 8}
    a = [system, {"role": "user", "content": "Task one."}]
    first = client.chat.completions.create(model=str(host.model), messages=a)  # type: ignore[arg-type]
    b = [system, {"role": "user", "content": "Task two."}]
    other = client.chat.completions.create(
        model=str(host.model),
        messages=b,  # type: ignore[arg-type]
        extra_body={"chat_template_kwargs": {"enable_thinking": False}},
    )
    assert other.choices[0].message.content == "Two, without thinking."
    assert first.usage is not None and other.usage is not None
    assert other.usage.prompt_tokens_details is not None
    shared = other.usage.prompt_tokens_details.cached_tokens  # copied from the first's slot
    assert 0 < shared < other.usage.prompt_tokens
    assert getattr(other.choices[0].message, "reasoning_content", None) is None
    a += [
        {"role": "assistant", "content": "One.", "reasoning_content": "First."},
        {"role": "user", "content": "Go on."},
    ]
    again = client.chat.completions.create(model=str(host.model), messages=a)  # type: ignore[arg-type]
    assert again.choices[0].message.content == "Three."
    assert again.usage is not None
    assert again.usage.prompt_tokens_details is not None
    assert again.usage.prompt_tokens_details.cached_tokens == (
        first.usage.prompt_tokens + first.usage.completion_tokens
    )


def test_a_prompt_goes_to_the_slot_it_extends_else_the_least_recently_used(
    tmp_path: Path,
) -> None:
    pool = PrefixPool(None, slots=3, root=tmp_path)  # type: ignore[arg-type]
    system = "[gMASK]<sop><|system|>Be careful."
    one = system + "<|user|>Task one.<|assistant|><think>Hm.</think>Done.<|user|>"
    two = system + "<|user|>Task two.<|assistant|><think>So.</think>Fine.<|user|>"
    histories = [one, two, ""]
    assert pool.pick(two + "Next.<|assistant|><think>", histories) == 1  # it extends slot 1
    assert pool.pick(system + "<|user|>Task two.<|assistant|><think>", histories) == 1  # a retry
    assert pool.pick(system + "<|user|>Task two.<|assistant|></think>Fine.", histories) == 1
    assert pool.pick(system + "<|user|>Task three.<|assistant|>", histories) == 2  # the empty one
    pool.used = {0: 2, 1: 1, 2: 3}
    assert pool.pick(system + "<|user|>Task three.<|assistant|>", [one, two, "x"]) == 1  # LRU


def test_a_copied_prefix_generates_what_a_recomputed_one_does(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The KV a new conversation copies from another slot is the KV the model computes for that
    text: greedy decoding from the copy and from scratch give the same tokens."""
    import threading

    from glm_lsp.host.engine import Engine
    from glm_lsp.runtime.base import CompletionRequest
    from glm_lsp.runtime.mlx import MLXModel

    model, engine = MLXModel(str(tiny_model_dir)), Engine()
    pool = PrefixPool(engine, root=tmp_path)
    system = {"role": "system", "content": "You review Python code and answer briefly. " * 6}

    def run(conv: Any, prompt: str) -> Any:
        request = CompletionRequest(prompt=prompt, max_tokens=12, temperature=0.0)
        return conv.complete(request, lambda _piece: None, threading.Event())

    try:
        first = render_prompt([system, {"role": "user", "content": "Is a.py fine?"}])
        run(pool.choose(model, first), first)
        second = render_prompt([system, {"role": "user", "content": "And b.py?"}])
        copied = run(pool.choose(model, second), second)
        fresh = run(model.conversation(), second)
    finally:
        engine.executor.shutdown()
    assert 0 < copied.stats.reusedTokens < copied.stats.promptTokens
    assert fresh.stats.reusedTokens == 0
    assert copied.text == fresh.text and copied.stats.generatedTokens == 12
    assert len(engine.conversations) == 2  # the first kept its slot


def test_a_call_the_tools_reject_still_reaches_the_harness_and_a_broken_one_stays_text() -> None:
    shaper = Shaper([READ_FILE])
    text = (
        "Hm.</think>"
        + tool_call_text("write_file", {"path": "b.py", "size": 3})  # not one of the tools
        + "<tool_call><arg_key>x</arg_key></tool_call>"  # no name: not a call at all
    )
    for piece in (text[:7], text[7:30], text[30:]):  # split anywhere, inside tags too
        shaper.feed(piece)
    shaper.finish()
    message = shaper.message()
    assert message["reasoning_content"] == "Hm."
    assert message["content"] == "<tool_call><arg_key>x</arg_key></tool_call>"
    [call] = message["tool_calls"]
    assert call["function"]["name"] == "write_file"
    assert json.loads(call["function"]["arguments"]) == {"path": "b.py", "size": 3}
    assert shaper.finish_reason("stop") == "tool_calls"


def test_a_client_that_hangs_up_frees_the_model(host: Host) -> None:
    client = host.client()
    before = len(host.status()["recent"])
    messages = [{"role": "user", "content": "Write a lot."}]
    stream = client.chat.completions.create(
        model=str(host.model),
        messages=messages,  # type: ignore[arg-type]
        stream=True,
    )
    for chunk in stream:
        if chunk.choices and getattr(chunk.choices[0].delta, "reasoning_content", None):
            break  # the model is generating: hang up
    stream.close()

    # The next request gets the model at once, and the reply the first never read.
    started = time.monotonic()
    pieces, first_at = [], None
    for chunk in client.chat.completions.create(
        model=str(host.model),
        messages=messages,  # type: ignore[arg-type]
        stream=True,
    ):
        for choice in chunk.choices:
            text = (getattr(choice.delta, "reasoning_content", None) or "") + (
                choice.delta.content or ""
            )
            if text and first_at is None:
                first_at = time.monotonic()
            pieces.append(text)
    ended = time.monotonic()
    assert "".join(pieces) == LONG.replace("</think>", "")
    assert first_at is not None
    # A generation left running would have held the model for about as long as this one took.
    assert first_at - started < (ended - first_at) / 2
    recent = host.status()["recent"][before:]
    assert [r["client"] for r in recent] == ["openai"]  # only the second: the first stopped


def test_wrong_or_missing_token_gets_401_and_nothing_else(host: Host) -> None:
    with pytest.raises(AuthenticationError) as caught:
        host.client("not-the-token").models.list()
    assert caught.value.status_code == 401
    for headers in ({}, {"Authorization": f"Bearer {host.token}x"}, {"Authorization": host.token}):
        for method, path in (("GET", "/models"), ("POST", "/chat/completions"), ("GET", "/x")):
            status, text = _http(host, method, path, b"{}", headers)
            assert status == 401
            body = json.loads(text)
            assert list(body) == ["error"] and body["error"]["code"] == "invalid_api_key"
            assert str(host.model) not in text and "glm-lsp host token" in text


def _http(
    host: Host, method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, str]:
    """A raw request: what the SDK would refuse to send, or send with the token."""
    url = urlsplit(host.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        conn.request(method, url.path + path, body=body, headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.read().decode()
    finally:
        conn.close()


def _bad(host: Host, body: bytes | dict[str, Any]) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {host.token}", "Content-Type": "application/json"}
    status, text = _http(host, "POST", "/chat/completions", raw, headers)
    assert status == 400, text
    error = json.loads(text)["error"]
    assert error["type"] == "invalid_request_error" and "Traceback" not in text
    return error


def test_malformed_bodies_get_400_naming_the_field(host: Host) -> None:
    user = {"role": "user", "content": "hi"}
    assert _bad(host, b"{not json")["code"] == "invalid_json"
    assert _bad(host, b"[1, 2]")["code"] == "invalid_json"
    assert _bad(host, {"model": str(host.model)})["param"] == "messages"
    assert _bad(host, {"messages": []})["param"] == "messages"
    assert _bad(host, {"messages": [user, "hi"]})["param"] == "messages[1]"
    assert _bad(host, {"messages": [{"role": "user"}]})["param"] == "messages[0].content"
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
    assert _bad(host, {"messages": [image]})["param"] == "messages[0].content[0]"
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
    broken = {"role": "assistant", "content": None, "tool_calls": [call]}
    param = _bad(host, {"messages": [user, broken]})["param"]
    assert param == "messages[1].tool_calls[0].function.arguments"
    assert _bad(host, {"messages": [user], "stream": "yes"})["param"] == "stream"
    assert _bad(host, {"messages": [user], "max_tokens": 0})["param"] == "max_tokens"
    assert _bad(host, {"messages": [user], "temperature": 9})["param"] == "temperature"
    assert _bad(host, {"messages": [user], "tools": [{"type": "function"}]})["param"] == (
        "tools[0].function.name"
    )
    kwargs = {"chat_template_kwargs": {"enable_thinking": "no"}}
    assert _bad(host, {"messages": [user], **kwargs})["param"] == (
        "chat_template_kwargs.enable_thinking"
    )

    client = host.client()
    with pytest.raises(BadRequestError) as caught:
        client.chat.completions.create(
            model=str(host.model),
            messages=[{"role": "robot", "content": "hi"}],  # type: ignore[list-item]
        )
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == "messages[0].role"  # type: ignore[index]
    assert "robot" in caught.value.message
    with pytest.raises(NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=[user])  # type: ignore[list-item]
    assert missing.value.body["param"] == "model"  # type: ignore[index]
    assert str(host.model) in missing.value.message  # it says which model to use


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
_text = st.text(max_size=12)
_parts = st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": _text}), max_size=2)
_call = st.fixed_dictionaries(
    {
        "function": st.fixed_dictionaries(
            {
                "name": st.text(min_size=1, max_size=6) | _json,
                "arguments": st.just('{"a": 1}') | st.just("") | _json,
            }
        )
    }
)
_message = st.fixed_dictionaries(  # mostly valid, so that rendering is exercised too
    {
        "role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "robot"]),
        "content": st.one_of(_text, _text, _parts, st.none(), _json),
    },
    optional={"reasoning_content": _text | _json, "tool_calls": st.lists(_call, max_size=2)},
)
_tool = st.fixed_dictionaries(
    {
        "type": st.just("function"),
        "function": st.fixed_dictionaries(
            {"name": st.text(min_size=1, max_size=6), "parameters": _json}
        ),
    }
)
_body = st.fixed_dictionaries(
    {"messages": st.one_of(st.lists(_message, min_size=1, max_size=4), _json)},
    optional={
        "tools": st.lists(_tool | _json, max_size=2),
        "stream": st.booleans() | _json,
        "max_tokens": st.integers(min_value=1) | _json,
        "temperature": st.floats(0, 2) | _json,
        "chat_template_kwargs": st.dictionaries(
            st.sampled_from(["enable_thinking", "clear_thinking"]), st.booleans() | _json
        ),
    },
)


@settings(max_examples=300, deadline=None)
@given(_body)
def test_any_body_is_refused_naming_a_field_or_renders(body: dict[str, Any]) -> None:
    try:
        chat = parse_request(json.dumps(body).encode(), "m")
    except WireError as exc:
        assert str(exc) and exc.status == 400
        return
    render_prompt(chat.messages, chat.tools, enable_thinking=chat.enable_thinking)


def test_a_restart_keeps_the_prefix(host: Host) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Remember this."}]
    before = host.client().chat.completions.create(model=str(host.model), messages=messages)  # type: ignore[arg-type]
    assert before.usage is not None

    host.stop()  # the host saves every KV cache as it stops
    host.start(AFTER_RESTART)
    messages += [
        {"role": "assistant", "content": "Saved.", "reasoning_content": "Before."},
        {"role": "user", "content": "What did I say?"},
    ]
    after = host.client().chat.completions.create(model=str(host.model), messages=messages)  # type: ignore[arg-type]
    assert after.choices[0].message.content == "Restored."
    assert after.usage is not None and after.usage.prompt_tokens_details is not None
    # The first request of the new host prefills only the new message.
    assert after.usage.prompt_tokens_details.cached_tokens == (
        before.usage.prompt_tokens + before.usage.completion_tokens
    )
    assert host.status()["models"][0]["loads"] == 1
