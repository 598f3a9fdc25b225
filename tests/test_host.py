"""The per-user host (issue 26) with real processes: LSP (pytest-lsp), ACP and `glm-lsp run`
front-ends attach to one host, which loads the tiny model once and keeps every conversation's KV.

Every test has its own $XDG_RUNTIME_DIR (the host_env fixture), so none attaches to a user's host
or another test's, and whatever host it started is killed at its end.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from acp import text_block
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException

from glm_lsp.host import registry
from glm_lsp.host.client import host_request
from glm_lsp.runtime.pids import alive
from tests.acp_client import RecordingClient, acp_agent, acp_command, write_replies
from tests.test_server import command, server, until

GLM = [sys.executable, "-m", "glm_lsp.cli"]
TIMEOUT = 120
ANSWER = "It sets A to 1."  # ask: thinking is off by default
THOUGHT = "It holds one constant.</think>It sets A to 1."  # ACP: the prompt opens <think>


def workspace(tmp: Path, name: str) -> Path:
    root = tmp / name
    root.mkdir()
    (root / "a.py").write_text("A = 1\n")
    return root


def start_run(
    tmp: Path, model: Path, root: Path, replies: list[str], *flags: str
) -> subprocess.Popen[str]:
    script = tmp / f"run-{root.name}-{len(list(tmp.glob('run-*.json')))}.json"
    script.write_text(json.dumps(replies))
    return subprocess.Popen(
        [*GLM, "run", str(root), "What is A?", "--kind", "ask", "--model", str(model),
         "--scripted-replies", str(script), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out, err


def status() -> dict[str, Any]:
    return host_request("status")


def loads() -> list[int]:
    return [m["loads"] for m in status()["models"]]


def progress_messages(client: Any) -> list[tuple[str, int | None]]:
    return [
        (r.message or "", getattr(r, "percentage", None))
        for reports in client.progress_reports.values()
        for r in reports
        if isinstance(r, lsp.WorkDoneProgressReport)
    ]


async def test_lsp_acp_and_two_runs_share_one_host_that_loads_the_model_once(
    host_env: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    # The ACP agent is first: it starts the host, and its panel shows the model loading.
    acp_replies = write_replies(tmp_path / "acp.json", [THOUGHT])
    acp_client = RecordingClient()
    async with acp_agent(acp_client, acp_command(tiny_model_dir, acp_replies)) as (conn, _, _p):
        session = await conn.new_session(cwd=str(workspace(tmp_path, "acp")), mcp_servers=[])
        reply = await conn.prompt(session_id=session.session_id, prompt=[text_block("What is A?")])
        assert reply.stop_reason == "end_turn"
        assert acp_client.messages() == "It sets A to 1."
        (loading,) = [u for u in acp_client.of_kind("tool_call") if u.title.startswith("Loading")]
        closing = [
            u
            for u in acp_client.of_kind("tool_call_update")
            if u.tool_call_id == loading.tool_call_id
        ]
        assert closing[-1].status == "completed"  # when generation started
        assert any((u.title or "").endswith("(100%)") for u in closing)
        # Then two `glm-lsp run` at once and a language server: they attach, none loads.
        runs = [
            start_run(tmp_path, tiny_model_dir, workspace(tmp_path, f"run{i}"), [ANSWER])
            for i in (1, 2)
        ]
        lsp_root = workspace(tmp_path, "lsp")
        async with server(tmp_path, tiny_model_dir, [ANSWER], root=lsp_root) as (client, _r, _w):
            result = await command(client, "glm.ask", {"question": "What is A?"})
            assert result["text"] == "It sets A to 1."
            during = status()
            assert during["clients"] >= 2  # this ACP agent and this LSP server, attached now
    for proc in runs:
        code, out, err = finish(proc)
        assert code == 0, err
        assert "It sets A to 1." in out
    after = status()
    assert [m["loads"] for m in after["models"]] == [1], after["models"]
    assert sorted(r["client"] for r in after["recent"]) == ["acp", "lsp", "run", "run"]
    assert after["conversations"] == 4  # one per workspace (and the ACP session)
    hosts = registry.read()
    assert hosts is not None and alive(hosts.pid)


async def test_a_restarted_language_server_finds_the_model_loaded_and_its_kv_warm(
    host_env: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    root = workspace(tmp_path, "ws")
    async with server(tmp_path, tiny_model_dir, [ANSWER], root=root) as (client, _rec, _root):
        await command(client, "glm.ask", {"question": "What is A?"})
        # The first request started the host, which loaded the model: the editor saw it load.
        loading = [(m, p) for m, p in progress_messages(client) if m.startswith("loading")]
        assert loading and loading[-1][1] == 100, progress_messages(client)
    first = status()["recent"][-1]
    assert first["reusedTokens"] == 0
    started = time.perf_counter()
    async with server(tmp_path, tiny_model_dir, [ANSWER], root=root) as (client, _rec, _root):
        ready_s = time.perf_counter() - started
        await command(client, "glm.ask", {"question": "And B?"})
        assert not [m for m, _ in progress_messages(client) if m.startswith("loading")]
    again = status()
    assert [m["loads"] for m in again["models"]] == [1]
    second = again["recent"][-1]
    # The second server's prompt continues the first request's: all of that is reused.
    assert second["reusedTokens"] >= first["promptTokens"] + first["generatedTokens"] - 1
    assert ready_s < 30  # a Python start-up, not a model load (the benchmark measures it)


async def test_two_language_servers_on_one_workspace_keep_one_coherent_conversation(
    host_env: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    root = workspace(tmp_path, "ws")
    async with (
        server(tmp_path, tiny_model_dir, [ANSWER], root=root) as (one, _r1, _root1),
        server(tmp_path, tiny_model_dir, ["It is still 1."], root=root) as (two, _r2, _root2),
    ):
        first, second = await asyncio.gather(
            command(one, "glm.ask", {"question": "What is A?"}),
            command(two, "glm.ask", {"question": "Is it still?"}),
        )
    assert sorted([first["turn"], second["turn"]]) == [1, 2]  # each request its own turn
    lines = (root / ".glm-lsp" / "thinking.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["turn"] for r in records] == [1, 2]
    # The later request continued the earlier one's conversation, in the host's one KV cache.
    recent = status()["recent"]
    earlier, later = recent[-2:]
    assert later["reusedTokens"] >= earlier["promptTokens"] + earlier["generatedTokens"] - 1, recent
    assert loads() == [1], status()


async def test_a_cancel_frees_the_model_at_once_for_another_client_waiting_its_turn(
    host_env: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    root = workspace(tmp_path, "ws")
    long_reply = "Let me explain this slowly. " * 400
    async with server(tmp_path, tiny_model_dir, [long_reply], root=root) as (client, rec, _root):
        first = asyncio.ensure_future(command(client, "glm.ask", {"question": "Go on"}))
        await until(lambda: rec.stream)  # generating in the host
        other = start_run(tmp_path, tiny_model_dir, workspace(tmp_path, "other"), [ANSWER])
        await until(lambda: status()["queued"] == 1)  # first come, first served: it waits
        cancelled_at = time.perf_counter()
        assert (await command(client, "glm.cancel", {}))["cancelled"] == 1
        await until(lambda: status()["running"] == "run", timeout=5)
        freed_s = time.perf_counter() - cancelled_at
        with pytest.raises(JsonRpcException):
            await first
    code, out, err = finish(other)
    assert code == 0, err
    assert "glm-lsp: waiting for the model (1 ahead)" in err  # the user saw why
    assert "It sets A to 1." in out
    assert freed_s < 0.5, f"the model was free {freed_s:.2f} s after the cancel"


def test_killing_the_host_mid_request_is_one_clear_error_and_the_next_request_starts_a_new_one(
    host_env: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    root = workspace(tmp_path, "ws")
    long_reply = "Let me think about this slowly. " * 400 + "</think>Done."
    proc = start_run(tmp_path, tiny_model_dir, root, [long_reply])
    assert proc.stderr is not None
    seen = b""
    while b"Let me think" not in seen:  # the host is generating: kill it now
        chunk = os.read(proc.stderr.fileno(), 4096)  # unbuffered: reasoning has no newlines
        assert chunk, f"run ended before generating: {seen!r}"
        seen += chunk
    old = registry.read()
    assert old is not None
    os.kill(old.pid, signal.SIGKILL)
    code, _out, rest = finish(proc)
    err = seen.decode() + rest
    assert code == 3
    assert err.count("glm-lsp: error:") == 1
    assert f"the glm-lsp host (pid {old.pid}) stopped during this request" in err
    assert "the next request starts a new host" in err
    assert not (root / ".glm-lsp" / "thinking.jsonl").exists()  # nothing half-done was logged
    code, out, err = finish(start_run(tmp_path, tiny_model_dir, root, [ANSWER]))
    assert code == 0, err
    assert "It sets A to 1." in out
    new = registry.read()
    assert new is not None and new.pid != old.pid and alive(new.pid)


def test_keep_alive_unloads_the_model_and_the_next_request_loads_it_again(
    host_env: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    host = subprocess.Popen(
        [*GLM, "host", "start", "--foreground", "--keep-alive", "0.01"],  # 0.6 s
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    try:
        assert host.stdout is not None
        assert "listening on" in host.stdout.readline()
        root = workspace(tmp_path, "ws")
        assert finish(start_run(tmp_path, tiny_model_dir, root, [ANSWER]))[0] == 0
        deadline = time.monotonic() + 60
        while status()["models"][0]["loaded"]:  # the host's own timer unloads it
            assert time.monotonic() < deadline, "keepAlive did not unload the model"
            time.sleep(0.1)
        code, _out, err = finish(start_run(tmp_path, tiny_model_dir, root, [ANSWER]))
        assert code == 0, err
        assert "glm-lsp: loading" in err  # the user sees the reload
        model = status()["models"][0]
        assert model["loads"] == 2
        # The conversation's KV went to disk at the unload and came back: the reload recomputed
        # nothing of the first request.
        recent = status()["recent"]
        assert recent[-1]["reusedTokens"] >= recent[-2]["promptTokens"]
    finally:
        subprocess.run([*GLM, "host", "stop"], timeout=60, check=False)
        host.wait(timeout=60)
    assert host.returncode == 0
    assert registry.read() is None  # the registration went with it


def test_the_host_refuses_a_wrong_token_and_a_second_start_finds_the_first(
    host_env: Path, tmp_path: Path
) -> None:
    out = subprocess.run(
        [*GLM, "host", "start"], capture_output=True, text=True, timeout=TIMEOUT, check=True
    ).stdout
    assert "glm-lsp host started" in out
    reg = registry.read()
    assert reg is not None
    mode = os.stat(reg.socket).st_mode & 0o777
    assert mode == 0o600 and os.stat(host_env).st_mode & 0o777 == 0o700
    assert os.stat(host_env / registry.TOKEN).st_mode & 0o777 == 0o600
    again = subprocess.run(
        [*GLM, "host", "start"], capture_output=True, text=True, timeout=TIMEOUT, check=True
    ).stdout
    assert f"already running (pid {reg.pid})" in again
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(reg.socket)
        sock.sendall(b'{"op":"hello","token":"wrong","client":"run"}\n{"op":"status","id":1}\n')
        answer = sock.makefile("rb").read()
    assert json.loads(answer.splitlines()[0]) == {"error": "wrong host token", "kind": "auth"}
    assert len(answer.splitlines()) == 1  # and nothing else: not the status
    stopped = subprocess.run([*GLM, "host", "stop"], capture_output=True, text=True, timeout=60)
    assert f"stopped the glm-lsp host (pid {reg.pid})" in stopped.stdout
    assert not alive(reg.pid)
