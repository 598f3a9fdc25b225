"""Speculative decoding (issue 17): exactly the plain decoder's output, with drafts in play."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import mlx.core as mx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlx_lm.generate import generate_step
from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache
from mlx_lm.sample_utils import apply_top_p, make_sampler

from glm_lsp.runtime.base import Cancelled, CompletionRequest
from glm_lsp.runtime.draft_policy import DraftPolicy, PassCost
from glm_lsp.runtime.lookup import NgramIndex
from glm_lsp.runtime.mlx import MLXModel
from glm_lsp.runtime.scripted import ScriptedReplies
from glm_lsp.runtime.speculative import DraftStats, speculative_generate_step

WORDS = ["def", " foo", "(x)", ":", "\n", "    return", " x", " +", " 1", " bar", " the", " cache"]
CODE = "".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(12))


@pytest.fixture(scope="module")
def model(proportional_tiny_model_dir: Path) -> MLXModel:
    """Draft acceptance counts depend on the random model's loops: these were set on this one."""
    return MLXModel(str(proportional_tiny_model_dir))


@contextlib.contextmanager
def pass_cost(model: MLXModel, cost: PassCost | None) -> Iterator[None]:
    """What the draft policy is told a pass costs: None as if fed tokens were free (memory-bound
    hardware), so tests of drafting do not depend on this machine's timings."""
    learnt, model.pass_cost = model.pass_cost, cost
    try:
        yield
    finally:
        model.pass_cost = learnt


def wrap(text: str) -> str:
    return f"[gMASK]<sop><|user|>{text}<|assistant|>"


def run(conv, prompt: str, max_tokens: int, temperature: float = 0.0):
    pieces: list[str] = []
    c = conv.complete(
        CompletionRequest(prompt=prompt, max_tokens=max_tokens, temperature=temperature),
        pieces.append,
        threading.Event(),
    )
    assert "".join(pieces) == c.text  # streamed in order, nothing lost or repeated
    assert conv.cache[0].offset == len(conv.history)
    return c


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=40),
    follow=st.lists(st.sampled_from(WORDS), min_size=1, max_size=10),
    lengths=st.tuples(st.integers(1, 60), st.integers(1, 60)),
    kv_bits=st.sampled_from([None, 8]),
    draft_tokens=st.integers(1, 10),
)
def test_greedy_output_is_token_for_token_the_plain_one(
    model: MLXModel,
    words: list[str],
    follow: list[str],
    lengths: tuple[int, int],
    kv_bits: int | None,
    draft_tokens: int,
) -> None:
    plain = model.conversation(kv_bits=kv_bits, speculative=False)
    spec = model.conversation(kv_bits=kv_bits, speculative=True, draft_tokens=draft_tokens)
    prompt = wrap("".join(words))
    for max_tokens in lengths:  # two completions: the second continues the first one's cache
        a, b = run(plain, prompt, max_tokens), run(spec, prompt, max_tokens)
        assert (b.text, b.finish_reason) == (a.text, a.finish_reason)
        assert b.stats.generatedTokens == a.stats.generatedTokens
        assert spec.history.tokens == plain.history.tokens
        prompt = prompt + a.text + "<|user|>" + "".join(follow) + "<|assistant|>"


@pytest.mark.parametrize("kv_bits", [None, 8, 4])
def test_drafts_are_accepted_on_a_copy_and_the_output_stays_exact(
    model: MLXModel, kv_bits: int | None
) -> None:
    # The random model loops; a loop is a copy of itself, so lookup drafts land.
    prompt = wrap("Copy this:\n" + CODE)
    a = run(model.conversation(kv_bits=kv_bits, speculative=False), prompt, 160)
    spec = model.conversation(kv_bits=kv_bits)  # on by default
    with pass_cost(model, None):
        b = run(spec, prompt, 160)
    assert b.text == a.text
    assert b.stats.draftAcceptedTokens > 20
    assert b.stats.draftTokens >= b.stats.draftAcceptedTokens


def test_scripted_replies_are_exact_and_copies_are_drafted(model: MLXModel) -> None:
    reply = (
        "<think>Copy it.</think>Here it is:\n" + CODE.replace("x + 3", "x + 33") + "</tool_call>"
    )
    replies = [reply, "fine</think>done"]
    conv = model.conversation(scripted=ScriptedReplies(replies))
    prompt = wrap("Rewrite this with one change:\n" + CODE)
    with pass_cost(model, None):
        c = run(conv, prompt, 4096)
    assert c.text == reply
    assert c.stats.generatedTokens == len(model.encode(reply)) + 1
    # Forced tokens accept every draft that matches the script, as a model copying text does.
    assert c.stats.draftAcceptedTokens >= len(model.encode(CODE)) // 2
    c2 = run(conv, prompt + reply + "<|observation|>ok<|assistant|>", 4096)
    assert c2.text == "fine</think>done"


def test_cancel_mid_draft_leaves_history_and_cache_consistent(model: MLXModel) -> None:
    reply = "Copy:\n" + CODE + "</think>end"
    conv = model.conversation(scripted=ScriptedReplies([reply, reply]))
    prompt = wrap("Copy this:\n" + CODE)
    cancel = threading.Event()
    seen: list[str] = []

    def on_text(piece: str) -> None:
        seen.append(piece)
        if len(seen) == 40:  # well inside the copy, where rounds accept several tokens
            cancel.set()

    with pytest.raises(Cancelled):
        conv.complete(CompletionRequest(prompt=prompt), on_text, cancel)
    assert len(seen) == 40
    assert conv.cache[0].offset == len(conv.history)
    assert conv.history.text == prompt  # the prompt stays; no part of the reply does
    c = run(conv, prompt, 4096)  # the cancelled reply is given again, whole
    assert c.text == reply
    assert c.stats.reusedTokens == len(model.encode(prompt)) - 1
    assert c.stats.draftAcceptedTokens > 0
    assert conv.history.text == prompt + reply + "<|user|>"


def test_persisted_cache_after_speculation_reloads_and_continues_exactly(
    model: MLXModel, tmp_path: Path
) -> None:
    first = wrap("Copy this:\n" + CODE)
    spec = model.conversation(state_dir=tmp_path, persist=True)
    a = run(spec, first, 120)
    spec.save()
    second = first + a.text + "<|user|>again<|assistant|>"
    reloaded = model.conversation(state_dir=tmp_path, persist=True)
    b = run(reloaded, second, 120)
    assert b.stats.reusedTokens == len(spec.history)  # nothing recomputed
    plain = model.conversation(speculative=False)
    run(plain, first, 120)
    expected = run(plain, second, 120)
    assert b.text == expected.text
    assert reloaded.history.tokens == plain.history.tokens


class Restrict:
    """Leaves a few tokens, flattened so that every one of them is likely (a measurable law)."""

    def __init__(self, allowed: list[int]) -> None:
        self.allowed = mx.array(allowed)

    def __call__(self, _history: mx.array, logits: mx.array) -> mx.array:
        keep = (mx.arange(logits.shape[-1])[:, None] == self.allowed[None]).any(axis=-1)
        return mx.where(keep, logits * 0.2, -mx.inf)


# chi-square critical values at p = 0.001, by degrees of freedom
CHI2_999 = {3: 16.27, 4: 18.47, 5: 20.52, 6: 22.46, 7: 24.32, 8: 26.12, 9: 27.88, 10: 29.59,
            11: 31.26, 12: 32.91, 13: 34.53, 14: 36.12, 15: 37.70}  # fmt: skip


def test_sampled_output_follows_the_plain_distribution(model: MLXModel) -> None:
    allowed = list(dict.fromkeys(model.encode(CODE)))[:4]
    prompt = allowed * 6 + allowed[:2]  # so the drafts are allowed[2], allowed[3], ...
    restrict, temp, top_p, n_tokens = Restrict(allowed), 0.7, 0.9, 2
    cache = make_prompt_cache(model.model)
    model.model(mx.array(prompt[:-1])[None], cache=cache)
    base = cache[0].offset

    def law(context: list[int]) -> dict[int, float]:
        """The plain decoder's next-token law after `context`, processed as the sampler sees it."""
        logits = model.model(mx.array(context)[None], cache=cache)[:, -1, :]
        trim_prompt_cache(cache, len(context))
        logprobs = restrict(mx.array(prompt), logits)
        logprobs = logprobs - mx.logsumexp(logprobs, keepdims=True)
        if top_p < 1.0:
            logprobs = apply_top_p(logprobs, top_p)
            logprobs = logprobs - mx.logsumexp(logprobs, keepdims=True)
        probs = mx.exp(logprobs / temp)[0]
        probs = probs / probs.sum()
        return {t: probs[t].item() for t in allowed}

    expected: dict[tuple[int, ...], float] = {}
    for t1, p1 in law([prompt[-1]]).items():
        for t2, p2 in law([prompt[-1], t1]).items():
            expected[(t1, t2)] = p1 * p2

    mx.random.seed(1234)
    samples, stats = 600, DraftStats()
    counts = dict.fromkeys(expected, 0)
    for _ in range(samples):
        index = NgramIndex()
        index.extend(prompt)
        out = list(
            speculative_generate_step(
                prompt[-1:],
                model.model,
                cache,
                index=index,
                policy=DraftPolicy(8),
                max_tokens=n_tokens,
                sampler=make_sampler(temp, top_p),
                logits_processors=[restrict],
                stats=stats,
            )
        )
        trim_prompt_cache(cache, cache[0].offset - base)
        counts[tuple(out)] += 1
    assert stats.accepted > 0  # drafts won...
    assert stats.proposed > stats.accepted  # ...and lost
    # Pool the cells too rare for the chi-square approximation.
    cells, rare_e, rare_o = [], 0.0, 0
    for key, p in expected.items():
        if p * samples >= 5:
            cells.append((counts[key], p * samples))
        else:
            rare_e, rare_o = rare_e + p * samples, rare_o + counts[key]
    if rare_e > 0:
        cells.append((rare_o, rare_e))
    statistic = sum((o - e) ** 2 / e for o, e in cells)
    assert len(cells) - 1 >= 3
    assert statistic < CHI2_999[len(cells) - 1], (statistic, cells)


def test_plain_generate_step_agrees_with_the_law_used_above(model: MLXModel) -> None:
    # The chi-square test's exact law is computed by hand; check its convention (processors see
    # the prompt, sampling is on log-probabilities) against mlx-lm's own greedy step.
    allowed = list(dict.fromkeys(model.encode(CODE)))[:4]
    prompt = allowed * 2
    restrict = Restrict(allowed)
    token, _ = next(
        generate_step(mx.array(prompt), model.model, logits_processors=[restrict], max_tokens=1)
    )
    logits = model.model(mx.array(prompt)[None])[:, -1, :]
    assert token == mx.argmax(restrict(mx.array(prompt), logits), axis=-1).item()


def test_settings_reach_the_conversation_and_change_in_place(
    model: MLXModel, proportional_tiny_model_dir: Path, tmp_path: Path
) -> None:
    from glm_lsp import runtime
    from glm_lsp.cli import build_parser, settings_from
    from glm_lsp.config import Settings, SettingsError
    from glm_lsp.runtime.factory import make_backend, retune

    assert (Settings().speculativeDecoding, Settings().draftTokens) == (True, 8)
    args = build_parser().parse_args(
        ["run", "ws", "x", "--no-speculative-decoding", "--draft-tokens", "3"]
    )
    s = settings_from(args)
    assert (s.speculativeDecoding, s.draftTokens) == (False, 3)
    for bad in ({"draftTokens": 0}, {"draftTokens": True}, {"speculativeDecoding": "yes"}):
        with pytest.raises(SettingsError):
            Settings().merged(bad)
    runtime.factory._models[str(proportional_tiny_model_dir)] = model
    conv = make_backend(s.merged({"model": str(proportional_tiny_model_dir)}), tmp_path)
    assert (conv.speculative, conv.draft_tokens) == (False, 3)
    retune(conv, Settings())
    assert (conv.speculative, conv.draft_tokens) == (True, 8)


def test_stats_sum_the_draft_counts() -> None:
    from glm_lsp.runtime.base import Stats

    total = Stats(generatedTokens=10, draftTokens=8, draftAcceptedTokens=5)
    total.add(Stats(generatedTokens=4, draftTokens=3, draftAcceptedTokens=1))
    assert (total.draftTokens, total.draftAcceptedTokens) == (11, 6)
    assert "draftAcceptedTokens" in total.to_dict()


def test_glm_lsp_run_is_exact_with_and_without_speculation(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import json
    import os
    import subprocess
    import sys

    from glm_lsp.glm.parse import tool_call_text

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "m.py").write_text(CODE)
    replies = [
        "Read it.</think>" + tool_call_text("read_file", {"path": "m.py"}),
        "Rewrite it.</think>"
        + tool_call_text("write_file", {"path": "m.py", "content": CODE.replace("x + 5", "x - 5")}),
        "Done.</think>Changed f5.",
    ]
    (tmp_path / "r.json").write_text(json.dumps(replies))
    outputs = {}
    for flag in ("--speculative-decoding", "--no-speculative-decoding"):
        state = tmp_path / f"state{flag}"
        cmd = [sys.executable, "-m", "glm_lsp.cli", "run", str(ws), "Change f5", flag]
        cmd += ["--model", str(tiny_model_dir), "--scripted-replies", str(tmp_path / "r.json")]
        cmd += ["--state-dir", str(state)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        assert out.returncode == 0, out.stderr
        outputs[flag] = out
    on, off = outputs["--speculative-decoding"], outputs["--no-speculative-decoding"]
    assert on.stdout == off.stdout
    assert "-    return x + 5\n+    return x - 5\n" in on.stdout
    assert "drafts " in on.stderr  # the stats line shows the acceptance
    assert "drafts " not in off.stderr


def test_the_draft_length_follows_what_a_pass_costs(model: MLXModel) -> None:
    replies = ["<think>Copy it.</think>" + CODE + "</tool_call>"] * 2
    prompt = wrap("Copy this:\n" + CODE)
    linear = PassCost()
    for fed in range(1, 10):
        linear.observe(fed, 0.01 * fed)  # every fed token costs a whole pass
    with pass_cost(model, linear):
        dear = run(model.conversation(scripted=ScriptedReplies(replies)), prompt, 4096)
    with pass_cost(model, None):
        free = run(model.conversation(scripted=ScriptedReplies(replies)), prompt, 4096)
    assert dear.text == free.text
    # Where feeding costs nothing every copy is drafted in long runs; where each token costs a
    # pass, only runs sure to land are (the gain must be 10%), so far fewer tokens are drafted.
    assert free.stats.draftAcceptedTokens >= len(model.encode(CODE)) // 2
    assert dear.stats.draftTokens < free.stats.draftTokens
    timed = PassCost()
    with pass_cost(model, timed):
        run(model.conversation(scripted=ScriptedReplies(replies)), prompt, 4096)
    assert 1 in timed.times and max(timed.times) > 1  # the real rounds were timed, by size
