"""Class MAE: the mean absolute distance between the predicted and the true class index, for
ordered classes (grades, stages, star ratings). Lower is better: 0 is perfect.

A Hugging Face ``evaluate`` module shipped inside lepton-tabular and loaded by path.
"""

from typing import Any

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Mean absolute error between predicted and true class indices (lower is better)."

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted class indices (int).
    references: true class indices (int).
Returns:
    class_mae: float >= 0 (0: every prediction right).
Example:
    >>> metric.compute(predictions=[0, 2, 1], references=[0, 1, 1])
    {'class_mae': 0.3333333333333333}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ClassMAE(evaluate.Metric):  # type: ignore[misc]
    def _info(self) -> Any:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions: Any, references: Any) -> dict[str, Any]:
        error = np.abs(np.asarray(predictions) - np.asarray(references))
        return {"class_mae": float(error.mean())}
