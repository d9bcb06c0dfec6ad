"""Confusion matrix: row = true label, column = predicted label, in label order.

For multi-label 0/1 vectors it is one 2x2 matrix per label ``[[tn, fp], [fn, tp]]``.
Computed with scikit-learn; shipped inside Lepton and loaded by path, so it works offline.
"""

from typing import Any

import datasets
import evaluate
import numpy as np
from sklearn.metrics import confusion_matrix, multilabel_confusion_matrix

_DESCRIPTION = "Confusion matrix (rows: true labels, columns: predicted labels)."

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted label indices (int), or 0/1 vectors for multi-label.
    references: true label indices (int), or 0/1 vectors for multi-label.
    num_labels: size of the label space, so that absent classes still get a row and column.
    normalize: None (counts), "true", "pred" or "all", as in scikit-learn.
Returns:
    confusion_matrix: list of lists (num_labels x num_labels); for multi-label a list of
        num_labels 2x2 matrices.
Example:
    >>> metric = evaluate.load("lepton_platform/metrics/confusion_matrix")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0], num_labels=2)
    {'confusion_matrix': [[1, 1], [0, 1]]}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ConfusionMatrix(evaluate.Metric):  # type: ignore[misc]
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
        num_labels: Any = None,
        normalize: Any = None,
    ) -> dict[str, Any]:
        refs = np.asarray(references)
        preds = np.asarray(predictions)
        if refs.ndim == 2:
            matrices = multilabel_confusion_matrix(refs, preds)
            return {"confusion_matrix": matrices.tolist()}
        n = num_labels if num_labels is not None else int(max(refs.max(), preds.max())) + 1
        matrix = confusion_matrix(refs, preds, labels=list(range(n)), normalize=normalize)
        return {"confusion_matrix": matrix.tolist()}
