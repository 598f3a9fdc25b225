"""The embedded MLX runtime: conversation KV reuse, persistence, kvBits, scripted replies."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from glm_lsp.glm.format import completion_text, render_prompt
from glm_lsp.glm.tool_schemas import TOOLS
from glm_lsp.runtime.base import BackendError, Cancelled, CompletionRequest
from glm_lsp.runtime.mlx import MLXModel
from glm_lsp.runtime.scripted import ScriptedReplies


def call(name: str, **args: object) -> dict:
    return {"type": "function", "function": {"name": name, "arguments": args}}


# Five completions: three with thinking on (two tool steps), then a new request with it off.
STEPS = [
    (
        True,
        {
            "reasoning_content": "I should read a.py first.",
            "content": "Reading.",
            "tool_calls": [call("read_file", path="a.py")],
        },
    ),
    (
        True,
        {
            "reasoning_content": "foo is used once; rename it.",
            "content": "",
            "tool_calls": [call("edit_file", path="a.py", old_text="foo", new_text="bar")],
        },
    ),
    (True, {"reasoning_content": "Done, summarise.", "content": "Renamed foo to bar."}),
    (
        False,
        {
            "reasoning_content": "",
            "content": "Looking.",
            "tool_calls": [
                call(
                    "outline",
                    path="a.py",
                ),
                call("search", pattern="bar", regex=False),
            ],
        },
    ),
    (False, {"reasoning_content": "", "content": "bar is defined in a.py."}),
]
TOOL_RESULTS = {
    0: ["def foo():\n    return 1\n"],
    1: ["edited 'a.py'"],
    3: ["function bar (lines 1-2)", "a.py:1: def bar():"],
}
USERS = {0: "Rename foo to bar", 3: "Where is bar defined?"}


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> MLXModel:
    return MLXModel(str(tiny_model_dir))


def conversation_prompts():
    """(thinking, prompt, expected completion text) per step, from the real GLM-4.7 render."""
    messages: list[dict] = [{"role": "system", "content": "You are a coding agent."}]
    for i, (thinking, reply) in enumerate(STEPS):
        if i in USERS:
            messages.append({"role": "user", "content": USERS[i]})
        yield (
            thinking,
            render_prompt(messages, TOOLS, enable_thinking=thinking),
            completion_text(reply),
        )
        messages.append({"role": "assistant", **reply})
        messages.extend({"role": "tool", "content": r} for r in TOOL_RESULTS.get(i, []))


def test_only_never_processed_tokens_are_prefilled(model: MLXModel, tmp_path: Path) -> None:
    steps = list(conversation_prompts())
    scripted = ScriptedReplies([text for _, _, text in steps])
    conv = model.conversation(state_dir=tmp_path, persist=True, scripted=scripted)
    processed = ""  # every token the model has seen so far, as text: prompts, completions, stops
    prompt_total = reused_total = 0
    for i, (_thinking, prompt, text) in enumerate(steps):
        pieces: list[str] = []
        completion = conv.complete(
            CompletionRequest(prompt=prompt), pieces.append, threading.Event()
        )
        s = completion.stats
        prompt_total, reused_total = prompt_total + s.promptTokens, reused_total + s.reusedTokens
        assert completion.text == text == "".join(pieces)
        if i == 0:
            assert (s.reusedTokens, s.prefilledTokens) == (0, len(model.encode(prompt)))
        else:
            assert prompt.startswith(processed)
            never_seen = len(model.encode(prompt[len(processed) :]))
            assert s.prefilledTokens == never_seen, f"completion {i + 1}"
            assert s.reusedTokens + s.prefilledTokens == s.promptTokens
        stop = "<|observation|>" if text.endswith("</tool_call>") else "<|user|>"
        processed = prompt + text + stop
        assert s.generatedTokens == len(model.encode(text)) + 1
    # the figure for the closing note (pytest -s): prompt tokens the KV cache saved from prefill
    print(
        f"\nprefill saved: {reused_total} of {prompt_total} prompt tokens over {len(steps)} completions"
    )
    conv.save()
    assert (tmp_path / "kv-cache.safetensors").stat().st_mode & 0o777 == 0o600

    # A new process loads the persisted cache and only prefills what it never processed.
    assert processed.endswith("<|user|>")  # the model handed back to the user
    follow_up = processed + "Thanks<|assistant|></think>"
    script = f"""
import json, sys, threading
from pathlib import Path
from glm_lsp.runtime.mlx import MLXModel
from glm_lsp.runtime.scripted import ScriptedReplies
from glm_lsp.runtime.base import CompletionRequest
m = MLXModel({str(model.path)!r})
conv = m.conversation(state_dir=Path({str(tmp_path)!r}), persist=True, scripted=ScriptedReplies(["You're welcome."]))
c = conv.complete(CompletionRequest(prompt={follow_up!r}), lambda t: None, threading.Event())
print(json.dumps(c.stats.to_dict()))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    assert stats["reusedTokens"] == len(conv.history)
    assert stats["prefilledTokens"] == len(model.encode("Thanks<|assistant|></think>"))
    assert stats["reusedTokens"] + stats["prefilledTokens"] == stats["promptTokens"]


def test_divergent_prompt_reuses_the_common_prefix(model: MLXModel) -> None:
    conv = model.conversation(scripted=ScriptedReplies(["one</think>A", "two</think>B"]))
    base = render_prompt([{"role": "user", "content": "first question here"}], TOOLS)
    conv.complete(CompletionRequest(prompt=base), lambda t: None, threading.Event())
    edited = render_prompt([{"role": "user", "content": "first question changed"}], TOOLS)
    c = conv.complete(CompletionRequest(prompt=edited), lambda t: None, threading.Event())
    common = len(
        model.encode(
            render_prompt(
                [{"role": "user", "content": "first question"}], TOOLS, add_generation_prompt=False
            )
        )
    )
    assert common - 2 <= c.stats.reusedTokens <= common + 1
    assert c.stats.reusedTokens + c.stats.prefilledTokens == c.stats.promptTokens
    assert conv.cache[0].offset == len(conv.history)


def test_cancel_keeps_cache_consistent_and_script_position(model: MLXModel) -> None:
    scripted = ScriptedReplies(["a long reply " * 20 + "</think>done", "short</think>ok"])
    conv = model.conversation(scripted=scripted)
    cancel = threading.Event()
    seen: list[str] = []

    def on_text(piece: str) -> None:
        seen.append(piece)
        if len(seen) == 5:
            cancel.set()

    prompt = render_prompt([{"role": "user", "content": "go"}], TOOLS)
    with pytest.raises(Cancelled):
        conv.complete(CompletionRequest(prompt=prompt), on_text, cancel)
    assert conv.cache[0].offset == len(conv.history)
    assert len(seen) == 5
    c = conv.complete(CompletionRequest(prompt=prompt), lambda t: None, threading.Event())
    assert c.text.startswith("a long reply")  # the cancelled reply is given again
    assert c.stats.reusedTokens == len(model.encode(prompt)) - 1  # the prompt stayed cached
    assert_history_holds(conv, prompt + c.text, c.stats.promptTokens + c.stats.generatedTokens)


def assert_history_holds(conv, text: str, tokens: int) -> None:
    """The token history still starts with the whole prompt and matches the cache."""
    assert conv.history.text.startswith(text)
    assert len(conv.history) == tokens == conv.cache[0].offset


def test_a_prompt_ending_on_the_history_keeps_it(model: MLXModel) -> None:
    # The same prompt again (a retry): every token but the last one comes from the cache, and
    # the history keeps the prompt, so the completion after it reuses everything again.
    conv = model.conversation(scripted=ScriptedReplies(["x</think>A", "y</think>B", "z</think>C"]))
    prompt = render_prompt([{"role": "user", "content": "same question"}], TOOLS)
    for _ in range(3):
        c = conv.complete(CompletionRequest(prompt=prompt), lambda t: None, threading.Event())
        assert c.stats.promptTokens == len(model.encode(prompt))
        assert_history_holds(conv, prompt + c.text, c.stats.promptTokens + c.stats.generatedTokens)
    assert c.stats.reusedTokens == c.stats.promptTokens - 1


def test_kv_bits_8_shrinks_the_cache(model: MLXModel) -> None:
    words = " ".join(f"symbol_{i} = compute({i}, value)" for i in range(400))
    prompt = render_prompt([{"role": "user", "content": words}], TOOLS)
    sizes = {}
    for bits in (None, 8):
        conv = model.conversation(kv_bits=bits, scripted=ScriptedReplies(["ok</think>fine"]))
        c = conv.complete(CompletionRequest(prompt=prompt), lambda t: None, threading.Event())
        assert c.text == "ok</think>fine"
        assert c.stats.promptTokens >= 2000
        sizes[bits] = conv.kv_bytes()
        # Unscripted generation works on the quantised cache too.
        conv.scripted = None
        free = conv.complete(
            CompletionRequest(prompt=prompt + "x", max_tokens=5), lambda t: None, threading.Event()
        )
        assert free.stats.generatedTokens >= 1
    print(f"\nkvBits=8 KV bytes: {sizes[8]} vs {sizes[None]} = {sizes[8] / sizes[None]:.3f}")
    assert sizes[8] <= 0.55 * sizes[None], sizes


def test_scripted_replies_exhausted_and_bad_files(model: MLXModel, tmp_path: Path) -> None:
    conv = model.conversation(scripted=ScriptedReplies([]))
    with pytest.raises(BackendError, match="scripted replies exhausted"):
        conv.complete(
            CompletionRequest(prompt="[gMASK]<sop><|user|>x<|assistant|>"),
            lambda t: None,
            threading.Event(),
        )
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a list"}')
    with pytest.raises(BackendError, match="must hold a JSON list of strings"):
        ScriptedReplies.load(bad)
    with pytest.raises(BackendError, match="does not exist"):
        ScriptedReplies.load(tmp_path / "missing.json")


def test_torn_or_foreign_kv_file_is_ignored_with_a_warning(
    model: MLXModel, tmp_path: Path, caplog
) -> None:
    (tmp_path / "kv-cache.safetensors").write_bytes(b"\x00garbage")
    conv = model.conversation(state_dir=tmp_path, scripted=ScriptedReplies(["x</think>y"]))
    c = conv.complete(
        CompletionRequest(prompt="[gMASK]<sop><|user|>hi<|assistant|><think>"),
        lambda t: None,
        threading.Event(),
    )
    assert c.stats.reusedTokens == 0
    assert any("ignoring KV cache" in r.message for r in caplog.records)
    conv.save()
    other = model.conversation(
        state_dir=tmp_path, kv_bits=8, scripted=ScriptedReplies(["x</think>y"])
    )
    c = other.complete(
        CompletionRequest(prompt="[gMASK]<sop><|user|>hi<|assistant|><think>"),
        lambda t: None,
        threading.Event(),
    )
    assert c.stats.reusedTokens == 0  # made with another kvBits: recomputed, not trusted


def test_forced_tokens_keep_the_model_in_the_graph() -> None:
    # MLX is lazy: if the forced choice did not depend on the logits, the decode forward passes
    # would never run while the reply streams, only later, charged to whatever evaluates the cache.
    import mlx.core as mx

    from glm_lsp.runtime.scripted import ForcedTokens

    logits = mx.array([[0.5, float("nan"), 2.0, -1.0]])
    grad = mx.grad(lambda x: ForcedTokens([2])(mx.array([0]), x)[0, 2])(logits)
    assert grad.tolist() == [[0.0, 0.0, 1.0, 0.0]]
    # Only the scripted token can be sampled, even where the model's logit is not a number.
    for token in (1, 3):
        out = ForcedTokens([token])(mx.array([0]), logits)
        assert mx.argmax(out, axis=-1).item() == token
        assert mx.isfinite(out).sum().item() == 1
