"""Precision, recall and F1 per class and averaged (macro, micro, weighted).

One module, three configurations: load it with ``config_name`` ``"precision"``, ``"recall"`` or
``"f1"``. Works for single-label (label indices) and multi-label (0/1 vectors) predictions.
Counts as scikit-learn does (tests compare against it); shipped inside Lepton and loaded by
path, so it works offline.
"""

from typing import Any

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Precision, recall or F1: per class, and macro, micro and weighted averages."

_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted label indices (int), or 0/1 vectors for multi-label.
    references: true label indices (int), or 0/1 vectors for multi-label.
    num_labels: size of the label space, so that every class gets a per-class entry (0 and
        support 0 for a class absent from both lists); averages run over the classes present.
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
class Classwise(evaluate.Metric):  # type: ignore[misc]
    def _info(self) -> Any:
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
        self,
        predictions: Any,
        references: Any,
        num_labels: Any = None,
        zero_division: Any = 0.0,
        sample_weight: Any = None,
    ) -> dict[str, Any]:
        # True/false positives and false negatives per class, then the scores and averages
        # exactly as scikit-learn's precision_recall_fscore_support defines them (the tests
        # check this against it); counting with numpy keeps bootstrap resampling fast.
        name = self.config_name
        refs = np.asarray(references, dtype=np.int64)
        preds = np.asarray(predictions, dtype=np.int64)
        weights = np.ones(len(refs)) if sample_weight is None else np.asarray(sample_weight, float)
        if refs.ndim == 1:
            n = num_labels if num_labels is not None else int(max(refs.max(), preds.max())) + 1
            matrix = np.bincount(refs * n + preds, weights=weights, minlength=n * n)
            matrix = matrix.reshape(n, n)
            tp = np.diag(matrix).copy()
            fp = matrix.sum(axis=0) - tp
            fn = matrix.sum(axis=1) - tp
            # Averages run over the classes that occur (as scikit-learn's default does), so a
            # class absent from this split does not pull the macro average down.
            present = np.zeros(n, dtype=bool)
            present[np.unique(np.concatenate([refs, preds]))] = True
        else:
            w = weights[:, None]
            tp = np.sum(w * ((refs == 1) & (preds == 1)), axis=0)
            fp = np.sum(w * ((refs == 0) & (preds == 1)), axis=0)
            fn = np.sum(w * ((refs == 1) & (preds == 0)), axis=0)
            present = np.ones(refs.shape[1], dtype=bool)
        support = tp + fn

        def score(tp: Any, fp: Any, fn: Any) -> Any:
            if name == "precision":
                num, den = tp, tp + fp
            elif name == "recall":
                num, den = tp, tp + fn
            else:
                num, den = 2 * tp, 2 * tp + fp + fn
            num, den = np.atleast_1d(num), np.atleast_1d(den)
            out = np.full(num.shape, float(zero_division))
            np.divide(num, den, out=out, where=den > 0)
            return out

        per_class = score(tp, fp, fn)
        out: dict[str, Any] = {}
        out[f"{name}_macro"] = float(np.mean(per_class[present]))
        out[f"{name}_micro"] = float(
            score(tp[present].sum(), fp[present].sum(), fn[present].sum())[0]
        )
        total = support[present].sum()
        out[f"{name}_weighted"] = (
            float(np.sum(per_class[present] * support[present]) / total)
            if total > 0
            else float(zero_division)
        )
        out[name] = out[f"{name}_macro"]
        out[f"{name}_per_class"] = [float(v) for v in per_class]
        out["support"] = [int(v) if float(v).is_integer() else float(v) for v in support]
        return out
