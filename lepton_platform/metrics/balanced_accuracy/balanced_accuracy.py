"""Balanced accuracy: the mean of per-class recall over the classes present in the references.

Single-label only. Computed with scikit-learn; shipped inside Lepton and loaded by path.
"""

from typing import Any

import datasets
import evaluate
from sklearn.metrics import balanced_accuracy_score

_DESCRIPTION = "Mean recall over classes (robust to class imbalance)."

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted label indices (int).
    references: true label indices (int).
    adjusted: rescale so that chance scores 0 (scikit-learn's ``adjusted``).
    sample_weight: optional weight per example.
Returns:
    balanced_accuracy: float.
Example:
    >>> metric = evaluate.load("lepton_platform/metrics/balanced_accuracy")
    >>> metric.compute(predictions=[0, 1, 1, 1], references=[0, 1, 1, 0])
    {'balanced_accuracy': 0.75}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class BalancedAccuracy(evaluate.Metric):  # type: ignore[misc]
    def _info(self) -> Any:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html"],
        )

    def _compute(
        self,
        predictions: Any,
        references: Any,
        adjusted: Any = False,
        sample_weight: Any = None,
        num_labels: Any = None,
    ) -> dict[str, Any]:
        score = balanced_accuracy_score(
            references, predictions, adjusted=adjusted, sample_weight=sample_weight
        )
        return {"balanced_accuracy": float(score)}
