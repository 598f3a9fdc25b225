"""`--distributed` with real ranks: `mlx.launch --backend ring` starting two processes on
127.0.0.1, each loading its shard of the tiny model with mlx-lm's sharded_load. Every wait is
bounded and every process is killed at the end."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from glm_lsp.tiny_model import ensure_tiny_model
from tests.lsp_wire import SocketClient

REPO = Path(__file__).resolve().parents[1]
LAUNCHER = Path(sys.executable).parent / "mlx.launch"
RUN_TIMEOUT = 400  # two ranks of a tiny model; slow only on a crowded CPU
TOKEN = "distributed-test-token"
PIDS = re.compile(r"rank (\d) of 2 \((?:pipeline|tensor), pid (\d+)\)")
STATS = re.compile(r"turn (\d+): (\d+) prompt tokens \((\d+) reused, (\d+) prefilled\)")

pytestmark = pytest.mark.skipif(not LAUNCHER.exists(), reason="mlx.launch is not installed")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLX_", "GLM_LSP_TOKEN"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env | {"HF_HUB_OFFLINE": "1"}


def _port() -> int:
    """A starting port P with P and P+1 free (the ring binds one per rank), below Linux's
    ephemeral range, so no outgoing connection takes P+1 between this check and the bind."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports in 20000-32000")


def launch_argv(*glm: str) -> list[str]:
    """mlx.launch, two ranks on loopback, each `python -m glm_lsp.cli ...`."""
    return [
        str(LAUNCHER),
        "--hosts",
        "127.0.0.1,127.0.0.1",
        "--backend",
        "ring",
        "--starting-port",
        str(_port()),
        "--python",
        sys.executable,
        "-m",
        "glm_lsp.cli",
        *glm,
    ]


def launched(*glm: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        launch_argv(*glm), env=_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT
    )


def single(*glm: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "glm_lsp.cli", *glm]
    return subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=RUN_TIMEOUT)


def workspace(tmp: Path, name: str) -> Path:
    root = tmp / name
    root.mkdir()
    (root / "a.py").write_text("def add(a, b):\n    return a + b\n")
    return root


def logged(root: Path) -> list[list[dict]]:
    lines = (root / ".glm-lsp" / "thinking.jsonl").read_text().splitlines()
    return [json.loads(line)["messages"] for line in lines]


def stats(stderr: str) -> tuple[int, int, int]:
    """(turn, reused, prefilled) of the run's stats line."""
    found = STATS.findall(stderr)
    assert found, stderr
    turn, _prompt, reused, prefilled = (int(x) for x in found[-1])
    return turn, reused, prefilled


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _pids(text: str) -> dict[int, int]:
    return {int(rank): int(pid) for rank, pid in PIDS.findall(text)}


def test_outside_a_launcher_it_says_how_to_launch(tiny_model_dir: Path, tmp_path: Path) -> None:
    root = workspace(tmp_path, "ws")
    out = single(
        "run", str(root), "hi", "--distributed", "pipeline", "--model", str(tiny_model_dir)
    )
    assert out.returncode == 2, out.stderr
    assert "mlx.launch" in out.stderr and "Traceback" not in out.stderr
    assert not (root / ".glm-lsp").exists()


@pytest.mark.no_host  # "one process": the model in it, its KV file
def test_run_pipeline_matches_one_process_and_each_rank_reloads_its_cache(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    one, two = workspace(tmp_path, "one"), workspace(tmp_path, "two")
    greedy = ["--kind", "ask", "--temperature", "0", "--max-tokens", "24", "--max-steps", "2"]
    greedy += ["--model", str(tiny_model_dir)]

    def both(question: str) -> tuple[subprocess.CompletedProcess[str], ...]:
        alone = single("run", str(one), question, *greedy)
        ranks = launched("run", str(two), question, *greedy, "--distributed", "pipeline")
        assert alone.returncode == 0, alone.stderr
        assert ranks.returncode == 0, ranks.stderr + ranks.stdout
        return alone, ranks

    alone, ranks = both("What does add do?")
    assert ranks.stdout == alone.stdout  # the same greedy answer
    assert logged(two) == logged(one)  # and the same log
    slices = sorted(p.name for p in (two / ".glm-lsp").glob("kv-cache.*"))
    assert slices == ["kv-cache.pipeline-0of2.safetensors", "kv-cache.pipeline-1of2.safetensors"]

    # A restart: each rank reloads its own slice, so the earlier turn is not recomputed.
    alone, ranks = both("And with strings?")
    assert ranks.stdout == alone.stdout and logged(two) == logged(one)
    turn, reused, _ = stats(ranks.stderr)
    assert turn == 2 and reused > 0 and stats(alone.stderr)[1:] == (reused, stats(ranks.stderr)[2])

    # Rank 1's slice no longer matches rank 0's history: every rank recomputes, and so does
    # the single process (a full prefill rounds differently from an incremental one).
    (two / ".glm-lsp" / "kv-cache.pipeline-1of2.safetensors").write_bytes(b"torn")
    (one / ".glm-lsp" / "kv-cache.safetensors").unlink()
    ranks = launched("run", str(two), "Once more?", *greedy, "--distributed", "pipeline")
    assert ranks.returncode == 0, ranks.stderr
    assert stats(ranks.stderr)[1] == 0, ranks.stderr
    alone = single("run", str(one), "Once more?", *greedy)
    assert ranks.stdout == alone.stdout


def test_killing_rank_1_mid_request_ends_rank_0_with_a_clear_error(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    root = workspace(tmp_path, "ws")
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps(["think " * 3000 + "</think>done"]))
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    argv = launch_argv(
        "run", str(root), "hi", "--kind", "refactor", "--model", str(tiny_model_dir),
        "--scripted-replies", str(replies), "--distributed", "pipeline",
    )  # fmt: skip
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(argv, env=_env(), stdout=o, stderr=e, start_new_session=True)
    pids: dict[int, int] = {}
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while err.read_text().count("think think think") < 1 or len(pids) < 2:
            pids = _pids(err.read_text())
            assert proc.poll() is None, err.read_text()
            assert time.monotonic() < deadline, "the request never started"
            time.sleep(0.1)
        os.kill(pids[1], signal.SIGKILL)
        killed = time.monotonic()
        proc.wait(timeout=60)
        elapsed = time.monotonic() - killed
        text = err.read_text()
        assert "lost a rank" in text and "restart every rank" in text, text[-2000:]
        assert "Traceback" not in text
        assert elapsed < 10, elapsed
        assert "rank 0 exited with code 3" in text  # mlx.launch itself always exits 0
        assert not (root / ".glm-lsp" / "thinking.jsonl").exists()  # nothing half-done logged
    finally:
        _kill(list(pids.values()))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


@contextmanager
def served(model: Path, tmp: Path, mode: str) -> Iterator[tuple[SocketClient, str]]:
    """`serve --tcp --distributed MODE` under mlx.launch; yields a client and rank 0's port."""
    err = tmp / "serve-err.txt"
    argv = launch_argv(
        "serve", "--tcp", "--port", "0", "--model", str(model), "--distributed", mode
    )
    with open(err, "wb") as e:
        proc = subprocess.Popen(
            argv,
            env=_env() | {"GLM_LSP_TOKEN": TOKEN},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=e,
            start_new_session=True,
        )
    pids: dict[int, int] = {}
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while not (found := re.search(r"serving LSP on 127\.0\.0\.1:(\d+)", err.read_text())):
            assert proc.poll() is None, err.read_text()
            assert time.monotonic() < deadline, "serve --distributed did not listen"
            time.sleep(0.1)
        pids = _pids(err.read_text())
        client = SocketClient("127.0.0.1", int(found.group(1)))
        yield client, err.read_text()
        client.close()
        os.kill(pids[0], signal.SIGTERM)  # rank 0 stops; rank 1 hears "exit" and follows
        proc.wait(timeout=60)
        assert "Traceback" not in err.read_text()
    finally:
        _kill(list(pids.values()))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


def test_serve_pipeline_over_tcp_answers_a_refactor_and_reuses_both_ranks_caches(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    root = workspace(tmp_path, "ws")
    replies = tmp_path / "replies.json"
    edit = (
        "Rename it.</think><tool_call>edit_file<arg_key>path</arg_key><arg_value>a.py"
        "</arg_value><arg_key>old_text</arg_key><arg_value>def add(</arg_value>"
        "<arg_key>new_text</arg_key><arg_value>def plus(</arg_value></tool_call>"
    )
    read = "Read first.</think><tool_call>read_file<arg_key>path</arg_key><arg_value>a.py"
    read += "</arg_value></tool_call>"
    done = "Done.</think>Renamed add to plus."
    replies.write_text(json.dumps([read, edit, done, "It adds two values."]))
    with served(tiny_model_dir, tmp_path, "pipeline") as (client, _log):
        options = {"token": TOKEN, "scriptedReplies": str(replies), "review": "direct"}
        client.on_apply_edit = lambda _params: {"applied": True}  # as an editor that took it
        client.initialize(root, options, timeout=60)
        uri = (root / "a.py").as_uri()
        result = client.command(
            "glm.refactor", {"uri": uri, "instruction": "rename add to plus"}, timeout=RUN_TIMEOUT
        )
        assert result["applied"] is True, result
        assert [c["uri"] for c in result["changes"]] == [uri]
        assert "def plus(" in json.dumps(client.edits)
        answer = client.command("glm.ask", {"question": "what is it?"}, timeout=RUN_TIMEOUT)
        assert answer["text"] == "It adds two values."
        # The second request starts where the first ended, on both ranks' slices.
        assert answer["stats"]["reusedTokens"] > answer["stats"]["prefilledTokens"] > 0


def test_tensor_parallel_runs_scripted_replies_and_speculative_decoding(tmp_path: Path) -> None:
    cache = os.environ.get("GLM_LSP_TEST_CACHE")
    model = ensure_tiny_model(Path(cache) if cache else tmp_path / "models", kv_heads=2, heads=2)
    root = workspace(tmp_path, "ws")
    replies = tmp_path / "replies.json"
    read = "Read.</think><tool_call>read_file<arg_key>path</arg_key><arg_value>a.py"
    answer = "It returns a + b, the sum: return a + b."
    replies.write_text(json.dumps([read + "</arg_value></tool_call>", f"Sum.</think>{answer}"]))
    ranks = launched(
        "run", str(root), "explain", "--kind", "explain", "--model", str(model),
        "--scripted-replies", str(replies), "--distributed", "tensor", "--draft-tokens", "4",
    )  # fmt: skip
    assert ranks.returncode == 0, ranks.stderr
    assert answer in ranks.stdout
    assert re.search(r"drafts [1-9]\d*/\d+ accepted", ranks.stderr), ranks.stderr
    assert sorted(p.name for p in (root / ".glm-lsp").glob("kv-cache.*")) == [
        "kv-cache.tensor-0of2.safetensors",
        "kv-cache.tensor-1of2.safetensors",
    ]


def test_the_host_is_rank_0_and_a_front_end_attaches_to_the_launched_model(
    host_env: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from glm_lsp.host import registry
    from glm_lsp.host.client import answers, host_request

    err = tmp_path / "host-err.txt"
    argv = launch_argv(
        "host", "start", "--foreground", "--model", str(tiny_model_dir), "--distributed", "pipeline"
    )
    with open(err, "wb") as e:
        proc = subprocess.Popen(argv, env=_env(), stdout=e, stderr=e, start_new_session=True)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while (reg := registry.live()) is None or not answers(reg):
            assert proc.poll() is None, err.read_text()
            assert time.monotonic() < deadline, "the host never registered"
            time.sleep(0.1)
        one, two = workspace(tmp_path, "one"), workspace(tmp_path, "two")
        greedy = ["--kind", "ask", "--temperature", "0", "--max-tokens", "24", "--max-steps", "2"]
        greedy += ["--model", str(tiny_model_dir)]
        alone = single("run", str(one), "What does add do?", *greedy, "--no-host")
        hosted = single("run", str(two), "What does add do?", *greedy)  # attaches: no load
        assert alone.returncode == 0 and hosted.returncode == 0, hosted.stderr
        assert hosted.stdout == alone.stdout  # the same greedy answer from the two ranks
        assert logged(two) == logged(one)
        slices = sorted(p.name for p in (two / ".glm-lsp").glob("kv-cache.*"))
        assert slices == [
            "kv-cache.pipeline-0of2.safetensors",
            "kv-cache.pipeline-1of2.safetensors",
        ]
        status = host_request("status")
        assert [(m["name"], m["loads"]) for m in status["models"]] == [(str(tiny_model_dir), 1)]
        assert single("host", "stop").returncode == 0
        assert proc.wait(timeout=60) == 0, err.read_text()  # rank 0 told rank 1: both exited
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
