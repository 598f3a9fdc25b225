"""`glm-lsp serve --tcp` before the token, as a local attacker would try it with a raw socket: a
huge announced body, a flood of idle connections, a connection that never authenticates, and a
token file others can read. The server stays small and the token holder still gets in."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from glm_lsp.server.tcp import AUTH_TIMEOUT_ENV
from tests.test_tcp import TIMEOUT, TOKEN, tcp_server, workspace

DEADLINE_S = 2.0  # the test server's time to authenticate (10 s by default)
FLOOD = 64  # idle connections, against a cap of 8
SAFETY_S = 15.0  # bounded waits only: every wait below ends on the server's close


def raw_connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=SAFETY_S)
    sock.settimeout(SAFETY_S)
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Blocks until the server closes the connection (EOF or reset); False if it never does."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    finally:
        sock.close()
    return True


def test_before_the_token_a_huge_body_and_an_idle_peer_are_cut_off(tmp_path: Path) -> None:
    root = workspace(tmp_path)
    env = {"GLM_LSP_TOKEN": TOKEN, AUTH_TIMEOUT_ENV: str(DEADLINE_S)}
    with tcp_server(tmp_path, tmp_path / "m", env=env) as server:
        process = psutil.Process(server.proc.pid)
        idle, slow = raw_connect(server.port), raw_connect(server.port)
        started = time.monotonic()
        slow.sendall(b"Content-Length: 10\r\n")  # a header that never ends
        rss_before = process.memory_info().rss

        huge = raw_connect(server.port)
        huge.sendall(b"Content-Length: 1200000000\r\n\r\n")
        # 64 MiB of the body: a server that buffers it grows by as much; an OSError when the
        # server closed the connection at the header, as it should
        with contextlib.suppress(OSError):
            huge.sendall(b"x" * (64 << 20))
        assert closed_by_server(huge), "the server kept reading a 1.2 GB body before the token"
        grown = process.memory_info().rss - rss_before
        assert grown < (16 << 20), f"the server grew by {grown >> 20} MiB before the token"
        assert "1200000000-byte message before the token" in server.stderr()

        # Nothing sent, or a header that never ends: closed at the deadline.
        assert closed_by_server(idle) and closed_by_server(slow), "kept past the deadline"
        assert time.monotonic() - started >= DEADLINE_S - 0.1

        owner = server.connect()
        owner.initialize(root, {"token": TOKEN}, timeout=30)
        assert owner.command("glm.status", {}, timeout=30)["busy"] is False
        owner.close()
        assert server.proc.poll() is None


def test_a_flood_of_idle_connections_cannot_lock_the_owner_out(tmp_path: Path) -> None:
    """Idle connections far past the cap: the oldest waiting ones are closed as new ones arrive
    (so a flood never holds the server's descriptors: 2,142 exhausted them before), and the owner,
    who authenticates at once, gets in. The deadline is long here: only the cap closes them."""
    root = workspace(tmp_path)
    env = {"GLM_LSP_TOKEN": TOKEN, AUTH_TIMEOUT_ENV: "600"}
    with tcp_server(tmp_path, tmp_path / "m", env=env) as server:
        flood = [raw_connect(server.port) for _ in range(FLOOD)]
        owner = server.connect()
        owner.initialize(root, {"token": TOKEN}, timeout=SAFETY_S)
        assert owner.command("glm.status", {}, timeout=30)["busy"] is False
        assert all(closed_by_server(s) for s in flood[:-8]), "idle connections were kept open"
        for sock in flood[-8:]:
            sock.close()
        owner.close()
        assert server.proc.poll() is None


def test_a_token_file_others_can_read_or_a_symlink_is_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o644)
    link = tmp_path / "token-link"
    link.symlink_to(token_file)
    base = [sys.executable, "-m", "glm_lsp.cli", "serve", "--tcp", "--port", "0"]
    env = {k: v for k, v in os.environ.items() if k != "GLM_LSP_TOKEN"}
    for path, expected in ((token_file, "chmod 600"), (link, "symbolic link")):
        if path == link:
            token_file.chmod(0o600)  # the target itself is private: the link is the problem
        done = subprocess.run(
            [*base, "--token-file", str(path)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=env,
        )
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and str(path) in lines[0], done.stderr
