"""A model cannot make the daemon work without end: a catastrophic regex leaves a real server
answering `glm.status`, and unknown or malformed tool calls use up maxSteps like real ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glm_lsp.glm.parse import tool_call_text
from tests.lsp_wire import start_server

# Python's backtracking re needs about 2**N steps to see that `(a+)+$` fails on N a's then "b".
EVIL_LINE = "a" * 50_000 + "b"
MAX_STEPS = 3


def workspace(tmp: Path) -> Path:
    root = tmp / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text("def foo(x):\n    return 2 * x\n")
    (root / "data.txt").write_text(f"{EVIL_LINE}\naaa\n")
    return root


def test_catastrophic_regex_search_leaves_the_server_answering(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    root = workspace(tmp_path)
    replies = [
        "Where does the pattern occur?</think>"
        + tool_call_text("search", {"pattern": "(a+)+$", "regex": True}),
        "Found it.</think>Only data.txt line 2 ends in a run of a's.",
    ]
    client = start_server(tmp_path, tiny_model_dir, root, replies)
    try:
        uri = (root / "pkg" / "a.py").as_uri()
        request = client.request_async(
            "workspace/executeCommand",
            {"command": "glm.explain", "arguments": [{"uri": uri, "thinking": "enabled"}]},
        )
        client.wait_for(lambda: "search(" in client.streamed("tool_call"), timeout=120)
        time.sleep(1)  # let the search get going: a backtracking engine would now hold the GIL
        status = client.command("glm.status", {}, timeout=30)
        assert status["backend"] == "mlx"
        answer = client.wait(request, timeout=60)
        assert answer["result"]["text"] == "Only data.txt line 2 ends in a run of a's."
        assert client.streamed("tool_result") == "data.txt:2: aaa"
    finally:
        client.kill()


def run_cli(root: Path, model: Path, replies: list[str]) -> subprocess.CompletedProcess[str]:
    script = root.parent / "replies.json"
    script.write_text(json.dumps(replies))
    argv = [sys.executable, "-m", "glm_lsp.cli", "run", str(root), "loop", "--model", str(model)]
    argv += ["--scripted-replies", str(script), "--max-steps", str(MAX_STEPS)]
    argv += ["--no-persist-kv-cache"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (tool_call_text("nope", {"path": "a.py"}), "unknown tool 'nope'"),
        (tool_call_text("read_file", {"where": "a.py"}), "unknown argument 'where'"),
        ("<tool_call><arg_key>path</arg_key></tool_call>", "no tool name"),
    ],
    ids=["unknown tool", "unknown argument", "no tool name"],
)
def test_bad_tool_calls_stop_at_max_steps(
    tmp_path: Path, tiny_model_dir: Path, call: str, error: str
) -> None:
    root = workspace(tmp_path)
    proc = run_cli(root, tiny_model_dir, [f"Try again.</think>{call}" for _ in range(10)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"stopped after maxSteps ({MAX_STEPS}) tool calls" in proc.stderr + proc.stdout
    (record,) = [json.loads(x) for x in (root / ".glm-lsp" / "thinking.jsonl").open()]
    roles = [m["role"] for m in record["messages"]]
    assert roles.count("assistant") == MAX_STEPS + 1  # the calls it may make, then the stop
    results = [m["content"] for m in record["messages"] if m["role"] == "tool"]
    assert len(results) == MAX_STEPS + 1
    assert all(error in r for r in results[:MAX_STEPS]), results
    assert results[-1] == "Not run: the request reached its tool-call limit (maxSteps)."
