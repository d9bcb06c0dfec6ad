"""Accuracy: the fraction of examples whose predicted label equals the reference.

For multi-label 0/1 vectors it is subset accuracy (every label of an example right).
Computed with numpy (scikit-learn's value, checked in the tests); shipped inside Lepton and
loaded by path, so it works offline.
"""

from typing import Any

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Fraction of examples predicted exactly right (subset accuracy for multi-label)."

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted label indices (int), or 0/1 vectors for multi-label.
    references: true label indices (int), or 0/1 vectors for multi-label.
    sample_weight: optional weight per example.
Returns:
    accuracy: float in [0, 1].
Example:
    >>> metric = evaluate.load("lepton_platform/metrics/accuracy")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'accuracy': 0.6666666666666666}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):  # type: ignore[misc]
    def _info(self) -> Any:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Sequence(datasets.Value("int64")),
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
        sample_weight: Any = None,
        num_labels: Any = None,
    ) -> dict[str, Any]:
        # numpy, not sklearn's accuracy_score: the same value a hundred times faster, which
        # is what a thousand bootstrap resamples per comparison row pay
        predicted, expected = np.asarray(predictions), np.asarray(references)
        if predicted.shape != expected.shape:
            raise ValueError(
                f"predictions {predicted.shape} and references {expected.shape} differ in shape"
            )
        if predicted.size == 0:
            raise ValueError("no examples to score")
        right = predicted == expected
        if right.ndim > 1:  # multi-label 0/1 rows: subset accuracy
            right = right.all(axis=tuple(range(1, right.ndim)))
        score = np.average(right, weights=sample_weight)
        return {"accuracy": float(score)}
