"""Clinical read-outs: a decision threshold chosen on validation, the rates at that threshold on
test, and calibration (a reliability diagram).

    >>> choose_threshold([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])      # Youden's J
    0.8
    >>> choose_threshold([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], rule="sensitivity>=1.0")
    0.35

Choose on the validation split and report on test (:func:`threshold_metrics` does both), never
the other way round.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lepton_platform.errors import ConfigError, DataError

if TYPE_CHECKING:
    from lepton_platform.tasks import Task

__all__ = [
    "CLINICAL_METRICS",
    "calibration_bins",
    "choose_threshold",
    "positive_scores",
    "reliability_diagram",
    "threshold_metrics",
]

#: The lepton-medical metrics that take a ``threshold`` option.
CLINICAL_METRICS = ("sensitivity", "specificity", "ppv", "npv")

_RULE = re.compile(r"^(sensitivity|specificity)\s*>=\s*([0-9]*\.?[0-9]+)$")


def positive_scores(scores: Any, pos_label: int = 1) -> np.ndarray:
    """The positive class's score: a vector as is, the ``pos_label`` column of class scores."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim == 2:
        if arr.shape[1] != 2:
            raise DataError(f"thresholds are for two classes; the scores have {arr.shape[1]}")
        arr = arr[:, pos_label]
    if arr.ndim != 1:
        raise DataError(f"scores must be a vector or (examples, 2), got shape {arr.shape}")
    return arr


def choose_threshold(
    scores: Any, labels: Any, rule: str = "youden", *, pos_label: int = 1
) -> float:
    """The score threshold (call positive when ``score >= threshold``) chosen by ``rule``.

    ``"youden"`` maximises sensitivity + specificity - 1; ``"sensitivity>=x"`` takes the
    highest threshold whose sensitivity is at least ``x`` (the most specific one reaching the
    sensitivity asked for), ``"specificity>=x"`` the lowest whose specificity is at least ``x``.
    ``scores`` are positive-class scores or ``(examples, 2)`` class scores; use validation data.
    """
    score = positive_scores(scores, pos_label)
    truth = np.asarray(labels).reshape(-1) == pos_label
    if score.shape[0] != truth.shape[0]:
        raise DataError(f"{score.shape[0]} scores but {truth.shape[0]} labels")
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    if n_pos == 0 or n_neg == 0:
        raise DataError(
            f"choosing a threshold needs positive and negative examples; got {n_pos} positive "
            f"and {n_neg} negative"
        )
    candidates = np.unique(score)[::-1]  # descending: sensitivity grows along it
    sens = np.array([float((score[truth] >= t).mean()) for t in candidates])
    spec = np.array([float((score[~truth] < t).mean()) for t in candidates])
    text = rule.replace(" ", "").lower()
    if text == "youden":
        return float(candidates[int(np.argmax(sens + spec - 1.0))])
    match = _RULE.match(text)
    if not match:
        raise ConfigError(
            f"unknown threshold rule {rule!r}; use 'youden', 'sensitivity>=0.9' or "
            "'specificity>=0.9'"
        )
    stat, target = match.group(1), float(match.group(2))
    if not 0.0 <= target <= 1.0:
        raise ConfigError(f"threshold rule {rule!r}: the target must be in [0, 1]")
    if stat == "sensitivity":
        ok = np.flatnonzero(sens >= target)
        return float(candidates[int(ok[0])])  # the full list always reaches sensitivity 1
    ok = np.flatnonzero(spec >= target)
    if not ok.size:
        return float(np.nextafter(candidates[0], np.inf))  # call nothing positive
    return float(candidates[int(ok[-1])])


def threshold_metrics(
    task: Task,
    validation: tuple[Any, Any],
    test: tuple[Any, Any],
    *,
    rule: str = "youden",
    metrics: Sequence[str] = (*CLINICAL_METRICS, "auroc", "balanced-accuracy", "ece"),
    pos_label: int = 1,
) -> dict[str, Any]:
    """Choose a threshold on ``validation`` ``(logits, labels)`` and compute ``metrics`` on
    ``test`` ``(logits, labels)`` at it, through the evaluate engine. Returns the metrics and
    ``threshold`` / ``threshold_rule``."""
    import torch

    import lepton_platform as lp
    from lepton_platform.engine.evaluate import Metric, compute_metrics

    val_logits, val_labels = (np.asarray(v) for v in validation)
    # the task's own scores, computed as the evaluate engine computes them (same rounding)
    _, class_scores = task.predict(torch.from_numpy(np.ascontiguousarray(val_logits)))
    scores = class_scores.double().cpu().numpy()
    threshold = choose_threshold(scores, val_labels, rule, pos_label=pos_label)
    at_threshold = {"threshold": threshold, "pos_label": pos_label}
    resolved = [
        Metric(lp.get_metric(name), at_threshold if name in CLINICAL_METRICS else {})
        for name in metrics
    ]
    out = compute_metrics(task, np.asarray(test[0]), np.asarray(test[1]), resolved)
    out["threshold"] = threshold
    out["threshold_rule"] = rule
    return out


def calibration_bins(
    confidence: Any, outcome: Any, n_bins: int = 10
) -> list[tuple[float, float, int]]:
    """``(mean confidence, observed frequency, rows)`` of each non-empty equal-width bin (the
    bins of the ``ece`` metric)."""
    conf = np.asarray(confidence, dtype=np.float64)
    hits = np.asarray(outcome, dtype=np.float64)
    if n_bins < 1:
        raise ConfigError(f"n_bins must be at least 1, got {n_bins}")
    which = np.clip((conf * n_bins).astype(np.int64), 0, n_bins - 1)
    out: list[tuple[float, float, int]] = []
    for b in range(n_bins):
        mask = which == b
        if mask.any():
            out.append((float(conf[mask].mean()), float(hits[mask].mean()), int(mask.sum())))
    return out


def reliability_diagram(
    scores: Any,
    labels: Any,
    path: str | Path,
    *,
    n_bins: int = 10,
    pos_label: int | None = None,
    title: str = "Reliability diagram",
) -> Path:
    """Write a reliability diagram PNG (accuracy against confidence per bin, with the counts)
    and return its path. ``scores`` are class scores ``(examples, classes)``; top-label
    calibration unless ``pos_label`` is given (or ``scores`` is a positive-class vector)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arr = np.asarray(scores, dtype=np.float64)
    refs = np.asarray(labels).reshape(-1)
    if arr.ndim == 1:
        confidence, outcome = arr, refs == (1 if pos_label is None else pos_label)
    elif pos_label is not None:
        confidence, outcome = arr[:, pos_label], refs == pos_label
    else:
        confidence, outcome = arr.max(axis=1), arr.argmax(axis=1) == refs
    if confidence.shape[0] != refs.shape[0] or refs.shape[0] == 0:
        raise DataError(f"{confidence.shape[0]} scores for {refs.shape[0]} labels")
    bins = calibration_bins(confidence, outcome, n_bins)
    n = float(len(refs))
    ece = sum(abs(acc - conf) * c / n for conf, acc, c in bins)
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(4.5, 5.5), gridspec_kw={"height_ratios": [3, 1]}, sharex=True
    )
    width = 1.0 / n_bins
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    top.bar(
        [c for c, _, _ in bins],
        [a for _, a, _ in bins],
        width=width * 0.9,
        edgecolor="black",
        alpha=0.7,
        label="observed",
    )
    top.set_ylabel("observed frequency" if pos_label is not None else "accuracy")
    top.set_ylim(0, 1)
    top.set_title(f"{title} (ECE {ece:.3f})")
    top.legend(loc="upper left")
    bottom.bar([c for c, _, _ in bins], [k for _, _, k in bins], width=width * 0.9, color="grey")
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("rows")
    bottom.set_xlim(0, 1)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out
