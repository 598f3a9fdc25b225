"""`glm-lsp export`: scripted sessions through the tiny model, exported; every record re-renders to
the exact prompt the backend was given and the exact text it produced."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from glm_lsp.agent.edits import ChangeSet, apply_to_disk
from glm_lsp.agent.prompts import AgentRequest
from glm_lsp.agent.session import Session
from glm_lsp.cli import main
from glm_lsp.config import Settings
from glm_lsp.glm.format import render_prompt
from glm_lsp.glm.parse import tool_call_text
from glm_lsp.glm.tool_schemas import TOOLS
from glm_lsp.runtime.factory import make_backend
from glm_lsp.state_files import prepare_state_dir
from glm_lsp.traces.conversation import assistant_completion
from glm_lsp.traces.dataset import record_text
from glm_lsp.traces.redact import ABS_PATH, SECRET, TOOL_RESULT, Redactor

FIXTURE = Path(__file__).parent / "fixtures" / "rename"
A_DOC = '"""Double x."""'


@dataclass
class Traced:
    prompt: str  # what the backend was given
    text: str  # the raw completion it produced (stop token removed)
    enable_thinking: bool


class Recording:
    """The real backend, with every completion's prompt and raw text kept."""

    def __init__(self, inner) -> None:
        self.inner, self.traced = inner, []
        self.name, self.model_name = inner.name, inner.model_name

    def complete(self, request, on_text, cancel):
        completion = self.inner.complete(request, on_text, cancel)
        self.traced.append(Traced(request.prompt, completion.text, request.enable_thinking))
        return completion

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _call(name: str, **args: str) -> str:
    return tool_call_text(name, args)


# (request, scripted replies, whether the user applies the edit)
SESSION = [
    (
        AgentRequest(kind="refactor", instruction="Rename foo to bar everywhere"),
        [
            "I should read a.py first.</think>Reading a.py." + _call("read_file", path="pkg/a.py"),
            "foo is defined here; b.py imports it.</think>"
            + _call("edit_file", path="pkg/a.py", old_text="def foo(x):", new_text="def bar(x):")
            + _call(
                "edit_file",
                path="pkg/b.py",
                old_text="from pkg.a import foo\n",
                new_text="from pkg.a import bar\n",
            ),
            "Now the call site.</think>"
            + _call("edit_file", path="pkg/b.py", old_text="foo(foo(x))", new_text="bar(bar(x))"),
            "All renamed.</think>Renamed foo to bar in a.py and b.py.",
        ],
        True,
    ),
    (  # explain: thinking off, so the completions continue `</think>`
        AgentRequest(kind="explain", path="pkg/a.py"),
        [
            "Let me read it." + _call("read_file", path="pkg/a.py"),
            "bar doubles its argument: it returns 2 * x.",
        ],
        False,
    ),
    (
        AgentRequest(kind="refactor", instruction="Add a docstring to twice"),
        [
            "twice lives in b.py.</think>" + _call("read_file", path="pkg/b.py"),
            "Insert it under the def.</think>"
            + _call(
                "edit_file",
                path="pkg/b.py",
                old_text="def twice(x):\n",
                new_text='def twice(x):\n    """Apply bar twice."""\n',
            ),
            "Done.</think>Added a docstring to twice.",
        ],
        False,  # the user declines this one
    ),
    (  # thinking on but no reasoning, and a malformed tool call the log cannot hold
        AgentRequest(kind="ask", instruction="Which files are there?", thinking="enabled"),
        [
            "</think><tool_call>no_such_tool</tool_call>",
            "</think>Two files: pkg/a.py and pkg/b.py.",
        ],
        False,
    ),
]
COMPLETIONS = sum(len(replies) for _, replies, _ in SESSION)
MALFORMED = 1


def run_session(
    ws: Path,
    model: Path,
    session: list,
    replies_file: Path,
    **settings: object,
) -> list[Traced]:
    """Run the requests in one workspace (as an editor would, one after another)."""
    replies = [r for _, rs, _ in session for r in rs]
    replies_file.write_text(json.dumps(replies))
    config = Settings(model=str(model), scriptedReplies=str(replies_file), **settings)
    backend = Recording(make_backend(config, config.state_dir(ws)))
    agent = Session(ws, config, backend)
    for request, _, applied in session:

        def apply(changes: ChangeSet, applied: bool = applied) -> tuple[bool, str | None]:
            if applied:
                apply_to_disk(ws, changes)
            return applied, None if applied else "declined"

        agent.run(request, lambda kind, text: None, threading.Event(), apply)
    return backend.traced


def set_times(ws: Path, times: list[str]) -> None:
    """Give the logged requests chosen times, for --since."""
    log = ws / ".glm-lsp" / "thinking.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    for record, time in zip(records, times, strict=True):
        record["time"] = time
    log.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def export(ws: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list, str]:
    code = main(["export", str(ws), *args])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


@pytest.fixture(scope="module")
def traced(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("export")
    ws = root / "ws"
    shutil.copytree(FIXTURE, ws)
    calls = run_session(ws, tiny_model_dir, SESSION, root / "replies.json")
    assert len(calls) == COMPLETIONS
    set_times(ws, [f"2025-03-0{i}T10:00:00+00:00" for i in range(1, len(SESSION) + 1)])
    return ws, calls


def _exact(calls: list[Traced]) -> list[Traced]:
    return [c for c in calls if "no_such_tool" not in c.text]


def _stop(text: str) -> str:
    return "<|observation|>" if text.endswith("</tool_call>") else "<|user|>"


def test_completions_are_the_prompts_and_texts_the_model_saw(traced, capsys) -> None:
    ws, calls = traced
    code, lines, err = export(ws, "--format", "completions", capsys=capsys)
    assert code == 0
    exact = _exact(calls)
    assert len(lines) == len(exact) == COMPLETIONS - MALFORMED
    for line, call in zip(lines, exact, strict=True):
        assert line["prompt"] == call.prompt
        assert line["completion"] == call.text + _stop(call.text)
    assert f"exported {len(exact)} completions record(s) from 4 of 4" in err
    assert "1 malformed tool call" in err
    # One conversation: each prompt + completion runs on into the next prompt, except where the
    # template renders an empty reasoning as `</think>` alone (it was generated after `<think>`).
    for line, nxt in itertools.pairwise(lines):
        text = line["prompt"] + line["completion"]
        if line["prompt"].endswith("<think>") and line["completion"].startswith("</think>"):
            text = text[: -len(line["completion"]) - len("<think>")] + line["completion"]
        assert nxt["prompt"].startswith(text)


def test_chat_records_render_back_to_what_the_model_saw(traced, capsys) -> None:
    ws, calls = traced
    code, lines, _ = export(ws, capsys=capsys)
    assert code == 0
    exact = _exact(calls)
    assert len(lines) == len(exact)
    for line, call in zip(lines, exact, strict=True):
        messages, kwargs = line["messages"], line["chat_template_kwargs"]
        assert line["tools"] == TOOLS and messages[0]["role"] == "system"
        assert kwargs == {"enable_thinking": call.enable_thinking, "clear_thinking": False}
        assert render_prompt(messages[:-1], line["tools"], **kwargs) == call.prompt
        last = messages[-1]
        assert last["role"] == "assistant" and "reasoning_content" in last
        completion = assistant_completion(last, enable_thinking=kwargs["enable_thinking"])
        assert completion == call.text + _stop(call.text)
        assert record_text(line) == (call.prompt, completion)  # what finetune trains on
        if not (call.enable_thinking and call.text.startswith("</think>")):
            # The whole record renders as prompt + completion (the template shows an empty
            # reasoning as `</think>` alone, though it was generated after `<think>`).
            full = render_prompt(messages, line["tools"], add_generation_prompt=False)
            assert full == call.prompt + call.text
    # Reasoning, tool calls and edits are kept as structured fields.
    edit = lines[1]["messages"][-1]
    assert edit["reasoning_content"] == "foo is defined here; b.py imports it."
    assert [c["function"]["name"] for c in edit["tool_calls"]] == ["edit_file", "edit_file"]


def test_only_applied_and_since_filter_requests_but_keep_their_context(traced, capsys) -> None:
    ws, calls = traced
    code, applied, err = export(ws, "--only-applied", "--format", "completions", capsys=capsys)
    assert code == 0 and "from 1 of 4" in err
    assert [line["prompt"] for line in applied] == [c.prompt for c in calls[:4]]

    code, recent, _ = export(ws, "--since", "2025-03-03", "--format", "completions", capsys=capsys)
    assert code == 0
    later = _exact(calls[6:])  # requests 3 and 4, whose prompts hold requests 1 and 2
    assert [line["prompt"] for line in recent] == [c.prompt for c in later]
    assert "Rename foo to bar everywhere" in recent[0]["prompt"]
    code, none, err = export(ws, "--since", "2025-03-05T00:00Z", capsys=capsys)
    assert code == 0 and none == [] and "exported 0 chat record(s)" in err


def test_redact_results_drops_tool_output(traced, capsys) -> None:
    ws, _ = traced
    code, lines, _ = export(ws, "--redact-results", capsys=capsys)
    assert code == 0
    tools = [m for line in lines for m in line["messages"] if m["role"] == "tool"]
    assert tools and all(m["content"] == TOOL_RESULT for m in tools)
    code, rendered, _ = export(ws, "--redact-results", "--format", "completions", capsys=capsys)
    assert all(A_DOC not in line["prompt"].split("<|observation|>", 1)[-1] for line in rendered)
    assert f"<tool_response>{TOOL_RESULT}</tool_response>" in rendered[-1]["prompt"]


def test_secrets_and_paths_never_leave(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(FIXTURE, ws)
    key, token = "zk-live-0123456789abcdef", "sk-proj-" + "Ab3" * 12
    (ws / "settings.py").write_text(f'OPENAI_API_KEY = "{token}"\nDB_PASSWORD = "hunter2hunter2"\n')
    session = [
        (
            AgentRequest(
                kind="refactor",
                instruction=f"Move {ws}/settings.py next to /home/alice/notes.txt; key {key}",
            ),
            [
                f"The key {key} is in {ws / 'settings.py'}.</think>"
                + _call("read_file", path="settings.py"),
                "Leave it.</think>Nothing to change in /Users/alice/proj/app.py.",
            ],
            False,
        )
    ]
    calls = run_session(ws, tiny_model_dir, session, tmp_path / "r.json", preserveThinking=False)
    os.environ["GLM_LSP_TEST_EXPORT_KEY"] = key
    try:
        chat = main(["export", str(ws), "--api-key-env", "GLM_LSP_TEST_EXPORT_KEY"])
        chat_out, err = capsys.readouterr()
        args = ["--format", "completions", "--no-preserve-thinking"]
        done = main(["export", str(ws), "--api-key-env", "GLM_LSP_TEST_EXPORT_KEY", *args])
        completions_out, _ = capsys.readouterr()
        redactor = Redactor(ws, api_key_env="GLM_LSP_TEST_EXPORT_KEY")
    finally:
        del os.environ["GLM_LSP_TEST_EXPORT_KEY"]
    assert chat == done == 0 and "redacted" in err
    for out in (chat_out, completions_out):
        for secret in (key, token, "hunter2hunter2", str(ws), str(tmp_path), "/home/alice"):
            assert secret not in out
        assert "/Users/alice" not in out and SECRET in out and ABS_PATH in out
        assert "Move ./settings.py next to" in out
    # Redacted records still render consistently: the prompt the model saw, redacted.
    lines = [json.loads(line) for line in completions_out.splitlines()]
    for line, call in zip(lines, calls, strict=True):
        assert line["prompt"] == redactor.text(call.prompt)
        assert line["completion"] == redactor.text(call.text) + _stop(call.text)


def test_errors_exit_2_with_one_sentence(tmp_path: Path, traced, capsys) -> None:
    ws, _ = traced
    assert main(["export", str(tmp_path / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["export", str(tmp_path)]) == 2
    assert "no preserved-thinking log" in capsys.readouterr().err
    assert main(["export", str(ws), "--since", "last tuesday"]) == 2
    assert "is not an ISO date" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["export", str(ws), "--format", "parquet"])
    assert exc.value.code == 2 and "invalid choice: 'parquet'" in capsys.readouterr().err


def test_cli_writes_out_file_and_counts_on_stderr(traced, tmp_path: Path) -> None:
    ws, calls = traced
    out = tmp_path / "traces.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "glm_lsp.cli", "export", str(ws), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout == ""
    assert len(out.read_text().splitlines()) == len(_exact(calls))
    assert proc.stderr.startswith(f"exported {len(_exact(calls))} chat record(s)")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key sk-ant-api03-abcdefghijklmnop123", f"key {SECRET}"),
        ("token ghp_" + "a1" * 18, f"token {SECRET}"),
        ("Authorization: Bearer abc123def456ghi789", f"Authorization: Bearer {SECRET}"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", SECRET),
        ('password: "s3cretPassw0rd!"', f'password: "{SECRET}!"'),
        ("C:\\Users\\bob\\proj\\a.py failed", f"{ABS_PATH} failed"),
        ("see file:///home/bob/x.py", f"see file://{ABS_PATH}"),
        # Code and system paths stay as they are.
        ("max_tokens = self.opt.max_tokens", None),
        ("next_token = tokenizer_for_the_model()", None),
        ("#!/usr/bin/env python3\nopen('/dev/null')", None),
        ("https://example.com/home/page and src/tmp/x.py", None),
    ],
)
def test_redactor_patterns(text: str, expected: str | None, tmp_path: Path) -> None:
    redactor = Redactor(tmp_path / "ws", environ={"MY_TOKEN": "default", "X_KEY": "ab12cd34ef56"})
    assert redactor.text(text) == (text if expected is None else expected)
    assert redactor.text("default ab12cd34ef56") == f"default {SECRET}"


def _request(turn: int, text: str, completions: int, **extra: object) -> dict:
    """A logged request with `completions` assistant messages (tool calls between them)."""
    messages: list[dict] = [{"role": "user", "content": f"{text}?"}]
    for i in range(completions):
        last = i == completions - 1
        message = {"role": "assistant", "content": f"{text} {i}", "reasoning_content": f"r{i}"}
        if not last:
            message["tool_calls"] = [
                {"type": "function", "function": {"name": "list_files", "arguments": {}}}
            ]
        messages.append(message)
        if not last:
            messages.append({"role": "tool", "content": "pkg/a.py"})
    return {"v": 1, "turn": turn, "time": "2025-03-01T00:00:00+00:00", "command": "glm.ask",
            "thinking": "enabled", "messages": messages, "stats": {}, **extra}  # fmt: skip


def test_compaction_truncation_and_archives(tmp_path: Path, capsys) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    state = prepare_state_dir(ws / ".glm-lsp")  # made by glm-lsp: a foreign one is not read
    records = [
        _request(1, "one", 1),
        _request(2, "two", 2, compacted={"droppedTurns": [1]}),
        _request(3, "three", 2, stopped="cut short", stopLimit="maxTokens"),
    ]
    (state / "thinking.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (state / "thinking-20250101T000000000000Z.jsonl").write_text(
        json.dumps(_request(1, "archived", 1)) + "\n"
    )
    code, lines, err = export(ws, capsys=capsys)
    assert code == 0
    users = [[m["content"] for m in line["messages"] if m["role"] == "user"] for line in lines]
    # Turn 2's last completion saw turn 2 without turn 1; its first is ambiguous, so skipped.
    assert users == [["one?"], ["two?"], ["one?", "two?", "three?"]]
    assert "1 compacted mid-request, 1 cut off by maxTokens" in err
    code, lines, _ = export(ws, "--include-compacted", "--include-archived", capsys=capsys)
    users = [[m["content"] for m in line["messages"] if m["role"] == "user"] for line in lines]
    assert users == [["archived?"], ["one?"], ["two?"], ["two?"], ["one?", "two?", "three?"]]

    # Sessions that ran with preserveThinking off saw earlier reasoning cleared.
    code, lines, _ = export(ws, "--no-preserve-thinking", "--format", "completions", capsys=capsys)
    assert "<think>r0</think>one 0" not in lines[-1]["prompt"]
    assert "<|assistant|></think>one 0" in lines[-1]["prompt"]
    assert lines[-1]["prompt"].endswith("<|user|>three?<|assistant|><think>")


def test_a_log_from_before_stop_limit_still_skips_the_cut_off_completion(
    tmp_path: Path, capsys
) -> None:
    """Older logs name the limit only in the `stopped` sentence; maxSteps cuts off no completion."""
    ws = tmp_path / "ws"
    ws.mkdir()
    prepare_state_dir(ws / ".glm-lsp")
    records = [
        _request(1, "one", 1, stopped="the model reached maxTokens (4096) in one completion"),
        _request(2, "two", 1, stopped="the maxTokens of the task were met", stopLimit="maxSteps"),
    ]
    (ws / ".glm-lsp" / "thinking.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    code, lines, err = export(ws, capsys=capsys)
    assert code == 0
    assert [line["messages"][-1]["content"] for line in lines] == ["two 0"]
    assert "1 cut off by maxTokens" in err
