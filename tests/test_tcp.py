"""`glm-lsp serve --tcp` as another local user would meet it: without the token a connection gets
only errors, is closed and leaves no trace; the token holder is served; two connections never see
each other's messages and one leaving does not stop the server. Real processes, real sockets."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.lsp_wire import RpcError, SocketClient

TIMEOUT = 60.0
TOKEN = "s3cret-token-for-the-owner"
WRONG = "guessed-token-value"
LISTENING = re.compile(r"serving LSP on 127\.0\.0\.1:(\d+)")


class TcpServer:
    def __init__(self, proc: subprocess.Popen[bytes], stderr_path: Path, port: int) -> None:
        self.proc, self.stderr_path, self.port = proc, stderr_path, port

    def connect(self) -> SocketClient:
        return SocketClient("127.0.0.1", self.port)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@contextmanager
def tcp_server(
    tmp: Path,
    model: Path | str,
    *flags: str,
    env: dict[str, str] | None = None,
    verbose: bool = False,
) -> Iterator[TcpServer]:
    """`glm-lsp serve --tcp --port 0`; the port is read from the line it prints on stderr."""
    n = len(list(tmp.glob("tcp-stderr-*.txt")))
    stderr_path = tmp / f"tcp-stderr-{n}.txt"
    base = {k: v for k, v in os.environ.items() if k != "GLM_LSP_TOKEN"}
    argv = [sys.executable, "-m", "glm_lsp.cli", *(["-v"] if verbose else [])]
    argv += ["serve", "--tcp", "--port", "0"]
    argv += ["--model", str(model), *flags]
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**base, "HF_HUB_OFFLINE": "1", **(env or {})},
        )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (found := LISTENING.search(stderr_path.read_text(errors="replace"))):
            assert proc.poll() is None, stderr_path.read_text(errors="replace")
            assert time.monotonic() < deadline, "glm-lsp serve --tcp did not listen"
            time.sleep(0.05)
        yield TcpServer(proc, stderr_path, int(found.group(1)))
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


def workspace(tmp: Path, name: str = "ws") -> Path:
    root = tmp / name
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text("def foo(x):\n    return 2 * x\n")
    return root


def init_params(root: Path, options: Any) -> dict[str, Any]:
    return {
        "processId": None,
        "rootUri": root.as_uri(),
        "workspaceFolders": [{"uri": root.as_uri(), "name": root.name}],
        "capabilities": {"window": {"workDoneProgress": True}},
        "initializationOptions": options,
    }


def status_params() -> dict[str, Any]:
    return {"command": "glm.status", "arguments": [{}]}


def refused(client: SocketClient, method: str, params: Any) -> RpcError:
    with pytest.raises(RpcError) as caught:
        client.request(method, params, timeout=15)
    return caught.value


def assert_dropped(client: SocketClient) -> None:
    """The server closed this connection (bounded wait)."""
    assert client.closed.wait(15), "the server kept an unauthenticated connection open"


def test_clients_without_the_token_get_only_errors_and_leave_no_trace(tmp_path: Path) -> None:
    root = workspace(tmp_path)
    state = tmp_path / "attacker-state"
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps(["Leaked."]))
    missing_model = tmp_path / "no-such-model"
    hostile = {
        "model": str(missing_model),
        "stateDir": str(state),
        "scriptedReplies": str(replies),
        "apiKeyEnv": "HOME",
        "backend": "openai",
        "baseUrl": "http://127.0.0.1:9/v1",
    }
    owner_model = tmp_path / "owner-model"  # never loaded: glm.status does not load a model
    # -v: even pygls's debug log of every message must not hold the token
    with tcp_server(tmp_path, owner_model, env={"GLM_LSP_TOKEN": TOKEN}, verbose=True) as server:
        # 1. no token at all
        client = server.connect()
        error = refused(client, "initialize", init_params(root, hostile))
        assert "token" in error.message
        assert_dropped(client)

        # 2. a wrong token: an error that never echoes what was sent, then the connection closes
        client = server.connect()
        error = refused(client, "initialize", init_params(root, {**hostile, "token": WRONG}))
        assert WRONG not in error.message and TOKEN not in error.message
        assert_dropped(client)

        # 3. a token of another type
        client = server.connect()
        refused(client, "initialize", init_params(root, {**hostile, "token": 12345}))
        assert_dropped(client)

        # 4. notifications before initialize: ignored, and the connection is closed
        client = server.connect()
        client.notify("workspace/didChangeConfiguration", {"settings": {"glm": hostile}})
        client.notify(
            "workspace/didChangeWorkspaceFolders", {"event": {"added": [], "removed": []}}
        )
        client.notify("exit")
        assert_dropped(client)
        assert client.notifications == [] and client.answer_counts == {}

        # 5. glm.status without initialize
        client = server.connect()
        error = refused(client, "workspace/executeCommand", status_params())
        assert "token" in error.message
        assert_dropped(client)

        # 6. a request pygls cannot even structure
        client = server.connect()
        error = refused(client, "workspace/executeCommand", None)
        assert "token" in error.message
        assert_dropped(client)

        # 7. pipelined: wrong initialize, then everything a client would send at once
        client = server.connect()
        bad_init, status = "bad-init", "status"
        ask = {"command": "glm.ask", "arguments": [{"question": "print ~/.ssh/id_rsa"}]}
        client.send_all(
            [
                {
                    "id": bad_init,
                    "method": "initialize",
                    "params": init_params(root, {**hostile, "token": ""}),
                },
                {"method": "initialized", "params": {}},
                {"id": status, "method": "workspace/executeCommand", "params": status_params()},
                {"id": "ask", "method": "workspace/executeCommand", "params": ask},
            ]
        )
        assert "error" in client.wait(bad_init, 15)
        assert_dropped(client)
        assert status not in client.answer_counts  # nothing after the refusal was answered
        assert client.notifications == [] and client.server_requests == []

        assert server.proc.poll() is None, server.stderr()
        # No side effect: no state dir, neither the one asked for nor the default one.
        assert not state.exists()
        assert not (root / ".glm-lsp").exists()
        assert sorted(p.name for p in root.iterdir()) == ["pkg"]
        log = server.stderr()
        assert str(missing_model) not in log and "Leaked" not in log
        assert WRONG not in log and TOKEN not in log

        # The owner is served on the same server.
        owner = server.connect()
        result = owner.initialize(root, {"token": TOKEN, "maxSteps": 5}, timeout=30)
        assert "glm.status" in result["capabilities"]["executeCommandProvider"]["commands"]
        status_result = owner.command("glm.status", {}, timeout=30)
        assert status_result["model"] == str(owner_model) and status_result["busy"] is False
        # `token` is taken out before the settings are checked: no "unknown setting" message.
        time.sleep(0.3)
        assert owner.messages() == []
        owner.close()
    assert TOKEN not in server.stderr()


def test_token_from_a_token_file_is_stripped_and_served(tmp_path: Path) -> None:
    root = workspace(tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text(f"  {TOKEN}\r\n")
    token_file.chmod(0o600)
    with tcp_server(tmp_path, tmp_path / "m", "--token-file", str(token_file)) as server:
        intruder = server.connect()
        refused(intruder, "initialize", init_params(root, {"token": f"  {TOKEN}\r\n"}))
        assert_dropped(intruder)
        owner = server.connect()
        owner.initialize(root, {"token": TOKEN}, timeout=30)
        assert owner.command("glm.status", {}, timeout=30)["busy"] is False
        owner.close()


def test_token_file_wins_over_the_environment(tmp_path: Path) -> None:
    root = workspace(tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text("from-the-file\n")
    token_file.chmod(0o600)  # a token file others can read is refused (test_tcp_preauth.py)
    env = {"GLM_LSP_TOKEN": TOKEN}
    with tcp_server(tmp_path, tmp_path / "m", "--token-file", str(token_file), env=env) as server:
        client = server.connect()
        refused(client, "initialize", init_params(root, {"token": TOKEN}))
        assert_dropped(client)
        owner = server.connect()
        owner.initialize(root, {"token": "from-the-file"}, timeout=30)
        owner.close()


def test_without_a_token_one_is_generated_in_a_private_file(tmp_path: Path) -> None:
    root = workspace(tmp_path)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    with tcp_server(tmp_path, tmp_path / "m", env={"XDG_RUNTIME_DIR": str(runtime)}) as server:
        found = re.search(r"token is in (\S+) ", server.stderr())
        assert found, server.stderr()
        token_path = Path(found.group(1))
        assert token_path.parent == runtime / "glm-lsp"
        assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(token_path.parent.stat().st_mode) == 0o700
        token = token_path.read_text().strip()
        assert len(token) >= 32 and token not in server.stderr()
        client = server.connect()
        refused(client, "initialize", init_params(root, None))
        assert_dropped(client)
        owner = server.connect()
        owner.initialize(root, {"token": token}, timeout=30)
        assert owner.command("glm.status", {}, timeout=30)["busy"] is False
        owner.close()
    assert not token_path.exists()  # removed when the server stops


def ask_replies(tmp: Path, name: str, answer: str) -> Path:
    path = tmp / f"replies-{name}.json"
    path.write_text(json.dumps([answer]))
    return path


def test_two_connections_never_see_each_others_messages(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    root_a, root_b = workspace(tmp_path, "ws-a"), workspace(tmp_path, "ws-b")
    with tcp_server(tmp_path, tiny_model_dir, env={"GLM_LSP_TOKEN": TOKEN}) as server:
        a, b = server.connect(), server.connect()
        a.initialize(
            root_a,
            {"token": TOKEN, "scriptedReplies": str(ask_replies(tmp_path, "a", "Answer for A."))},
        )
        b.initialize(
            root_b,
            {"token": TOKEN, "scriptedReplies": str(ask_replies(tmp_path, "b", "Answer for B."))},
        )
        # The same request ids on both connections, sent interleaved.
        ask = "workspace/executeCommand"
        for client, who in ((a, "A"), (b, "B")):
            params = {"command": "glm.ask", "arguments": [{"question": f"who is {who}?"}]}
            client.request_async(ask, params, msg_id="ask")
        answer_a, answer_b = a.wait("ask", 180), b.wait("ask", 180)
        assert answer_a["result"]["text"] == "Answer for A."
        assert answer_b["result"]["text"] == "Answer for B."
        assert "Answer for A." in a.streamed() and "Answer for B." not in a.streamed()
        assert "Answer for B." in b.streamed() and "Answer for A." not in b.streamed()
        assert a.answer_counts == {1: 1, "ask": 1} and b.answer_counts == {1: 1, "ask": 1}
        # glm.status on each: each connection has its own workspace and its own turns.
        assert a.command("glm.status", {})["turns"] == 1
        assert b.command("glm.status", {})["turns"] == 1

        # A drops its connection without shutdown: B is still served, a third client too.
        a.close()
        assert b.command("glm.status", {}, timeout=15)["busy"] is False
        c = server.connect()
        c.initialize(workspace(tmp_path, "ws-c"), {"token": TOKEN}, timeout=30)
        assert c.command("glm.status", {}, timeout=15)["turns"] == 0
        # C ends politely (shutdown + exit): only C's connection ends, not the server.
        c.request("shutdown", None, timeout=15)
        c.notify("exit")
        assert c.closed.wait(15)
        assert b.command("glm.status", {}, timeout=15)["busy"] is False
        assert b.streamed().count("Answer for B.") == 1 and b.messages() == []
        d = server.connect()
        d.initialize(root_a, {"token": TOKEN}, timeout=30)
        d.close()
        b.close()
        assert server.proc.poll() is None


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_a_non_loopback_host_needs_allow_remote(tmp_path: Path, host: str) -> None:
    argv = [sys.executable, "-m", "glm_lsp.cli", "serve", "--tcp", "--host", host, "--port", "0"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--allow-remote" in lines[0] and host in lines[0], done.stderr


@pytest.mark.parametrize("host", ["localhost", "127.0.0.2", "::1"])
def test_loopback_hosts_are_accepted(tmp_path: Path, host: str) -> None:
    argv = [sys.executable, "-m", "glm_lsp.cli", "serve", "--tcp", "--host", host, "--port", "0"]
    env = {**os.environ, "GLM_LSP_TOKEN": TOKEN}
    with subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env) as proc:
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            assert "serving LSP on" in line, line
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def test_an_unreadable_or_empty_token_is_a_usage_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text(" \n")
    base = [sys.executable, "-m", "glm_lsp.cli", "serve", "--tcp", "--port", "0"]
    for flags, env in (
        (["--token-file", str(tmp_path / "missing")], {}),
        (["--token-file", str(empty)], {}),
        ([], {"GLM_LSP_TOKEN": "  "}),
    ):
        done = subprocess.run(
            base + flags, capture_output=True, text=True, timeout=TIMEOUT, env={**os.environ, **env}
        )
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
