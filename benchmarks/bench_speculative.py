"""Speculative decoding (issue 17): decode tok/s through `glm-lsp run` with speculation on and off,
against raw mlx-lm `stream_generate` measured in the same rounds, and forward passes per token.

Run: python -m benchmarks.bench_speculative [--quick] [--rounds N] [--model tiny|larger]
       [--turns edit,write,prose]

Three scripted turns (design section 7) on a small workspace: (a) an edit that copies a 30-line
region it just read (read_file, edit_file, answer), (b) a write_file that rewrites a file it read
with two changes, (c) prose with nothing to copy. `glm-lsp run` runs in this process (cli.main:
argument parsing, Session, agent loop, stream parser, stderr streaming to a file), so that model
loading is not timed; its stats line is the figure. Scripted replies force the tokens, so with
speculation every draft that matches the script is accepted: that is what a model copying text
does. The raw mlx-lm anchor forces the same tokens with the same logits processor, so the ratios
compare like with like: what is left is glm-lsp's own cost per token. Rounds are interleaved (raw,
off, on, in a rotating order) and the medians of the per-round ratios are reported with their
spread.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx_lm import stream_generate
from mlx_lm.models.cache import make_prompt_cache, trim_prompt_cache
from mlx_lm.sample_utils import make_sampler

from benchmarks.common import MODEL_CACHE, progress
from glm_lsp.cli import main as cli_main
from glm_lsp.glm.format import completion_text
from glm_lsp.runtime import mlx as mlx_runtime
from glm_lsp.runtime.factory import mlx_model
from glm_lsp.runtime.mlx import CACHE_FILE
from glm_lsp.runtime.scripted import ForcedTokens
from glm_lsp.tiny_model import ensure_tiny_model

ROUNDS = 3
MODES = ("raw", "off", "on")
STATS_LINE = re.compile(r"turn \d+: .* (\d+) generated, ([\d.]+) tok/s")

PROSE = (
    "The pricing module keeps every rule about money in one place. Each function takes the items "
    "of one group and a rate, adds up price times quantity, and rounds the taxed sum to cents. "
    "Callers never touch the rate table directly; they ask for a group and get a float back. "
    "Rounding happens once, at the end, so a long basket does not drift by a cent per line. "
    "Nothing here does input or output, which keeps the functions cheap to test."
)


def _module(prefix: str, groups: int) -> str:
    lines = []
    for i in range(groups):
        lines += [
            f"def {prefix}{i}(s, r=0.{i + 1}):",
            f"    t = sum(x.p for x in s if x.g == {i})",
            "    return t * (1 + r)",
            "",
        ]
    return "\n".join(lines)


def _call(name: str, **args: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "arguments": args}}


def workloads() -> dict[str, dict[str, Any]]:
    """name -> files, kind, instruction, scripted replies."""
    pricing = _module("price", 10)  # 40 lines
    region = "\n".join(pricing.splitlines()[:30]) + "\n"
    cart = _module("cart", 6)
    rewritten = cart.replace("r=0.2", "r=0.25").replace("x.g == 4", "x.g in (4, 5)")
    reply = completion_text
    return {
        "edit": {
            "files": {"pricing.py": pricing},
            "kind": "refactor",
            "instruction": "Rename t to total in the first functions.",
            "replies": [
                reply(
                    {
                        "reasoning_content": "Read it first.",
                        "tool_calls": [_call("read_file", path="pricing.py")],
                    }
                ),
                reply(
                    {
                        "reasoning_content": "Rename it in lines 1-30.",
                        "tool_calls": [
                            _call(
                                "edit_file",
                                path="pricing.py",
                                old_text=region,
                                new_text=region.replace("    t = ", "    total = ").replace(
                                    " t * ", " total * "
                                ),
                            )
                        ],
                    }
                ),
                reply({"reasoning_content": "Done.", "content": "Renamed."}),
            ],
        },
        "write": {
            "files": {"cart.py": cart},
            "kind": "refactor",
            "instruction": "Raise the group 1 rate and count group 5 with group 4.",
            "replies": [
                reply(
                    {
                        "reasoning_content": "Read it first.",
                        "tool_calls": [_call("read_file", path="cart.py")],
                    }
                ),
                reply(
                    {
                        "reasoning_content": "Rewrite it with both changes.",
                        "tool_calls": [_call("write_file", path="cart.py", content=rewritten)],
                    }
                ),
                reply({"reasoning_content": "Done.", "content": "Both changed."}),
            ],
        },
        "prose": {
            "files": {"notes.txt": "pricing notes\n"},
            "kind": "explain",
            "instruction": "Explain how the pricing module is organised.",
            "replies": [reply({"content": PROSE})],
        },
    }


class Recorder:
    """Keeps each completion's prompt, stats and generated tokens: a wrapper around
    MLXConversation.complete."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, list[int]]] = []
        self._orig = mlx_runtime.MLXConversation.complete

    def __enter__(self) -> Recorder:
        orig, calls = self._orig, self.calls

        def complete(conv, request, on_text, cancel):  # type: ignore[no-untyped-def]
            completion = orig(conv, request, on_text, cancel)
            generated = conv.history.tokens[-completion.stats.generatedTokens :]
            calls.append((request.prompt, completion.stats, generated))
            return completion

        mlx_runtime.MLXConversation.complete = complete  # type: ignore[method-assign]
        return self

    def __exit__(self, *_exc: object) -> None:
        mlx_runtime.MLXConversation.complete = self._orig  # type: ignore[method-assign]


def glm_run(
    model_dir: Path, tmp: Path, name: str, work: dict[str, Any], spec: bool, seed: Path | None
) -> dict:
    """One `glm-lsp run` of the turn in a fresh conversation. `seed`: a KV cache file from an
    earlier run of the same turn, so the prompt is not prefilled again (the 512-wide model
    prefills at ~20 tokens/s on this CPU); decode, the measured part, is the same either way."""
    ws = tmp / f"ws-{name}"
    if not ws.exists():
        ws.mkdir(parents=True)
        for rel, text in work["files"].items():
            (ws / rel).write_text(text)
    replies = tmp / f"{name}.json"
    replies.write_text(json.dumps(work["replies"]))
    state = Path(tempfile.mkdtemp(prefix="state-", dir=tmp))  # a fresh conversation each run
    argv = ["run", str(ws), work["instruction"], "--kind", work["kind"], "--model", str(model_dir)]
    argv += ["--scripted-replies", str(replies), "--state-dir", str(state)]
    if seed is not None:
        shutil.copyfile(seed, state / CACHE_FILE)
    argv += ["--temperature", "0.7"]
    argv += ["--speculative-decoding" if spec else "--no-speculative-decoding"]
    err = tmp / "stderr.txt"
    with (
        Recorder() as rec,
        open(err, "w") as stderr,
        contextlib.redirect_stderr(stderr),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        code = cli_main(argv)
    text = err.read_text()
    match = STATS_LINE.search(text)
    if code != 0 or not match:
        raise RuntimeError(f"glm-lsp run failed ({code}): {text[-1500:]}")
    generated = int(match.group(1))
    accepted = sum(s.draftAcceptedTokens for _, s, _ in rec.calls)
    main = max(rec.calls, key=lambda c: c[1].generatedTokens)
    return {
        "tps": float(match.group(2)),
        "generated": generated,
        "drafted": sum(s.draftTokens for _, s, _ in rec.calls),
        "accepted": accepted,
        # Each completion: one pass per token it generated that was not an accepted draft, and one
        # over the last prompt token (plain decoding: generated + 1).
        "passes_per_token": (generated - accepted + len(rec.calls)) / generated,
        "main_prompt": main[0],
        "main_tokens": main[2],
        "cache": state / CACHE_FILE,
    }


class RawAnchor:
    """mlx-lm's own stream_generate on the turn's longest completion prompt, prefilled once into a
    prompt cache (as a raw mlx-lm user keeping one would), forcing the tokens glm-lsp generated
    there, its stop tokens disabled so it runs the full length. The figure is its generation_tps."""

    def __init__(self, model_dir: Path, prompt: str, forced: list[int]) -> None:
        self.m = mlx_model(str(model_dir))
        ids = self.m.encode(prompt)
        self.cache = make_prompt_cache(self.m.model)
        for start in range(0, len(ids) - 1, 2048):  # generate_step's prefill chunk
            self.m.model(
                mx.array(ids[start : min(start + 2048, len(ids) - 1)])[None], cache=self.cache
            )
            mx.eval([c.state for c in self.cache])
        self.last, self.base, self.forced = ids[-1], self.cache[0].offset, forced

    def tps(self) -> float:
        eos, self.m.tokenizer.eos_token_ids = self.m.tokenizer.eos_token_ids, set()
        try:
            responses = stream_generate(
                self.m.model,
                self.m.tokenizer,
                [self.last],
                max_tokens=len(self.forced),
                sampler=make_sampler(0.7, 1.0),
                logits_processors=[ForcedTokens(self.forced)],
                prompt_cache=self.cache,
            )
            return collections.deque(responses, maxlen=1)[0].generation_tps
        finally:
            self.m.tokenizer.eos_token_ids = eos
            trim_prompt_cache(self.cache, self.cache[0].offset - self.base)


def measure(
    model_dir: Path, rounds: int = ROUNDS, turns: list[str] | None = None
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="glm-lsp-bench-spec-"))
    out: dict[str, Any] = {}
    for name, work in workloads().items():
        if turns is not None and name not in turns:
            continue
        first = glm_run(model_dir, tmp, name, work, False, None)  # warm-up, raw prompt, cache
        seed, tokens = first["cache"], first["generated"]
        raw = RawAnchor(model_dir, first["main_prompt"], first["main_tokens"])
        raw.tps()
        # Passes per token as on hardware where a fed token is nearly free (Apple silicon): the
        # draft policy is told nothing of this CPU's costs for one run.
        model = mlx_model(str(model_dir))
        learnt, model.pass_cost = model.pass_cost, None
        blind = glm_run(model_dir, tmp, name, work, True, seed)
        model.pass_cost = learnt
        glm_run(model_dir, tmp, name, work, True, seed)
        rows: dict[str, list[Any]] = {mode: [] for mode in MODES}
        for r in range(rounds):
            order = MODES[r % 3 :] + MODES[: r % 3]  # rotate: no mode always runs first
            for mode in order:
                if mode == "raw":
                    rows[mode].append(raw.tps())
                else:
                    rows[mode].append(glm_run(model_dir, tmp, name, work, mode == "on", seed))
        raw_rates = rows["raw"]
        off = [x["tps"] for x in rows["off"]]
        on = [x["tps"] for x in rows["on"]]
        last_on, last_off = rows["on"][-1], rows["off"][-1]
        ratios = {
            "off_vs_raw": [o / r for o, r in zip(off, raw_rates, strict=True)],
            "on_vs_raw": [o / r for o, r in zip(on, raw_rates, strict=True)],
            "on_vs_off": [a / b for a, b in zip(on, off, strict=True)],
        }
        out[name] = {
            "generated": tokens,
            "raw_tps": round(statistics.median(raw_rates), 1),
            "off_tps": round(statistics.median(off), 1),
            "on_tps": round(statistics.median(on), 1),
            **{k: round(statistics.median(v), 3) for k, v in ratios.items()},
            **{f"{k}_range": [round(min(v), 3), round(max(v), 3)] for k, v in ratios.items()},
            "passes_per_token_off": round(last_off["passes_per_token"], 3),
            "passes_per_token_on": round(last_on["passes_per_token"], 3),
            "passes_per_token_free": round(blind["passes_per_token"], 3),
            "drafted_free": blind["drafted"],
            "accepted_free": blind["accepted"],
            "drafted": last_on["drafted"],
            "accepted": last_on["accepted"],
        }
        progress(f"speculative: {model_dir.name} {name}: {out[name]}")
    return out


def models() -> dict[str, Path]:
    return {
        "tiny (hidden 128, 2 layers)": ensure_tiny_model(MODEL_CACHE),
        "larger (hidden 512, 4 layers)": ensure_tiny_model(MODEL_CACHE, hidden=512, layers=4),
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    head = (
        "| model | turn | tokens | raw mlx-lm tok/s | glm-lsp run, off | on | off / raw (range) | "
        "on / raw (range) | on / off | passes/token off | on | drafts accepted | "
        "passes/token, fed tokens free | drafts accepted |"
    )
    lines = [head, "|" + "---|" * 14]
    for model, rows in results.items():
        for name, r in rows.items():
            lo, hi = r["on_vs_raw_range"]
            off_lo, off_hi = r["off_vs_raw_range"]
            lines.append(
                f"| {model} | {name} | {r['generated']} | {r['raw_tps']} | {r['off_tps']} | "
                f"{r['on_tps']} | {r['off_vs_raw']} ({off_lo}-{off_hi}) | "
                f"{r['on_vs_raw']} ({lo}-{hi}) | "
                f"{r['on_vs_off']} | {r['passes_per_token_off']} | {r['passes_per_token_on']} | "
                f"{r['accepted']}/{r['drafted']} | {r['passes_per_token_free']} | "
                f"{r['accepted_free']}/{r['drafted_free']} |"
            )
    return "\n".join(lines)


def run(
    rounds: int = ROUNDS, model: str | None = None, turns: list[str] | None = None
) -> dict[str, Any]:
    chosen = {k: v for k, v in models().items() if model is None or k.startswith(model)}
    return {label: measure(path, rounds, turns) for label, path in chosen.items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="speculative decoding through glm-lsp run")
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="interleaved rounds")
    parser.add_argument("--model", choices=["tiny", "larger"], help="one model only")
    parser.add_argument("--turns", help="comma-separated: edit,write,prose")
    args = parser.parse_args()
    t = time.perf_counter()
    turns = args.turns.split(",") if args.turns else None
    unknown = set(turns or ()) - set(workloads())
    if unknown:
        parser.error(f"--turns: unknown {', '.join(sorted(unknown))}; choose from edit,write,prose")
    results = run(1 if args.quick else args.rounds, args.model, turns)
    print(table(results))
    print(f"({time.perf_counter() - t:.0f} s)")
