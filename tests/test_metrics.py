"""The shipped ``evaluate`` metric modules, checked against scikit-learn on fixed examples
chosen so that a wrong average, a dropped class or a swapped axis would show."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn import metrics as skm

import lepton_platform as lp
from lepton_platform.metrics import METRICS_DIR, MODULES, load_module, module_path

# 4 classes; class 3 never occurs; class 2 is never predicted right.
REFS = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 1, 0, 1])
PREDS = np.array([0, 1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 2])
SCORES = np.array(
    [
        [0.70, 0.10, 0.15, 0.05],
        [0.20, 0.50, 0.20, 0.10],
        [0.60, 0.20, 0.10, 0.10],
        [0.10, 0.60, 0.20, 0.10],
        [0.30, 0.40, 0.20, 0.10],
        [0.40, 0.10, 0.35, 0.15],
        [0.10, 0.45, 0.40, 0.05],
        [0.50, 0.05, 0.40, 0.05],
        [0.25, 0.35, 0.30, 0.10],
        [0.20, 0.50, 0.25, 0.05],
        [0.55, 0.15, 0.15, 0.15],
        [0.10, 0.30, 0.50, 0.10],
    ]
)


def test_every_builtin_metric_is_registered_through_the_hook() -> None:
    specs = {s.name: s for s in lp.list_metrics()}
    expected = {
        "accuracy", "precision", "recall", "f1", "confusion-matrix",
        "balanced-accuracy", "top-k-accuracy", "auroc",
    }  # fmt: skip
    assert expected <= set(specs)
    for name in expected:
        assert specs[name].provider is not None
        assert specs[name].provider.distribution == "lepton-platform"
    assert {n for n in expected if specs[n].needs_scores} == {"top-k-accuracy", "auroc"}


def test_listing_metrics_imports_neither_evaluate_nor_torch() -> None:
    code = (
        "import sys, lepton_platform as lp; names = [s.name for s in lp.list_metrics()];"
        "print(len(names), 'evaluate' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    count, evaluate_loaded, torch_loaded = out.stdout.split()
    assert int(count) >= 8
    assert (evaluate_loaded, torch_loaded) == ("False", "False")


def test_modules_ship_inside_the_package_and_load_once() -> None:
    for module in MODULES:
        path = module_path(module)
        assert path.is_file() and path.is_relative_to(METRICS_DIR)
    assert lp.create_metric("f1") is lp.create_metric("f1")
    assert lp.create_metric("f1") is not lp.create_metric("precision")
    with pytest.raises(lp.UnknownNameError, match="did you mean 'accuracy'"):
        module_path("acuracy")


def test_accuracy_and_balanced_accuracy_match_sklearn() -> None:
    acc = lp.create_metric("accuracy").compute(predictions=PREDS, references=REFS)
    assert acc["accuracy"] == pytest.approx(skm.accuracy_score(REFS, PREDS))
    weights = np.linspace(0.1, 2.0, len(REFS))
    weighted = lp.create_metric("accuracy").compute(
        predictions=PREDS, references=REFS, sample_weight=weights
    )
    expected = skm.accuracy_score(REFS, PREDS, sample_weight=weights)
    assert weighted["accuracy"] == pytest.approx(expected) != acc["accuracy"]
    refs, preds = [0, 0, 0, 0, 1, 1, 2], [0, 0, 0, 0, 0, 1, 1]  # imbalanced
    bal = lp.create_metric("balanced-accuracy").compute(predictions=preds, references=refs)
    assert bal["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(refs, preds))
    assert bal["balanced_accuracy"] == pytest.approx(0.5)  # accuracy would be 5/7


@pytest.mark.parametrize(
    ("name", "function"),
    [("precision", skm.precision_score), ("recall", skm.recall_score), ("f1", skm.f1_score)],
)
def test_classwise_scores_match_sklearn(name: str, function: object) -> None:
    out = lp.create_metric(name).compute(predictions=PREDS, references=REFS, num_labels=4)
    for average in ("macro", "micro", "weighted"):
        expected = function(REFS, PREDS, average=average, zero_division=0)  # type: ignore[operator]
        assert out[f"{name}_{average}"] == pytest.approx(expected), average
    assert out[name] == out[f"{name}_macro"]
    per_class = function(REFS, PREDS, labels=[0, 1, 2, 3], average=None, zero_division=0)  # type: ignore[operator]
    assert out[f"{name}_per_class"] == pytest.approx(per_class.tolist())
    assert out["support"] == [4, 4, 4, 0]


def test_classwise_scores_multilabel_match_sklearn() -> None:
    refs = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0]])
    preds = np.array([[1, 0, 0], [0, 1, 1], [1, 0, 0], [0, 0, 1], [0, 1, 0]])
    out = lp.create_metric("f1").compute(predictions=preds, references=refs, num_labels=3)
    for average in ("macro", "micro", "weighted"):
        assert out[f"f1_{average}"] == pytest.approx(skm.f1_score(refs, preds, average=average))
    assert out["f1_per_class"] == pytest.approx(skm.f1_score(refs, preds, average=None).tolist())
    acc = lp.create_metric("accuracy").compute(predictions=preds, references=refs)
    assert acc["accuracy"] == pytest.approx(skm.accuracy_score(refs, preds)) == 0.2


def test_confusion_matrix_keeps_absent_classes_and_orientation() -> None:
    out = lp.create_metric("confusion-matrix").compute(
        predictions=PREDS, references=REFS, num_labels=4
    )
    expected = skm.confusion_matrix(REFS, PREDS, labels=[0, 1, 2, 3]).tolist()
    assert out["confusion_matrix"] == expected
    assert out["confusion_matrix"][2] == [2, 2, 0, 0]  # row = true class 2
    assert out["confusion_matrix"][3] == [0, 0, 0, 0]
    json.dumps(out)


def test_top_k_accuracy_matches_sklearn() -> None:
    metric = lp.create_metric("top-k-accuracy")
    for k in (1, 2, 3):
        out = metric.compute(predictions=SCORES, references=REFS, k=k)
        expected = skm.top_k_accuracy_score(REFS, SCORES, k=k, labels=[0, 1, 2, 3])
        assert out["top_k_accuracy"] == pytest.approx(expected) and out["k"] == k
    assert metric.compute(predictions=SCORES, references=REFS, k=9)["top_k_accuracy"] == 1.0
    assert metric.compute(predictions=SCORES, references=REFS, k=1)[
        "top_k_accuracy"
    ] == pytest.approx(skm.accuracy_score(REFS, SCORES.argmax(1)))


def test_auroc_binary_multiclass_and_multilabel_match_sklearn() -> None:
    metric = lp.create_metric("auroc")
    # binary: the score of the second class, with a tie
    refs = np.array([0, 0, 1, 1, 0, 1, 0])
    pos = np.array([0.1, 0.4, 0.35, 0.8, 0.5, 0.5, 0.2])
    out = metric.compute(predictions=np.stack([1 - pos, pos], 1), references=refs)
    assert out["auroc"] == pytest.approx(skm.roc_auc_score(refs, pos))
    # multi-class one-vs-rest over three classes that all occur
    scores3 = SCORES[:, :3] / SCORES[:, :3].sum(1, keepdims=True)
    out = metric.compute(predictions=scores3, references=REFS)
    assert out["auroc"] == pytest.approx(
        skm.roc_auc_score(REFS, scores3, multi_class="ovr", average="macro")
    )
    assert out["auroc_weighted"] == pytest.approx(
        skm.roc_auc_score(REFS, scores3, multi_class="ovr", average="weighted")
    )
    for c in range(3):
        assert out["auroc_per_class"][c] == pytest.approx(
            skm.roc_auc_score(c == REFS, scores3[:, c])
        )
    # a class that never occurs has no AUROC and does not enter the average
    out = metric.compute(predictions=SCORES, references=REFS)
    assert out["auroc_per_class"][3] is None
    assert out["auroc"] == pytest.approx(np.mean(out["auroc_per_class"][:3]))
    # multi-label
    refs_ml = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 1]])
    scores_ml = np.array(
        [[0.9, 0.2, 0.6], [0.3, 0.7, 0.4], [0.6, 0.4, 0.3], [0.2, 0.1, 0.8], [0.4, 0.5, 0.1],
         [0.5, 0.6, 0.7]]
    )  # fmt: skip
    out = metric.compute(predictions=scores_ml, references=refs_ml)
    assert out["auroc"] == pytest.approx(skm.roc_auc_score(refs_ml, scores_ml, average="macro"))


def test_a_metric_with_options_is_loaded_per_configuration() -> None:
    assert load_module("classwise", "recall").config_name == "recall"
    with pytest.raises(ValueError, match="config_name must be one of"):
        load_module("classwise", "specificity")
