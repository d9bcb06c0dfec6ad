"""The report's pictures: PNG bytes drawn with matplotlib's Agg backend (no display needed).

Each function takes JSON-ready data (what ``result.json`` holds) and returns PNG bytes, or
``None`` when there is nothing to draw.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "class_counts",
    "comparison_bars",
    "confusion_matrix",
    "heat_map",
    "learning_curves",
]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(float(value)) else None


def learning_curves(
    history: Sequence[Mapping[str, Any]], restored: int | None = None
) -> bytes | None:
    """Training and validation loss per epoch (left), validation metrics (right); a dashed
    line marks ``restored``, the 1-based position in ``history`` of the epoch whose model was
    kept."""
    if not history:
        return None
    steps = list(range(1, len(history) + 1))
    losses = [k for k in ("train_loss", "val_loss") if any(k in h for h in history)]
    scores = sorted({k for h in history for k in h if k.startswith("val_") and k != "val_loss"})
    if not losses and not scores:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2 if scores else 1, figsize=(10 if scores else 6, 3.6))
    axes = list(axes) if scores else [axes]
    for key in losses:
        axes[0].plot(steps, [_number(h.get(key)) for h in history], marker="o", label=key)
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if restored is not None:
            ax.axvline(restored, color="#555555", linestyle="--", linewidth=1, label="restored")
    axes[0].set_xlabel("epoch (all stages in order)")
    axes[0].set_ylabel("loss")
    axes[0].set_title("Loss")
    axes[0].legend()
    if scores:
        for key in scores:
            axes[1].plot(steps, [_number(h.get(key)) for h in history], marker="o", label=key)
        axes[1].set_ylabel("metric")
        axes[1].set_xlabel("epoch (all stages in order)")
        axes[1].set_title("Validation metrics")
        axes[1].legend()
    return _png(fig)


def confusion_matrix(matrix: Sequence[Sequence[float]], labels: Sequence[str]) -> bytes | None:
    """The confusion matrix: rows are true labels, columns predictions, with the counts."""
    if not matrix or not labels:
        return None
    plt = _pyplot()
    n = len(labels)
    size = min(3.0 + 0.45 * n, 12.0)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(range(n), labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = max((max(row) for row in matrix if row), default=0) or 1
    if n <= 20:
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                colour = "white" if value > top / 2 else "black"
                ax.text(j, i, f"{value:g}", ha="center", va="center", color=colour, fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_title("Confusion matrix (test)")
    return _png(fig)


def class_counts(classes: Mapping[str, Mapping[str, int]]) -> bytes | None:
    """Examples per class in each split, as grouped bars."""
    splits = [s for s, counts in classes.items() if counts]
    if not splits:
        return None
    labels = list(next(iter(classes[s] for s in splits)))
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(min(4 + 0.5 * len(labels), 14), 3.4))
    width = 0.8 / len(splits)
    for k, split in enumerate(splits):
        xs = [i + k * width for i in range(len(labels))]
        ax.bar(xs, [classes[split].get(label, 0) for label in labels], width, label=split)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels=labels)
    ax.set_ylabel("examples")
    ax.set_title("Examples per class and split")
    ax.legend()
    return _png(fig)


def comparison_bars(rows: Sequence[Mapping[str, Any]], metric: str) -> bytes | None:
    """Mean and standard deviation of ``metric`` per row; baselines grey, controls orange."""
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(min(3 + 1.0 * len(rows), 14), 3.6))
    names = [str(r["name"]) for r in rows]
    means = [_number(r.get("mean")) or 0.0 for r in rows]
    stds = [_number(r.get("std")) or 0.0 for r in rows]
    palette = {"baseline": "#9e9e9e", "control": "#f2a65a"}
    colours = [palette.get(str(r.get("kind")), "#1f77b4") for r in rows]
    ax.bar(names, means, yerr=stds, color=colours, capsize=4)
    ax.set_ylabel(metric)
    ax.set_title(
        f"{metric} on the test split (mean ± std over seeds; grey: baselines, orange: controls)"
    )
    ax.tick_params(axis="x", rotation=30)
    return _png(fig)


def heat_map(
    values: Sequence[Sequence[float]],
    rows: Sequence[str],
    columns: Sequence[str],
    metric: str = "accuracy",
) -> bytes | None:
    """The cross-domain matrix: trained on the row's domain, tested on the column's."""
    if not values or not rows or not columns:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(3 + 0.8 * len(columns), 2.5 + 0.6 * len(rows)))
    image = ax.imshow(values, cmap="viridis")
    ax.set_xticks(range(len(columns)), labels=list(columns), rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), labels=list(rows))
    ax.set_xlabel("tested on")
    ax.set_ylabel("trained on")
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            ax.text(j, i, f"{value:.3f}", ha="center", va="center", color="white", fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046, label=metric)
    ax.set_title(f"Cross-domain {metric}")
    return _png(fig)
