"""Top-k accuracy: the fraction of examples whose true label is among the k highest scores.

Single-label only; reads class scores, not predicted labels. Computed with scikit-learn;
shipped inside Lepton and loaded by path, so it works offline.
"""

from typing import Any

import datasets
import evaluate
import numpy as np
from sklearn.metrics import top_k_accuracy_score

_DESCRIPTION = "Fraction of examples whose true label is among the k best-scored labels."

_KWARGS_DESCRIPTION = """
Args:
    predictions: class scores, one vector of num_labels floats per example.
    references: true label indices (int).
    k: how many of the best-scored labels count (default 5, capped at num_labels).
    sample_weight: optional weight per example.
Returns:
    top_k_accuracy: float; k: the k used.
Example:
    >>> metric = evaluate.load("lepton_platform/metrics/top_k_accuracy")
    >>> metric.compute(predictions=[[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]], references=[1, 2], k=2)
    {'top_k_accuracy': 0.5, 'k': 2}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TopKAccuracy(evaluate.Metric):  # type: ignore[misc]
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
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html"],
        )

    def _compute(
        self,
        predictions: Any,
        references: Any,
        k: Any = 5,
        num_labels: Any = None,
        sample_weight: Any = None,
    ) -> dict[str, Any]:
        scores = np.asarray(predictions, dtype=np.float64)
        refs = np.asarray(references)
        n = scores.shape[1]
        k = int(min(k, n))
        if k < 1:
            raise ValueError(f"top-k accuracy: k must be at least 1, got {k}")
        if k == n:  # every label is in the top n: scikit-learn would warn and return 1
            weights = np.ones(len(refs)) if sample_weight is None else np.asarray(sample_weight)
            return {"top_k_accuracy": float(np.sum(weights) / np.sum(weights)), "k": k}
        score = top_k_accuracy_score(
            refs,
            scores if n > 2 else scores[:, 1],
            k=k,
            labels=list(range(n)),
            sample_weight=sample_weight,
        )
        return {"top_k_accuracy": float(score), "k": k}
