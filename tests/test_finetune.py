"""`glm-lsp finetune` closes the loop: scripted sessions -> export -> LoRA on the tiny model ->
the adapter predicts a traced reply better than the base model does, measured here."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx_lm import load

from glm_lsp.cli import main
from glm_lsp.traces.dataset import encode, record_text
from tests.test_export import FIXTURE, SESSION, run_session

ITERS = 60  # ~30 s on 2 busy cores: traces are trained with 256-token windows
LEARNING_RATE = "2e-4"  # the tiny random model collapses to one token at 1e-3 with scale 20


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "glm_lsp.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


def reply_score(model: nn.Module, tokenizer, prompt: str, completion: str) -> tuple[float, float]:
    """Loss and greedy (argmax) token accuracy on the completion, given the full prompt."""
    p = tokenizer.encode(prompt, add_special_tokens=False)
    c = tokenizer.encode(completion, add_special_tokens=False)
    ids = mx.array(p + c)
    logits = model(ids[None, :-1])[0][len(p) - 1 :]
    targets = ids[len(p) :]
    loss = nn.losses.cross_entropy(logits, targets).mean().item()
    accuracy = (mx.argmax(logits, axis=-1) == targets).astype(mx.float32).mean().item()
    return loss, accuracy


def test_lora_on_exported_traces_learns_a_traced_reply(
    tiny_model_dir: Path, tmp_path: Path, capsys
) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(FIXTURE, ws)
    run_session(ws, tiny_model_dir, SESSION, tmp_path / "replies.json")
    data = tmp_path / "data"
    data.mkdir()
    assert main(["export", str(ws), "--out", str(data / "train.jsonl")]) == 0
    capsys.readouterr()

    adapter = tmp_path / "adapter"
    started = time.perf_counter()
    out = cli(
        "finetune", str(data), "--model", str(tiny_model_dir), "--adapter-path", str(adapter),
        "--iters", str(ITERS), "--learning-rate", LEARNING_RATE, "--num-layers", "-1",
        "--max-seq-length", "256", "--report-every", "20",
    )  # fmt: skip
    seconds = time.perf_counter() - started
    assert out.returncode == 0, out.stderr
    assert [f"iter {i}/{ITERS}" in out.stderr for i in (20, 40, 60)] == [True] * 3
    assert "no valid.jsonl" in out.stderr  # the training data doubles as the measure
    reported = re.search(
        r"loss ([\d.]+) -> ([\d.]+), token accuracy ([\d.]+)% -> ([\d.]+)%", out.stdout
    )
    assert reported, out.stdout
    assert float(reported[2]) < float(reported[1])
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["fine_tune_type"] == "lora" and config["mask_prompt"] is True
    assert (adapter / "adapters.safetensors").is_file()

    # One traced reply, with its reasoning and two edit_file calls, in its full original prompt.
    record = json.loads((data / "train.jsonl").read_text().splitlines()[1])
    prompt, completion = record_text(record)
    assert "foo is defined here" in completion and completion.count("<tool_call>edit_file") == 2
    base, tokenizer = load(str(tiny_model_dir))
    tuned, _ = load(str(tiny_model_dir), adapter_path=str(adapter))  # as mlx_lm loads it
    before, after = (
        reply_score(base, tokenizer, prompt, completion),
        reply_score(tuned, tokenizer, prompt, completion),
    )
    with capsys.disabled():
        print(
            f"\nfinetune: {ITERS} iters, lr {LEARNING_RATE}, {seconds:.0f}s; training data: "
            f"{out.stdout.strip()}\ntraced reply ({len(tokenizer.encode(completion))} tokens, "
            f"full prompt): loss {before[0]:.3f} -> {after[0]:.3f}, greedy token accuracy "
            f"{before[1]:.1%} -> {after[1]:.1%}"
        )
    assert after[0] < before[0]
    assert after[1] > before[1]


def test_long_prompts_lose_their_oldest_messages_not_the_completion(tiny_model_dir: Path) -> None:
    _, tokenizer = load(str(tiny_model_dir))
    record = {
        "prompt": "[gMASK]<sop><|system|>rules<|user|>" + "old words " * 300 + "<|user|>new"
        "<|assistant|><think>",
        "completion": "Short reply.<|user|>",
    }
    full = encode([record], tokenizer, 4096).items[0]
    cut = encode([record], tokenizer, 64)
    tokens, offset = cut.items[0]
    assert cut.truncated == 1 and len(tokens) <= 64 < len(full[0])
    assert tokens[offset:] == full[0][full[1] :]  # the completion is whole
    text = tokenizer.decode(tokens)
    assert text.startswith("[gMASK]<sop><|system|>rules<|user|>new<|assistant|>")
    assert encode([record], tokenizer, 3).dropped == 1


def test_finetune_errors(tiny_model_dir: Path, tmp_path: Path) -> None:
    x = str(tmp_path / "adapter")
    empty = tmp_path / "empty"
    empty.mkdir()
    out = cli("finetune", str(empty), "--model", str(tiny_model_dir), "--adapter-path", x)
    assert out.returncode == 2 and "has no train.jsonl" in out.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "plain"}\n')
    out = cli("finetune", str(bad), "--model", str(tiny_model_dir), "--adapter-path", x)
    assert out.returncode == 2 and "bad.jsonl:1" in out.stderr
    good = tmp_path / "good.jsonl"
    good.write_text(
        json.dumps({"prompt": "[gMASK]<sop><|user|>hi<|assistant|>", "completion": "x"})
    )
    out = cli("finetune", str(good), "--model", str(tmp_path / "nope"), "--adapter-path", x)
    assert out.returncode == 3 and "was not found" in out.stderr
    assert "Traceback" not in out.stderr
    out = cli("finetune", str(good), "--model", "m", "--adapter-path", x, "--iters", "0")
    assert out.returncode == 2 and "--iters must be at least 1" in out.stderr
