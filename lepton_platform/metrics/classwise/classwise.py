"""Precision, recall and F1 per class and averaged (macro, micro, weighted).

One module, three configurations: load it with ``config_name`` ``"precision"``, ``"recall"`` or
``"f1"``. Works for single-label (label indices) and multi-label (0/1 vectors) predictions.
Computed with scikit-learn; shipped inside Lepton and loaded by path, so it works offline.
"""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import precision_recall_fscore_support

_DESCRIPTION = "Precision, recall or F1: per class, and macro, micro and weighted averages."

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted label indices (int), or 0/1 vectors for multi-label.
    references: true label indices (int), or 0/1 vectors for multi-label.
    num_labels: size of the label space, so that classes absent from both lists still count
        (with score 0) in the macro average and get a per-class entry.
    zero_division: value for a class with no predicted (precision) or true (recall) examples.
    sample_weight: optional weight per example.
Returns (for config "f1"; "precision" and "recall" name their keys the same way):
    f1: the macro average (the headline value),
    f1_macro, f1_micro, f1_weighted: the three averages,
    f1_per_class: one value per class, in label order,
    support: number of true examples per class.
Example:
    >>> metric = evaluate.load("lepton_platform/metrics/classwise", config_name="f1")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0], num_labels=2)["f1_macro"]
    0.6666666666666666
"""

_SCORES = {"precision": 0, "recall": 1, "f1": 2}

_SINGLE = datasets.Features(
    {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
)
_MULTI = datasets.Features(
    {
        "predictions": datasets.Sequence(datasets.Value("int64")),
        "references": datasets.Sequence(datasets.Value("int64")),
    }
)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Classwise(evaluate.Metric):
    def _info(self):
        if self.config_name not in _SCORES:
            raise ValueError(
                f"classwise metric: config_name must be one of {sorted(_SCORES)}, "
                f"got {self.config_name!r}"
            )
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=[_SINGLE, _MULTI],
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html"],
        )

    def _compute(
        self, predictions, references, num_labels=None, zero_division=0.0, sample_weight=None
    ):
        name = self.config_name
        which = _SCORES[name]
        refs = np.asarray(references)
        preds = np.asarray(predictions)
        labels = None
        if refs.ndim == 1:
            n = num_labels if num_labels is not None else int(max(refs.max(), preds.max())) + 1
            labels = list(range(n))
        out = {}
        for average in ("macro", "micro", "weighted"):
            values = precision_recall_fscore_support(
                refs,
                preds,
                labels=labels,
                average=average,
                zero_division=zero_division,
                sample_weight=sample_weight,
            )
            out[f"{name}_{average}"] = float(values[which])
        per_class = precision_recall_fscore_support(
            refs,
            preds,
            labels=labels,
            average=None,
            zero_division=zero_division,
            sample_weight=sample_weight,
        )
        out[name] = out[f"{name}_macro"]
        out[f"{name}_per_class"] = [float(v) for v in per_class[which]]
        out["support"] = [int(v) for v in per_class[3]]
        return out
