"""`glm-lsp finetune`: a LoRA adapter from exported traces, with the loss before and after."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from glm_lsp.errors import EXIT_OK, UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "data", help="a .jsonl file, or a directory with train.jsonl (+ valid.jsonl)"
    )
    parser.add_argument("--model", required=True, help="MLX model directory or Hugging Face id")
    parser.add_argument("--adapter-path", required=True, help="directory to write the adapter to")
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument("--num-layers", type=int, default=16, help="last N layers; -1 for all")
    parser.add_argument("--max-seq-length", type=int, default=8192)
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank")
    parser.add_argument("--report-every", type=int, default=10, help="iterations per progress line")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--grad-checkpoint", action="store_true", help="trade compute for memory on long traces"
    )


def finetune_command(args: argparse.Namespace) -> int:
    for name in ("iters", "batch_size", "max_seq_length", "rank", "report_every"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if not args.learning_rate > 0:
        raise UsageError("--learning-rate must be a positive number, e.g. 1e-5")
    data = Path(args.data).expanduser()
    # Imported here: MLX start-up is not free, and `glm-lsp --help` should not pay it.
    from glm_lsp.traces.dataset import DataError
    from glm_lsp.traces.finetune import FinetuneOptions, finetune

    options = FinetuneOptions(
        model=args.model,
        adapter_path=Path(args.adapter_path).expanduser(),
        iters=args.iters,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        num_layers=args.num_layers,
        max_seq_length=args.max_seq_length,
        rank=args.rank,
        report_every=args.report_every,
        seed=args.seed,
        grad_checkpoint=args.grad_checkpoint,
    )

    def say(line: str) -> None:
        print(f"glm-lsp: {line}", file=sys.stderr, flush=True)

    try:
        result = finetune(data, options, say)  # reads the data before it loads the model
    except (DataError, OSError) as exc:
        raise UsageError(str(exc)) from None
    b, a = result.before, result.after
    print(
        f"loss {b.loss:.4f} -> {a.loss:.4f}, token accuracy {b.accuracy:.1%} -> {a.accuracy:.1%} "
        f"on {a.tokens} assistant tokens of {result.valid_records} record(s); "
        f"trained on {result.train_records} record(s) in {result.seconds:.0f}s; "
        f"adapter in {result.adapter_path}"
    )
    return EXIT_OK
