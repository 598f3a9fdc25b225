"""`glm-lsp doctor --distributed`: how a model spreads over some Macs, before anything is loaded.

Reads the model's config.json (a local directory or file, the Hugging Face cache, or the figures
built in for GLM-4.7 8-bit GS32), never downloads weights, and splits as mlx-lm does: pipeline
gives each rank a run of layers (rank 0 the last ones; every rank keeps the embeddings and the
head), tensor gives each rank 1/N of every layer's matrices (embeddings, head and routers whole).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glm_lsp.config import Settings
from glm_lsp.errors import EXIT_OK, UsageError

GB = 1e9
# GLM-4.7's published config (zai-org/GLM-4.7) and its 8-bit GS32 size from the seed table.
KNOWN: dict[str, tuple[dict[str, Any], float]] = {
    "mlx-community/GLM-4.7-8bit-gs32": (
        {
            "model_type": "glm4_moe",
            "hidden_size": 5120,
            "num_hidden_layers": 92,
            "num_attention_heads": 96,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "intermediate_size": 12288,
            "moe_intermediate_size": 1536,
            "n_routed_experts": 160,
            "n_shared_experts": 1,
            "num_experts_per_tok": 8,
            "first_k_dense_replace": 3,
            "vocab_size": 151552,
            "quantization": {"bits": 8, "group_size": 32},
        },
        397e9,
    )
}


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("distributed plan (doctor --distributed)")
    group.add_argument(
        "--distributed",
        choices=("pipeline", "tensor"),
        default=None,
        help="print how --model spreads over the hosts instead of checking this machine",
    )
    group.add_argument("--hosts", help="comma-separated hosts (IPs for the ring backend)")
    group.add_argument("--ranks", type=int, help="number of hosts, when not naming them")
    group.add_argument(
        "--memory-per-host", type=float, metavar="GB", help="memory of each host in GB"
    )
    group.add_argument(
        "--model-config", metavar="PATH", help="a config.json (or its directory) to plan with"
    )


@dataclass
class Shape:
    config: dict[str, Any]
    weight_bytes: float
    source: str

    def get(self, key: str, default: int = 0) -> int:
        value = self.config.get(key)
        return int(value) if value is not None else default


def _params(s: Shape) -> tuple[float, list[float], float, float]:
    """(embeddings + head, per-layer shardable params, per-layer router params, total)."""
    hidden, heads, kv = (
        s.get("hidden_size"),
        s.get("num_attention_heads"),
        s.get("num_key_value_heads"),
    )
    head_dim = s.get("head_dim") or hidden // max(heads, 1)
    attention = hidden * head_dim * (2 * heads + 2 * kv)
    dense = 3 * hidden * s.get("intermediate_size")
    experts = s.get("n_routed_experts") + s.get("n_shared_experts")
    moe = 3 * hidden * s.get("moe_intermediate_size") * experts
    first_dense = s.get("first_k_dense_replace")
    layers = [
        attention + (dense if i < first_dense or experts == 0 else moe)
        for i in range(s.get("num_hidden_layers"))
    ]
    router = hidden * s.get("n_routed_experts")
    ends = 2 * s.get("vocab_size") * hidden
    return ends, layers, router, ends + sum(layers) + router * len(layers)


def _load_shape(model: str, config_path: str | None) -> Shape:
    if config_path:
        path = Path(config_path).expanduser()
        path = path / "config.json" if path.is_dir() else path
        if not path.is_file():
            raise UsageError(f"--model-config {config_path}: no config.json there")
        config = json.loads(path.read_text())
        weights = sum(f.stat().st_size for f in path.parent.glob("*.safetensors"))
        return Shape(config, float(weights), str(path))
    if model in KNOWN:
        config, size = KNOWN[model]
        return Shape(config, size, "built-in figures: GLM-4.7's config, 397 GB from the seed table")
    from glm_lsp.runtime.base import BackendError
    from glm_lsp.runtime.model_loader import read_config, resolve_model_dir

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a plan never downloads
    try:
        model_dir = resolve_model_dir(model)
        config = read_config(model_dir)
    except BackendError as exc:
        raise UsageError(f"{exc}; or give --model-config with the model's config.json") from None
    weights = sum(f.stat().st_size for f in model_dir.glob("*.safetensors"))
    return Shape(config, float(weights), str(model_dir / "config.json"))


def plan_lines(
    shape: Shape, mode: str, hosts: list[str], memory_gb: float | None, settings: Settings
) -> list[str]:
    ends, layers, router, total = _params(shape)
    quant = shape.config.get("quantization") or {}
    bits, group = int(quant.get("bits", 16)), int(quant.get("group_size", 64))
    per_param = shape.weight_bytes / total if shape.weight_bytes else (bits + 32 / group) / 8
    n = len(hosts)
    kv_heads, head_dim = shape.get("num_key_value_heads"), shape.get("head_dim", 128)
    kv_bytes = 2 * head_dim * (2.0 if settings.kvBits is None else settings.kvBits / 8 + 4 / 64)
    tokens = settings.contextLength
    out = [
        f"plan: {settings.model} ({shape.config.get('model_type')}, {len(layers)} layers, "
        f"{bits}-bit group size {group}, {shape.weight_bytes / GB:.1f} GB of weights) over "
        f"{n} ranks, {mode} parallel",
        f"  figures from {shape.source}",
    ]
    problems = []
    if mode == "pipeline":
        base, extra = divmod(len(layers), n)
        split = [base + (1 if r < extra else 0) for r in range(n)]
        if min(split) < 1:
            problems.append(f"{len(layers)} layers cannot give each of {n} ranks one")
        for r in range(n):
            start = sum(split[r + 1 :])
            mine = range(start, start + split[r])
            weights = (ends + sum(layers[i] + router for i in mine)) * per_param
            kv = len(mine) * kv_heads * kv_bytes * tokens
            out.append(
                _rank_line(
                    r,
                    hosts[r],
                    f"layers {start}-{start + split[r] - 1} ({split[r]})",
                    weights,
                    kv,
                    memory_gb,
                )
            )
    else:
        for name, value in (
            ("attention heads", shape.get("num_attention_heads")),
            ("KV heads", kv_heads),
        ):
            if value % n:
                problems.append(f"{value} {name} do not split over {n} ranks")
        weights = (ends + len(layers) * router + sum(layers) / n) * per_param
        kv = len(layers) * (kv_heads / n) * kv_bytes * tokens
        for r in range(n):
            out.append(_rank_line(r, hosts[r], f"1/{n} of every layer", weights, kv, memory_gb))
    for problem in problems:
        out.append(f"  problem: {problem}; mlx-lm's sharded_load would refuse this split")
    out.append(f"  KV cache counted at contextLength {tokens} tokens, kvBits {settings.kvBits}")
    out.extend(_launch_lines(mode, hosts, settings))
    return out


def _rank_line(
    rank: int, host: str, part: str, weights: float, kv: float, memory_gb: float | None
) -> str:
    need = (weights + kv) / GB
    line = (
        f"rank {rank} ({host}): {part}: weights {weights / GB:.1f} GB + KV cache "
        f"{kv / GB:.1f} GB = {need:.1f} GB"
    )
    if memory_gb:
        # macOS lets the GPU wire about 75% of memory unless iogpu.wired_limit_mb is raised.
        verdict = (
            "fits"
            if need <= 0.75 * memory_gb
            else (
                "fits after raising iogpu.wired_limit_mb"
                if need <= 0.92 * memory_gb
                else "does not fit"
            )
        )
        line += f" of {memory_gb:g} GB: {verdict}"
    return line


def _launch_lines(mode: str, hosts: list[str], settings: Settings) -> list[str]:
    hostfile = [{"ssh": h, "ips": [h]} for h in hosts]
    command = [
        "mlx.launch",
        "--hostfile",
        "hosts.json",
        "--backend",
        "ring",
        "--",
        "glm-lsp",
        "serve",
        "--tcp",
        "--distributed",
        mode,
        "--model",
        settings.model,
    ]
    return [
        "launch (from rank 0's host; every host needs glm-lsp and the model at the same path):",
        f"  hosts.json: {json.dumps(hostfile)}",
        f"  {shlex.join(command)}",
        "  then point the editor at rank 0: 127.0.0.1:2087 with the token the server names "
        "(or --backend jaccl over Thunderbolt 5 RDMA)",
    ]


def plan_command(args: argparse.Namespace, settings: Settings) -> int:
    if args.hosts and args.ranks:
        raise UsageError("give --hosts or --ranks, not both")
    hosts = (
        [h.strip() for h in args.hosts.split(",") if h.strip()]
        if args.hosts
        else [f"host{r + 1}" for r in range(args.ranks or 2)]
    )
    if len(hosts) < 2:
        raise UsageError("a distributed plan needs two hosts or more (--hosts A,B or --ranks 2)")
    shape = _load_shape(settings.model, args.model_config)
    for line in plan_lines(shape, args.distributed, hosts, args.memory_per_host, settings):
        print(line)
    return EXIT_OK
