"""AUROC: area under the ROC curve, binary, one-vs-rest multi-class, or multi-label.

Reads class scores. The headline ``auroc`` is the macro average over the classes whose AUROC is
defined (a class needs both positive and negative references); ``auroc_per_class`` holds each
class's value (``None`` where undefined) and ``auroc_weighted`` weights by class prevalence.
For two classes ``auroc`` is the binary AUROC of the second class's score.
Computed with scikit-learn; shipped inside Lepton and loaded by path, so it works offline.
"""

from typing import Any

import datasets
import evaluate
import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

_DESCRIPTION = "Area under the ROC curve (binary, one-vs-rest multi-class, multi-label)."

_KWARGS_DESCRIPTION = """
Args:
    predictions: class scores, one vector of num_labels floats per example.
    references: true label indices (int), or 0/1 vectors for multi-label.
    sample_weight: optional weight per example.
Returns:
    auroc: float (macro over defined classes; binary AUROC for two classes),
    auroc_macro, auroc_weighted: floats,
    auroc_per_class: one value per class (None where only one kind of reference occurs).
Example:
    >>> metric = evaluate.load("lepton_platform/metrics/auroc")
    >>> metric.compute(predictions=[[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]], references=[0, 1, 0])
    {'auroc': 0.5, ...}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Auroc(evaluate.Metric):  # type: ignore[misc]
    def _info(self) -> Any:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Sequence(datasets.Value("float64")),
                        "references": datasets.Value("int64"),
                    }
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Sequence(datasets.Value("float64")),
                        "references": datasets.Sequence(datasets.Value("int64")),
                    }
                ),
            ],
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html"],
        )

    def _compute(
        self,
        predictions: Any,
        references: Any,
        num_labels: Any = None,
        sample_weight: Any = None,
    ) -> dict[str, Any]:
        scores = np.asarray(predictions, dtype=np.float64)
        refs = np.asarray(references)
        n = scores.shape[1]
        if refs.ndim == 1:
            onehot = np.zeros((len(refs), n), dtype=np.int64)
            onehot[np.arange(len(refs)), refs] = 1
        else:
            onehot = refs
        weights = np.ones(len(refs)) if sample_weight is None else np.asarray(sample_weight)
        per_class: list[float | None] = []
        prevalence: list[float] = []
        for c in range(n):
            column = onehot[:, c]
            if column.min() == column.max():
                per_class.append(None)
                prevalence.append(0.0)
                continue
            per_class.append(_binary_auroc(column, scores[:, c], sample_weight))
            prevalence.append(float(np.sum(weights * column)))
        defined = [v for v in per_class if v is not None]
        if not defined:
            raise ValueError(
                "AUROC is undefined: every class has only positive or only negative references"
            )
        macro = float(np.mean(defined))
        weighted = float(
            sum(v * w for v, w in zip(per_class, prevalence, strict=True) if v is not None)
            / sum(w for v, w in zip(per_class, prevalence, strict=True) if v is not None)
        )
        headline = macro
        if refs.ndim == 1 and n == 2 and per_class[1] is not None:
            headline = per_class[1]
        return {
            "auroc": headline,
            "auroc_macro": macro,
            "auroc_weighted": weighted,
            "auroc_per_class": per_class,
        }


def _binary_auroc(truth: Any, score: Any, sample_weight: Any) -> float:
    """AUROC of one class. Unweighted: the Mann-Whitney statistic from ranks (ties averaged),
    equal to scikit-learn's roc_auc_score and much faster; weighted: scikit-learn itself."""
    if sample_weight is not None:
        return float(roc_auc_score(truth, score, sample_weight=sample_weight))
    positive = truth == 1
    n_pos = int(positive.sum())
    n_neg = len(truth) - n_pos
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
