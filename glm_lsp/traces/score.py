"""How well a model predicts the assistant tokens of a dataset: masked loss and greedy accuracy."""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn

from glm_lsp.traces.dataset import TraceDataset


@dataclass
class Score:
    loss: float  # mean cross-entropy per assistant token
    accuracy: float  # share of assistant tokens that are the model's argmax (teacher-forced)
    tokens: int


def masked_loss(model: nn.Module, batch: mx.array, lengths: mx.array) -> tuple[mx.array, mx.array]:
    """mlx-lm's default_loss with the end of the mask fixed: it counts one padding target past
    each row (`steps <= length`), training every sequence to predict token 0 after its end
    (ml-explore/mlx-lm PR #1697). Same signature, so train() and evaluate() take it as `loss`."""
    inputs, targets = batch[:, :-1], batch[:, 1:]
    logits = model(inputs)
    steps = mx.arange(1, targets.shape[1] + 1)
    mask = mx.logical_and(steps >= lengths[:, 0:1], steps < lengths[:, 1:])
    ce = nn.losses.cross_entropy(logits, targets) * mask
    ntoks = mask.sum()
    return ce.astype(mx.float32).sum() / ntoks, ntoks


def score(model: nn.Module, dataset: TraceDataset) -> Score:
    """One sequence at a time, no padding: the figures do not depend on the batch size."""
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for tokens, offset in dataset:
        ids = mx.array(tokens)
        logits = model(ids[None, :-1])[0]
        first = max(offset - 1, 0)  # logits[k] predicts token k + 1
        logits, targets = logits[first:], ids[first + 1 :]
        ce = nn.losses.cross_entropy(logits, targets).astype(mx.float32).sum()
        hits = (mx.argmax(logits, axis=-1) == targets).sum()
        mx.eval(ce, hits)
        total_loss += ce.item()
        correct += hits.item()
        count += targets.size
    return Score(total_loss / max(count, 1), correct / max(count, 1), count)
