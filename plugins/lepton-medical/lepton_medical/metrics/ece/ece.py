"""Expected calibration error (ECE): how far the model's confidence is from its accuracy.

Reads class scores. The confidence of a row is its largest score, correct when that class is the
reference (top-label calibration); with ``pos_label`` the positive-class probability is compared
with the positive rate instead. Rows are put into ``n_bins`` equal-width confidence bins (or
equal-count bins with ``strategy="quantile"``); ECE is the row-weighted mean of
``|accuracy - confidence|`` over bins, MCE the largest such gap. Lower is better.
Shipped inside lepton-medical and loaded by path, so it works offline.
"""

from typing import Any

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Expected (and maximum) calibration error of class scores."

_KWARGS_DESCRIPTION = """
Args:
    predictions: class scores, one vector of num_labels floats per example.
    references: true label indices (int).
    n_bins: number of confidence bins (default 10).
    strategy: "uniform" (equal width, default) or "quantile" (equal counts).
    pos_label: calibrate this class's probability instead of the top label (optional).
Returns:
    ece: float, mce: float.
Example:
    >>> metric = evaluate.load("lepton_medical/metrics/ece")
    >>> out = metric.compute(predictions=[[0.9, 0.1], [0.2, 0.8]], references=[0, 0], n_bins=2)
    >>> round(out["ece"], 4), round(out["mce"], 4)   # one bin: confidence 0.85, accuracy 0.5
    (0.35, 0.35)
"""


def calibration_bins(
    confidence: Any, outcome: Any, n_bins: int = 10, strategy: str = "uniform"
) -> list[tuple[float, float, int]]:
    """``(mean confidence, mean outcome, count)`` of each non-empty bin."""
    conf = np.asarray(confidence, dtype=np.float64)
    hits = np.asarray(outcome, dtype=np.float64)
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    if strategy == "uniform":
        edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    elif strategy == "quantile":
        edges = np.unique(np.quantile(conf, np.linspace(0.0, 1.0, int(n_bins) + 1)))
        edges[0], edges[-1] = min(edges[0], 0.0), max(edges[-1], 1.0)
    else:
        raise ValueError(f"strategy must be 'uniform' or 'quantile', got {strategy!r}")
    which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, len(edges) - 2)
    out: list[tuple[float, float, int]] = []
    for b in range(len(edges) - 1):
        mask = which == b
        if mask.any():
            out.append((float(conf[mask].mean()), float(hits[mask].mean()), int(mask.sum())))
    return out


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Ece(evaluate.Metric):  # type: ignore[misc]
    def _info(self) -> Any:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Value("int64"),
                }
            ),
        )

    def _compute(
        self,
        predictions: Any,
        references: Any,
        n_bins: Any = 10,
        strategy: Any = "uniform",
        pos_label: Any = None,
        num_labels: Any = None,
    ) -> dict[str, Any]:
        scores = np.asarray(predictions, dtype=np.float64)
        refs = np.asarray(references, dtype=np.int64)
        if scores.ndim != 2 or scores.shape[0] != refs.shape[0] or scores.shape[0] == 0:
            raise ValueError(f"scores of shape {scores.shape} for {refs.shape[0]} references")
        if pos_label is None:
            confidence = scores.max(axis=1)
            outcome = scores.argmax(axis=1) == refs
        else:
            confidence = scores[:, int(pos_label)]
            outcome = refs == int(pos_label)
        bins = calibration_bins(confidence, outcome, int(n_bins), str(strategy))
        n = float(len(refs))
        gaps = [abs(acc - conf) for conf, acc, _ in bins]
        ece = sum(g * c / n for g, (_, _, c) in zip(gaps, bins, strict=True))
        return {"ece": float(ece), "mce": float(max(gaps))}
