"""LoRA on exported traces through mlx-lm's trainer (QLoRA when the model is quantised).

Only the assistant completions train (the prompt is masked); the adapter directory is the one
`mlx_lm.load(model, adapter_path=...)`, `mlx_lm.generate --adapter-path` and `mlx_lm.fuse` read.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
from mlx_lm.tuner.callbacks import TrainingCallback
from mlx_lm.tuner.trainer import TrainingArgs, train
from mlx_lm.tuner.utils import linear_to_lora_layers
from mlx_lm.utils import save_config

from glm_lsp.runtime.model_loader import load_model
from glm_lsp.traces.dataset import DataError, TraceDataset, encode, load_splits
from glm_lsp.traces.score import Score, masked_loss, score

ADAPTER_FILE = "adapters.safetensors"
SAVE_EVERY = 100  # mlx-lm's default: a checkpoint file every 100 iterations on long runs


@dataclass
class FinetuneOptions:
    model: str
    adapter_path: Path
    iters: int = 200
    batch_size: int = 1  # traces are long and vary in length; padding a batch wastes compute
    learning_rate: float = 1e-5
    num_layers: int = 16
    max_seq_length: int = 8192  # a request with a few file reads is several thousand tokens
    rank: int = 8
    scale: float = 20.0
    report_every: int = 10
    seed: int = 0
    grad_checkpoint: bool = False


@dataclass
class FinetuneResult:
    before: Score
    after: Score
    train_records: int
    valid_records: int
    adapter_path: Path
    seconds: float


class _Progress(TrainingCallback):
    def __init__(self, iters: int, say: Callable[[str], None]) -> None:
        self.iters, self.say = iters, say

    def on_train_loss_report(self, info: dict[str, Any]) -> None:
        self.say(
            f"iter {info['iteration']}/{self.iters}: train loss {info['train_loss']:.3f}, "
            f"{info['tokens_per_second']:.0f} tok/s, peak memory {info['peak_memory']:.2f} GB"
        )


def finetune(data: Path, options: FinetuneOptions, say: Callable[[str], None]) -> FinetuneResult:
    """Train a LoRA adapter on `data`; `say` gets one line per step of progress."""
    start = time.perf_counter()
    mx.random.seed(options.seed)
    np.random.seed(options.seed)  # iterate_batches shuffles with numpy
    train_records, valid_records, note = load_splits(data)
    if note:
        say(note)
    say(f"loading {options.model}")
    model, tokenizer, _ = load_model(options.model)  # clear errors for a missing/foreign model
    train_set = _dataset(train_records, tokenizer, options, "train", say)
    valid_set = _dataset(valid_records, tokenizer, options, "valid", say)

    layers = len(model.layers)
    num_layers = layers if options.num_layers < 0 else min(options.num_layers, layers)
    batch_size = min(options.batch_size, len(train_set))
    if batch_size != options.batch_size:
        say(f"batch size {batch_size}: the training set has only {len(train_set)} record(s)")
    lora = {"rank": options.rank, "scale": options.scale, "dropout": 0.0}
    model.freeze()
    linear_to_lora_layers(model, num_layers, lora)  # lora_b starts at zero: the base model

    before = score(model, valid_set)
    say(f"before: loss {before.loss:.3f}, token accuracy {before.accuracy:.1%}")
    out = Path(options.adapter_path)
    out.mkdir(parents=True, exist_ok=True)
    save_config(_adapter_config(options, data, num_layers, lora), out / "adapter_config.json")
    args = TrainingArgs(
        batch_size=batch_size,
        iters=options.iters,
        steps_per_report=max(1, options.report_every),
        steps_per_save=SAVE_EVERY,
        max_seq_length=options.max_seq_length,
        adapter_file=str(out / ADAPTER_FILE),
        grad_checkpoint=options.grad_checkpoint,
    )
    # mlx-lm draws its own progress table on stdout; our callback reports on stderr instead.
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        train(
            model=model,
            optimizer=optim.Adam(learning_rate=options.learning_rate),
            train_dataset=train_set,
            args=args,
            loss=masked_loss,
            training_callback=_Progress(options.iters, say),
        )
    after = score(model, valid_set)
    say(f"after: loss {after.loss:.3f}, token accuracy {after.accuracy:.1%}")
    return FinetuneResult(
        before, after, len(train_set), len(valid_set), out, time.perf_counter() - start
    )


def _dataset(
    records: list[dict], tokenizer: Any, options: FinetuneOptions, name: str, say: Callable
) -> TraceDataset:
    encoded = encode(records, tokenizer, options.max_seq_length)
    if encoded.truncated or encoded.dropped:
        say(
            f"{name}: {encoded.truncated} prompt(s) shortened by their oldest messages and "
            f"{encoded.dropped} record(s) dropped to fit --max-seq-length {options.max_seq_length}"
        )
    if not encoded.items:
        raise DataError(f"no {name} record fits --max-seq-length {options.max_seq_length}")
    return TraceDataset(encoded.items)


def _adapter_config(
    options: FinetuneOptions, data: Path, num_layers: int, lora: dict[str, Any]
) -> dict[str, Any]:
    """What mlx_lm.load reads back (fine_tune_type, num_layers, lora_parameters), plus the run."""
    config = {k: v for k, v in asdict(options).items() if k not in ("adapter_path",)}
    config.update(
        data=str(data),
        fine_tune_type="lora",
        num_layers=num_layers,
        lora_parameters=lora,
        mask_prompt=True,
        trainer="glm-lsp finetune",
    )
    return config
