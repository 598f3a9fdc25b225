"""kill -9 at the worst moments, then restart: nothing complete is lost, nothing torn is trusted.

- the server killed while it streams a long reply: the earlier requests are all in the log, the
  killed one left no trace, the KV cache still serves the next request;
- `glm-lsp run` killed again and again around the moment it appends to a 20 MB log and saves the
  KV cache, with torn tails written between runs exactly as a cut write leaves them: every
  complete line survives byte for byte, a torn one is dropped with a warning on stderr;
- a torn or foreign KV cache file is ignored with a warning and recomputed in full.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import mlx.core as mx
import pytest

from glm_lsp.memory.thinking_log import new_record
from glm_lsp.state_files import prepare_state_dir
from glm_lsp.tiny_model import make_tiny_model
from tests.lsp_wire import WireClient, start_server

A_PY = "def foo(x):\n    return 2 * x\n"
LONG = "word " * 6000  # streams for seconds: plenty of time to kill mid-generation
CRASHES = {"survived": 0}


def workspace(tmp: Path) -> Path:
    root = tmp / "ws"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text(A_PY)
    return root


def log_lines(root: Path) -> list[bytes]:
    path = root / ".glm-lsp" / "thinking.jsonl"
    return path.read_bytes().splitlines(keepends=True) if path.exists() else []


def turns(client: WireClient) -> list[int]:
    return [t["turn"] for t in client.command("glm.thinking.show", {})]


def explain(client: WireClient, root: Path, timeout: float = 120) -> dict[str, Any]:
    return client.command("glm.explain", {"uri": (root / "pkg" / "a.py").as_uri()}, timeout=timeout)


# -- the server, mid-generation --------------------------------------------------------------------


@pytest.mark.no_host  # kill -9 of the process generating and saving the KV
def test_kill_9_mid_generation(tmp_path: Path, tiny_model_dir: Path) -> None:
    root = workspace(tmp_path)
    client = start_server(tmp_path, tiny_model_dir, root, ["First answer.", "Second.", LONG])
    try:
        assert explain(client, root)["turn"] == 1
        assert client.command("glm.ask", {"question": "and?"})["turn"] == 2
        before = log_lines(root)
        kv = root / ".glm-lsp" / "kv-cache.safetensors"
        kv_before = kv.read_bytes()
        client.request_async(
            "workspace/executeCommand",
            {"command": "glm.explain", "arguments": [{"uri": (root / "pkg" / "a.py").as_uri()}]},
        )
        client.wait_for(lambda: len(client.streamed("content")) > 200, timeout=120)
    finally:
        client.kill()  # mid-stream: no shutdown, no save
    CRASHES["survived"] += 1
    assert log_lines(root) == before  # the killed request left no trace; the others are whole
    assert kv.read_bytes() == kv_before  # the cache on disk is the last complete one
    torn_tail(root, "half")  # and as if an earlier crash had cut a write short
    CRASHES["survived"] += 1

    client = start_server(tmp_path, tiny_model_dir, root, ["After the crash."])
    try:
        assert turns(client) == [1, 2]
        assert "dropped torn last line" in client.stderr()  # the user is told (server stderr)
        after = explain(client, root)
        assert after["turn"] == 3 and after["text"] == "After the crash."
        stats = after["stats"]
        assert stats["reusedTokens"] > 0  # the saved cache still serves the conversation
        assert stats["reusedTokens"] + stats["prefilledTokens"] == stats["promptTokens"]
        assert "ignoring KV cache" not in client.stderr()
    finally:
        client.close()
    assert [json.loads(line)["turn"] for line in log_lines(root)] == [1, 2, 3]


# -- glm-lsp run, around the log append and the KV save ----------------------------------------------


def big_log(root: Path, records: int = 100, pad: int = 200_000) -> None:
    """A 20 MB log: every start reads it whole, every append re-reads it to cut a torn tail."""
    state = prepare_state_dir(root / ".glm-lsp")  # made by glm-lsp: a foreign one is not read
    with open(state / "thinking.jsonl", "w", encoding="utf-8") as f:
        for turn in range(1, records + 1):
            messages = [
                {"role": "user", "content": f"question {turn}"},
                {"role": "assistant", "content": f"answer {turn}", "reasoning_content": ""},
            ]
            record = new_record(
                turn=turn, command="glm.ask", thinking="disabled", messages=messages, stats={}
            )
            record["pad"] = "p" * pad  # weight on disk that never reaches the prompt
            f.write(json.dumps(record) + "\n")


def run_cli(root: Path, model: Path, script: Path, question: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "glm_lsp.cli",
            "run",
            str(root),
            question,
            "--kind",
            "ask",
            "--model",
            str(model),
            "--scripted-replies",
            str(script),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


class StderrWatch:
    def __init__(self, proc: subprocess.Popen) -> None:
        self.text = ""
        self.lock = threading.Lock()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stderr is not None
        for chunk in iter(lambda: proc.stderr.read1(4096), b""):  # type: ignore[union-attr]
            with self.lock:
                self.text += chunk.decode(errors="replace")

    def wait_for(self, needle: str, proc: subprocess.Popen, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if needle in self.text:
                    return True
            if proc.poll() is not None:
                return needle in self.text
            time.sleep(0.002)
        return False


def check_log(root: Path, pristine: list[bytes], injected: bytes | None) -> list[bytes]:
    """Whole lines, the old ones byte for byte; a torn tail only if we wrote it ourselves."""
    lines = log_lines(root)
    torn = bool(lines) and not lines[-1].endswith(b"\n")
    whole = lines[:-1] if torn else lines
    assert whole[: len(pristine)] == pristine  # nothing complete was lost or rewritten
    for line in whole:
        json.loads(line)
    seen = [json.loads(line)["turn"] for line in whole]
    assert seen == sorted(set(seen)), seen  # no duplicate, no reordering
    if torn:  # a real kill never tears a single write() on a local disk: this one is ours
        assert injected is not None and lines[-1] == injected and len(whole) == len(pristine)
    return whole


def torn_tail(root: Path, kind: str) -> bytes:
    """What a crash mid-write leaves: a prefix of the next line, no newline."""
    line = json.dumps(
        new_record(
            turn=999,
            command="glm.ask",
            thinking="disabled",
            messages=[{"role": "user", "content": "torn ü 日本"}],
            stats={},
        ),
        ensure_ascii=False,
    ).encode("utf-8")
    cut = {
        "half": len(line) // 2,
        "mid-utf8": line.index("日".encode()) + 1,  # inside a multi-byte character
        "brace": 1,
        "no-newline": len(line),  # valid JSON, but the newline never came
    }[kind]
    with open(root / ".glm-lsp" / "thinking.jsonl", "ab") as f:
        f.write(line[:cut])
    return line[:cut]


def test_kill_9_around_the_log_append_with_a_big_log(tmp_path: Path, tiny_model_dir: Path) -> None:
    root = workspace(tmp_path)
    big_log(root)
    script = tmp_path / "replies.json"
    script.write_text(json.dumps(["The answer is FINAL."]))
    pristine = log_lines(root)
    # Delays after the answer has streamed: before, during and after the append and the save.
    delays = [0.0, 0.01, 0.03, 0.06, 0.1, 0.15, 0.25, 0.4, 0.7]
    torn_kinds = {2: "half", 5: "mid-utf8", 7: "brace", 8: "no-newline"}
    outcomes: list[str] = []
    injected: bytes | None = None  # the torn tail we wrote, until a run cuts it
    for i, delay in enumerate(delays):
        proc = run_cli(root, tiny_model_dir, script, f"question after crash {i}")
        watch = StderrWatch(proc)
        try:
            assert watch.wait_for("FINAL", proc, timeout=180), watch.text[-2000:]
            time.sleep(delay)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait(timeout=60)
        CRASHES["survived"] += proc.returncode == -signal.SIGKILL
        outcomes.append(
            "killed" if proc.returncode == -signal.SIGKILL else f"exit {proc.returncode}"
        )
        # A start that found our torn tail said so (and cut it, if it got to append).
        if injected is not None:
            assert "dropped torn last line" in watch.text, watch.text[-2000:]
        assert "ignoring KV cache" not in watch.text  # the cache file is replaced atomically
        assert "Traceback" not in watch.text
        whole = check_log(root, pristine, injected)
        if len(whole) > len(pristine):
            injected = None  # this run appended: the tail was cut first
        pristine = whole
        if i in torn_kinds and injected is None:
            injected = torn_tail(root, torn_kinds[i])
            CRASHES["survived"] += 1

    # What a kill inside save() leaves (made certain here, the kills above may or may not land
    # there), and the temp file of a live server's save in progress, which must be left alone.
    state = root / ".glm-lsp"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=30)
    (state / f".{dead.pid}.tmp.safetensors").write_bytes(b"\0" * 100_000)
    live = state / f".{os.getpid()}.tmp.safetensors"
    live.write_bytes(b"in progress")

    # A last run that finishes: every complete record is there, in order, and the file is whole.
    proc = run_cli(root, tiny_model_dir, script, "the last question")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]
    if injected is not None:
        assert b"dropped torn last line" in err
    assert b"FINAL" in out
    whole = check_log(root, pristine, None)
    assert whole[-1].endswith(b"\n") and whole == log_lines(root)
    records = [json.loads(line) for line in whole]
    assert len(records) == len(pristine) + 1
    assert records[-1]["messages"][0]["content"].endswith("the last question")
    assert "killed" in outcomes, outcomes  # at least some kills landed before the process ended
    assert sorted(state.glob(".*.tmp.safetensors")) == [live]  # the dead ones were removed
    live.unlink()
    print(f"\nglm-lsp run kills: {outcomes}; log {len(records)} records intact")


# -- the KV cache file ----------------------------------------------------------------------------


def _meta_key(meta: dict[str, str], name: str) -> str:
    """mlx-lm flattens [our metadata, classes, states] into "0.model", "0.tokens", ..."""
    (key,) = [k for k in meta if k.split(".", 1)[-1] == name]
    return key


def rewrite_meta(path: Path, **changes: str) -> None:
    arrays, meta = mx.load(str(path), return_metadata=True)
    for name, value in changes.items():
        meta[_meta_key(meta, name)] = value
    mx.save_safetensors(str(path), arrays, meta)


def kv_meta(path: Path) -> dict[str, str]:
    meta = mx.load(str(path), return_metadata=True)[1]
    return {k.split(".", 1)[-1]: v for k, v in meta.items() if k.startswith("0.")}


def damage(kv: Path, how: str) -> None:
    data = kv.read_bytes()
    if how == "truncated":
        kv.write_bytes(data[: len(data) // 2])
    elif how == "header only":
        kv.write_bytes(data[:64])
    elif how == "empty":
        kv.write_bytes(b"")
    elif how == "garbage":
        kv.write_bytes(os.urandom(len(data)))
    elif how == "foreign model":
        rewrite_meta(kv, model="/models/some-other-model")
    elif how == "other kvBits":
        rewrite_meta(kv, kv_bits="8")
    elif how == "tokens shorter":
        tokens = json.loads(kv_meta(kv)["tokens"])
        rewrite_meta(kv, tokens=json.dumps(tokens[:-5]))
    elif how == "tokens longer":
        tokens = json.loads(kv_meta(kv)["tokens"])
        rewrite_meta(kv, tokens=json.dumps([*tokens, 1, 2, 3]))
    elif how == "segments mismatch":
        segments = json.loads(kv_meta(kv)["segments"])
        segments[-1][1] += 7
        rewrite_meta(kv, segments=json.dumps(segments))
    elif how == "tokens not json":
        rewrite_meta(kv, tokens="[1, 2,")
    elif how == "no metadata":
        arrays, _ = mx.load(str(kv), return_metadata=True)
        mx.save_safetensors(str(kv), arrays)
    elif how == "no tokens":
        arrays, meta = mx.load(str(kv), return_metadata=True)
        del meta[_meta_key(meta, "tokens")]
        mx.save_safetensors(str(kv), arrays, meta)
    else:
        raise AssertionError(how)


KV_DAMAGE = [
    "truncated",
    "header only",
    "empty",
    "garbage",
    "foreign model",
    "other kvBits",
    "tokens shorter",
    "tokens longer",
    "segments mismatch",
    "tokens not json",
    "no metadata",
    "no tokens",
]


@pytest.mark.no_host  # the restarted process reads the KV file
def test_torn_or_mismatched_kv_cache_is_ignored_and_recomputed(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    root = workspace(tmp_path)
    client = start_server(tmp_path, tiny_model_dir, root, ["One.", "Two."])
    try:
        explain(client, root)
        explain(client, root)
    finally:
        client.kill()  # no clean shutdown: the state is whatever the last request left
    state = root / ".glm-lsp"
    pristine = tmp_path / "pristine"
    shutil.copytree(state, pristine)

    def restart_and_ask(label: str) -> tuple[dict[str, Any], str]:
        for child in state.iterdir():  # the same folder: one copied in would not be ours
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        shutil.copytree(pristine, state, dirs_exist_ok=True)
        if label != "intact":
            damage(state / "kv-cache.safetensors", label)
        client = start_server(tmp_path, tiny_model_dir, root, ["Three."])
        try:
            stats = explain(client, root)["stats"]
            assert turns(client) == [1, 2, 3]  # the log does not depend on the cache
            return stats, client.stderr()
        finally:
            client.close()

    stats, stderr = restart_and_ask("intact")  # the control: a good cache is reused
    assert stats["reusedTokens"] > 0 and "ignoring KV cache" not in stderr
    for how in KV_DAMAGE:
        stats, stderr = restart_and_ask(how)
        assert "ignoring KV cache" in stderr and "recomputed" in stderr, (how, stderr[-1500:])
        assert stats["prefilledTokens"] == stats["promptTokens"] > 0, (how, stats)
        assert stats["reusedTokens"] == 0, (how, stats)
        CRASHES["survived"] += 1
    # After the last one the cache was saved afresh and is trusted again.
    assert "tokens" in kv_meta(state / "kv-cache.safetensors")


@pytest.mark.no_host  # the restarted process reads the KV file
def test_kv_cache_of_a_model_reconverted_in_place_is_not_reused(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """Same model path, other weights (`glm-lsp convert` again into the same folder): the cache
    was computed by the old weights, so it must not be reused."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    root = workspace(tmp_path)
    client = start_server(tmp_path, model, root, ["One."])
    try:
        explain(client, root)
    finally:
        client.close()
    heads = json.loads((tiny_model_dir / "config.json").read_text())["num_attention_heads"]
    other = make_tiny_model(tmp_path / "other", seed=1, heads=heads)  # same shape, other weights
    for weights in other.glob("*.safetensors"):
        shutil.copy(weights, model / weights.name)
    client = start_server(tmp_path, model, root, ["Two."])
    try:
        stats = explain(client, root)["stats"]
        assert "ignoring KV cache" in client.stderr()
        assert stats["prefilledTokens"] == stats["promptTokens"] > 0, stats
    finally:
        client.close()
    CRASHES["survived"] += 1


def test_report_crashes_survived() -> None:
    print(f"\ncrashes and torn states survived in this module: {CRASHES['survived']}")
