"""Sensitivity, specificity, PPV and NPV of a score threshold.

One module, four configurations (``config_name``: ``sensitivity``, ``specificity``, ``ppv``,
``npv``). It reads class scores. Binary (two columns): the positive class is ``pos_label``
(default 1) and a row is called positive when its score is at least ``threshold`` (default
0.5, which is the arg-max); choose the threshold on validation with
``lepton_medical.clinical.choose_threshold``. More classes: each class against the rest with the
arg-max prediction, the headline being the macro average; ``threshold`` is then refused.
An undefined value (no positives for sensitivity, ...) is NaN.
Shipped inside lepton-medical and loaded by path, so it works offline.
"""

from typing import Any

import datasets
import evaluate
import numpy as np

_STATS = ("sensitivity", "specificity", "ppv", "npv")

_DESCRIPTION = "Sensitivity, specificity, PPV or NPV of thresholded class scores."

_KWARGS_DESCRIPTION = """
Args:
    predictions: class scores, one vector of num_labels floats per example.
    references: true label indices (int).
    threshold: binary only: call positive when the pos_label score >= threshold (default 0.5).
    pos_label: binary only: the positive class index (default 1).
Returns:
    <stat>: float (binary: of pos_label; more classes: macro average),
    <stat>_per_class: one value per class (more classes only),
    threshold: the threshold used (binary only).
Example:
    >>> metric = evaluate.load("lepton_medical/metrics/threshold_rates", config_name="sensitivity")
    >>> metric.compute(predictions=[[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]], references=[0, 1, 1])
    {'sensitivity': 0.5, 'threshold': 0.5}
"""


def _rate(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


def _stats(truth: Any, called: Any) -> dict[str, float]:
    tp = float(np.sum(truth & called))
    fp = float(np.sum(~truth & called))
    fn = float(np.sum(truth & ~called))
    tn = float(np.sum(~truth & ~called))
    return {
        "sensitivity": _rate(tp, tp + fn),
        "specificity": _rate(tn, tn + fp),
        "ppv": _rate(tp, tp + fp),
        "npv": _rate(tn, tn + fn),
    }


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ThresholdRates(evaluate.Metric):  # type: ignore[misc]
    def _info(self) -> Any:
        if self.config_name not in _STATS:
            raise KeyError(
                f"threshold_rates: config_name must be one of {list(_STATS)}, "
                f"got {self.config_name!r}"
            )
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
        threshold: Any = None,
        pos_label: Any = 1,
        num_labels: Any = None,
    ) -> dict[str, Any]:
        name = self.config_name
        scores = np.asarray(predictions, dtype=np.float64)
        refs = np.asarray(references, dtype=np.int64)
        if scores.ndim != 2 or scores.shape[0] != refs.shape[0]:
            raise ValueError(f"scores of shape {scores.shape} for {refs.shape[0]} references")
        k = scores.shape[1]
        if k == 2:
            pos = int(pos_label)
            if pos not in (0, 1):
                raise ValueError(f"pos_label must be 0 or 1 for two classes, got {pos_label}")
            cut = 0.5 if threshold is None else float(threshold)
            called = scores[:, pos] >= cut
            return {name: _stats(refs == pos, called)[name], "threshold": cut}
        if threshold is not None:
            raise ValueError(
                f"threshold applies to two classes; these scores have {k} (arg-max is used)"
            )
        predicted = scores.argmax(axis=1)
        per_class = [_stats(refs == c, predicted == c)[name] for c in range(k)]
        defined = [v for v in per_class if not np.isnan(v)]
        macro = float(np.mean(defined)) if defined else float("nan")
        return {name: macro, f"{name}_per_class": per_class}
