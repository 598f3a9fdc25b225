"""Every benchmark of issue 7, each against its anchor in the same run: a table, JSON and a PNG.

Run: python -m benchmarks.run [--only KEY[,KEY]] [--quick]      (make bench)

Prints key | glm-lsp | anchor | target | PASS/MISS on stdout, one progress line per stage on
stderr, and writes benchmarks/results.json and benchmarks/results.png. --only runs the stages of
the given keys (or stage names) and merges them into an existing results.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import medium_model, progress, tiny_model

OUT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Metric:
    key: str
    stage: str
    unit: str
    anchor_label: str  # what the anchor is, for the chart
    target: str  # as the issue states it
    limit: float | None = None  # the line on the chart
    check: Callable[[float, float | None, dict], bool] | None = None  # None: reported only


def at_least(low: float) -> Callable[[float, float | None, dict], bool]:
    return lambda v, a, r: v >= low


METRICS = [
    Metric(
        "decode_ratio_tiny",
        "decode",
        "ratio",
        "raw mlx-lm",
        ">= 0.95",
        0.95,
        lambda v, a, r: v >= 0.95,
    ),
    Metric(
        "decode_ratio_medium",
        "decode",
        "ratio",
        "raw mlx-lm",
        ">= 0.95",
        0.95,
        lambda v, a, r: v >= 0.95,
    ),
    Metric(
        "wasted_prefill_glm",
        "wasted_prefill",
        "tokens",
        "mlx_lm.server",
        "0 (<= 2/completion)",
        None,
        lambda v, a, r: r["glm_max_wasted_per_completion"] <= 2,
    ),
    Metric(
        "restart_prefill_fraction",
        "restart",
        "prefilled / prompt",
        "mlx_lm.server",
        "<= 0.10",
        0.10,
        lambda v, a, r: v <= 0.10,
    ),
    Metric(
        "ttft_followup_ms",
        "ttft",
        "ms",
        "mlx_lm.server",
        "< anchor",
        None,
        lambda v, a, r: a is not None and v < a,
    ),
    Metric("lsp_latency_p50_ms", "lsp_latency", "ms", "idle server", "(report)"),
    Metric(
        "lsp_latency_p99_ms",
        "lsp_latency",
        "ms",
        "idle server",
        "<= 20 ms",
        20,
        lambda v, a, r: v <= 20,
    ),
    Metric("index_10k_s", "index", "s", "", "<= 10 s", 10, lambda v, a, r: v <= 10),
    Metric("index_10k_rss_mb", "index", "MB", "", "<= 300 MB", 300, lambda v, a, r: v <= 300),
    Metric("watch_latency_p95_ms", "index", "ms", "", "<= 300 ms", 300, lambda v, a, r: v <= 300),
    Metric(
        "kv8_bytes_ratio", "kv8", "ratio", "unquantised", "<= 0.55", 0.55, lambda v, a, r: v <= 0.55
    ),
    Metric("kv8_decode_ratio", "kv8", "ratio", "unquantised", "(report)"),
    Metric("shadow_create_10k_ms", "shadow", "ms", "", "(report)"),
    Metric("shadow_sync_edit_ms", "shadow", "ms", "", "(report)"),
    Metric(
        "shadow_refresh_ms",
        "shadow",
        "ms",
        "no watcher (stat all)",
        "< 50 ms",
        50,
        lambda v, a, r: v < 50,
    ),
    Metric("sandbox_true_ms", "shadow", "ms", "plain true", "(report)"),
    # the 512-wide 4-layer model through `glm-lsp run`; tok/s ratios on this CPU, where a batch
    # costs per token: passes per token is the figure for memory-bound hardware
    *(
        Metric(key, "speculative", "ratio", "raw mlx-lm", f">= {low}", low, at_least(low))
        for key, low in (
            ("spec_edit_ratio", 1.8),
            ("spec_write_ratio", 1.8),
            ("spec_prose_ratio", 0.97),
            ("nospec_prose_ratio", 0.97),
        )
    ),
    Metric("spec_edit_passes_per_token", "speculative", "passes/token", "off", "(report)"),
    Metric("spec_write_passes_per_token", "speculative", "passes/token", "off", "(report)"),
    # issue 26: the per-user host
    Metric("host_second_ttft_s", "host", "s", "own model load (--no-host)", "< anchor",
           None, lambda v, a, r: a is not None and v < a),
    Metric("host_attach_ms", "host", "ms", "", "< 1000 ms", 1000, lambda v, a, r: v < 1000),
    Metric("host_decode_ratio", "host", "ratio", "in-process", ">= 0.97", 0.97, at_least(0.97)),
    Metric("host_restart_prefill_fraction", "host", "prefilled / prompt", "mlx_lm.server",
           "<= 0.10", 0.10, lambda v, a, r: v <= 0.10),
]  # fmt: skip
# results.json keys that are anchors of another row (the issue names them as keys too)
ANCHOR_KEYS = {"wasted_prefill_glm": "wasted_prefill_mlx_server"}


class Context:
    """Shared between stages: the tiny model in memory and the scripted session (built once)."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.tmp = Path(tempfile.mkdtemp(prefix="glm-lsp-bench-"))
        self._session = None

    def session(self):
        if self._session is None:
            from benchmarks.scripted_session import run_session
            from glm_lsp.runtime.mlx import MLXModel

            progress("scripted session: 8 requests x 3 tool steps through glm-lsp (tiny model)")
            self._session = run_session(self.tmp, MLXModel(str(tiny_model())))
        return self._session

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


Result = tuple[dict[str, float], dict[str, float], dict[str, Any]]  # values, anchors, raw


def stage_decode(ctx: Context) -> Result:
    from benchmarks import bench_decode

    if ctx.quick:
        bench_decode.ROUNDS = 1
    progress("decode: tiny model, raw mlx-lm vs glm-lsp, interleaved")
    tiny = bench_decode.measure(tiny_model())
    progress(f"decode: tiny {tiny}; medium model (8-bit MoE, hidden 1024, 8 layers)")
    medium = bench_decode.measure(medium_model())
    values = {"decode_ratio_tiny": tiny["ratio"], "decode_ratio_medium": medium["ratio"]}
    return values, dict.fromkeys(values, 1.0), {"tiny": tiny, "medium": medium}


def stage_wasted(ctx: Context) -> Result:
    from benchmarks import bench_prefill

    r = bench_prefill.measure(ctx.session())
    anchor = r["wasted_prefill_mlx_server"]
    values = {"wasted_prefill_glm": r["wasted_prefill_glm"], "wasted_prefill_mlx_server": anchor}
    return values, {"wasted_prefill_glm": anchor}, r["raw"]


def stage_restart(ctx: Context) -> Result:
    from benchmarks import bench_restart

    r = bench_restart.measure(ctx.session())
    key = "restart_prefill_fraction"
    return {key: r[key]}, {key: r["anchor"]}, r["raw"]


def stage_ttft(ctx: Context) -> Result:
    from benchmarks import bench_ttft

    r = bench_ttft.measure(rounds=2 if ctx.quick else 4)
    return {"ttft_followup_ms": r["ttft_followup_ms"]}, {"ttft_followup_ms": r["anchor"]}, r["raw"]


def stage_lsp(ctx: Context) -> Result:
    from benchmarks import bench_lsp

    r = bench_lsp.measure(samples=40 if ctx.quick else 150)
    values = {k: r[k] for k in ("lsp_latency_p50_ms", "lsp_latency_p99_ms")}
    anchors = {"lsp_latency_p50_ms": r["anchor_p50"], "lsp_latency_p99_ms": r["anchor_p99"]}
    return values, anchors, r["raw"]


def stage_index(ctx: Context) -> Result:
    from benchmarks import bench_index

    if ctx.quick:
        bench_index.N_CHANGES = 30
    progress("index: 10k-file tree, index in a fresh process, watcher latency")
    r = bench_index.run()
    keys = ("index_10k_s", "index_10k_rss_mb", "watch_latency_p95_ms")
    return {k: r[k] for k in keys}, {}, r


def stage_kv8(ctx: Context) -> Result:
    from benchmarks import bench_kv8

    r = bench_kv8.measure(rounds=1 if ctx.quick else 3)
    values = {k: r[k] for k in ("kv8_bytes_ratio", "kv8_decode_ratio")}
    return values, dict.fromkeys(values, 1.0), r["raw"]


def stage_shadow(ctx: Context) -> Result:
    from benchmarks import bench_shadow

    if ctx.quick:
        bench_shadow.RUNS = 5
    progress("shadow: 10k-file tree, shadow workspace refresh and sync, bwrap overhead")
    r = bench_shadow.run()
    values = {
        "shadow_create_10k_ms": r["create_ms"],
        "shadow_sync_edit_ms": r["sync_one_edit_ms_median"],
        "shadow_refresh_ms": r["refresh_no_change_ms_median"],
    }
    anchors = {"shadow_refresh_ms": r["refresh_no_change_unwatched_ms_median"]}
    if r["sandboxed_true_ms_median"] is not None:
        values["sandbox_true_ms"] = r["sandboxed_true_ms_median"]
        anchors["sandbox_true_ms"] = r["plain_true_ms_median"]
    return values, anchors, r


def stage_speculative(ctx: Context) -> Result:
    from benchmarks import bench_speculative

    progress("speculative: glm-lsp run, speculation on/off vs raw mlx-lm, interleaved")
    r = bench_speculative.run(1 if ctx.quick else bench_speculative.ROUNDS)
    print(bench_speculative.table(r))
    larger = r["larger (hidden 512, 4 layers)"]
    values = {
        "spec_edit_ratio": larger["edit"]["on_vs_raw"],
        "spec_write_ratio": larger["write"]["on_vs_raw"],
        "spec_prose_ratio": larger["prose"]["on_vs_raw"],
        "nospec_prose_ratio": larger["prose"]["off_vs_raw"],
        # as on hardware where a fed token is nearly free: the draft policy told no CPU costs
        "spec_edit_passes_per_token": larger["edit"]["passes_per_token_free"],
        "spec_write_passes_per_token": larger["write"]["passes_per_token_free"],
    }
    anchors = {k: 1.0 for k in values if "ratio" in k}
    anchors |= {
        "spec_edit_passes_per_token": larger["edit"]["passes_per_token_off"],
        "spec_write_passes_per_token": larger["write"]["passes_per_token_off"],
    }
    return values, anchors, r


def stage_host(ctx: Context) -> Result:
    from benchmarks import bench_host

    r = bench_host.measure(rounds=3 if ctx.quick else 5)
    values = {k: r[k] for k in ("host_second_ttft_s", "host_attach_ms", "host_decode_ratio")}
    values["host_restart_prefill_fraction"] = r["host_restart_prefill_fraction"]
    anchors = {
        "host_second_ttft_s": r["own_load_ttft_s"],
        "host_decode_ratio": 1.0,
        "host_restart_prefill_fraction": r["mlx_server_restart_prefill_fraction"],
    }
    return values, anchors, r


# Cheap, token-count stages first; the session is shared by wasted_prefill and restart.
STAGES: dict[str, Callable[[Context], Result]] = {
    "wasted_prefill": stage_wasted,
    "restart": stage_restart,
    "lsp_latency": stage_lsp,
    "index": stage_index,
    "shadow": stage_shadow,
    "decode": stage_decode,
    "kv8": stage_kv8,
    "ttft": stage_ttft,
    "speculative": stage_speculative,
    "host": stage_host,
}


def select(only: str | None) -> list[str]:
    if not only:
        return list(STAGES)
    by_key = {m.key: m.stage for m in METRICS} | {v: "wasted_prefill" for v in ANCHOR_KEYS.values()}
    wanted = set()
    for item in (s.strip() for s in only.split(",") if s.strip()):
        if item in STAGES:
            wanted.add(item)
        elif item in by_key:
            wanted.add(by_key[item])
        else:
            raise SystemExit(f"--only: unknown key {item!r}; keys: {', '.join(by_key)}")
    return [s for s in STAGES if s in wanted]


def verdict(m: Metric, results: dict[str, Any]) -> str:
    value = results.get(m.key)
    if not isinstance(value, (int, float)):
        return "ERROR" if m.stage in results.get("errors", {}) else "-"
    if m.check is None:
        return "report"
    raw = results["raw"].get(m.stage, {})
    return "PASS" if m.check(value, results["anchors"].get(m.key), raw) else "MISS"


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def table(results: dict[str, Any]) -> str:
    rows = [("key", "glm-lsp", "anchor", "target", "result")]
    for m in METRICS:
        if m.key not in results and m.stage not in results.get("errors", {}):
            continue
        anchor = results["anchors"].get(m.key)
        anchor_text = f"{fmt(anchor)} ({m.anchor_label})" if anchor is not None else "-"
        value = fmt(results.get(m.key))
        if m.key == "restart_prefill_fraction" and "restart" in results["raw"]:
            value += f" (off: {results['raw']['restart']['persist_off']['fraction']})"
        rows.append((m.key, value, anchor_text, m.target, results["verdicts"].get(m.key, "-")))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def panels(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for m in METRICS:
        if not isinstance(results.get(m.key), (int, float)):
            continue
        bars = [("glm-lsp", results[m.key])]
        if m.key in results["anchors"]:
            bars.append((m.anchor_label, results["anchors"][m.key]))
        if m.key == "restart_prefill_fraction":
            bars.append(
                ("glm-lsp, persist off", results["raw"]["restart"]["persist_off"]["fraction"])
            )
        out.append(
            {
                "key": m.key,
                "bars": bars,
                "target": m.limit,
                "unit": m.unit,
                "verdict": results["verdicts"][m.key],
            }
        )
    return out


def git_state() -> dict[str, Any]:
    """Which code was measured: the commit, and files that differed from it in the working tree."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=OUT)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=OUT,
        )
    except OSError:
        return {}
    return {"commit": head.stdout.strip(), "modified": dirty.stdout.split("\n")[:-1]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--only", help="comma-separated keys (or stage names) to run")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and samples")
    args = parser.parse_args(argv)
    stages = select(args.only)
    json_path, png_path = OUT / "results.json", OUT / "results.png"
    results: dict[str, Any] = {"anchors": {}, "raw": {}, "errors": {}, "stages": {}}
    if args.only and json_path.exists():  # a partial run updates the last full results
        results |= json.loads(json_path.read_text())
        results.setdefault("stages", {})
    ctx = Context(args.quick)
    started = time.monotonic()
    try:
        for name in stages:
            progress(f"stage {name}: start")
            t = time.monotonic()
            try:
                with contextlib.redirect_stdout(sys.stderr):  # module tables go with the progress
                    values, anchors, raw = STAGES[name](ctx)
            except Exception as exc:
                traceback.print_exc()
                results["errors"][name] = f"{type(exc).__name__}: {exc}"
                progress(f"stage {name}: FAILED ({exc})")
                continue
            results["errors"].pop(name, None)
            results |= values
            results["anchors"] |= anchors
            results["raw"][name] = raw
            results["stages"][name] = {
                "seconds": round(time.monotonic() - t, 1),
                "finished": datetime.datetime.now().isoformat(timespec="seconds"),
                "quick": args.quick,
            }
            progress(f"stage {name}: done in {time.monotonic() - t:.0f} s: {values}")
    finally:
        ctx.close()
    results["verdicts"] = {m.key: verdict(m, results) for m in METRICS}
    results["targets"] = {m.key: m.target for m in METRICS}
    results["run"] = {
        "command": "python -m benchmarks.run"
        + (f" --only {args.only}" if args.only else "")
        + (" --quick" if args.quick else ""),
        "seconds": round(time.monotonic() - started, 1),
        "machine": f"{platform.machine()} {platform.system()}, {platform.python_version()}",
        "cpus": os.cpu_count(),
        **git_state(),
    }
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    from benchmarks.chart import draw

    draw(panels(results), png_path, "glm-lsp vs anchors (same machine, same run)")
    print(table(results))
    print(f"\nwrote {json_path.relative_to(OUT.parent)} and {png_path.relative_to(OUT.parent)}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
