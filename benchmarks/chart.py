"""One PNG: a small bar chart per metric, glm-lsp next to its anchor, the target as a dashed line."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: this runs headless
import matplotlib.pyplot as plt

GLM, ANCHOR, OTHER, MISS = "#2b6cb0", "#a0aec0", "#cbd5e0", "#c53030"


def draw(panels: list[dict[str, Any]], path: Path, title: str) -> None:
    """panels: {key, bars: [(label, value)], target: float | None, verdict, unit}."""
    cols = 4
    rows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, panel in zip(axes.flat, panels, strict=False):
        labels = [label for label, _ in panel["bars"]]
        values = [value if value is not None else 0 for _, value in panel["bars"]]
        colors = [GLM if panel["verdict"] != "MISS" else MISS]
        colors += [ANCHOR] + [OTHER] * (len(values) - 2)
        bars = ax.bar(labels, values, color=colors[: len(values)])
        for bar, (_label, value) in zip(bars, panel["bars"], strict=True):
            text = "n/a" if value is None else f"{value:g}"
            ax.annotate(
                text,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        if panel.get("target") is not None:
            ax.axhline(panel["target"], color="#2f855a", linestyle="--", linewidth=1)
        top = max([*values, panel.get("target") or 0]) or 1.0  # all zero: still a readable axis
        ax.set_ylim(0, top * 1.25)
        ax.set_title(f"{panel['key']} [{panel['verdict']}]", fontsize=9)
        ax.set_ylabel(panel.get("unit", ""), fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
