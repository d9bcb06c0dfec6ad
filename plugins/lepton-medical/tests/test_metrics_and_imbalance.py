"""Clinical metrics through the registry and the evaluate engine, threshold choice on
validation, calibration and its diagram, and the imbalance helpers."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
from lepton_medical.clinical import choose_threshold, reliability_diagram, threshold_metrics
from lepton_medical.imbalance import (
    balanced_class_weights,
    balanced_oversample,
    class_counts,
)
from PIL import Image

import lepton_platform as lp
from lepton_platform.engine.evaluate import Metric, compute_metrics
from lepton_platform.errors import ConfigError, DataError

SCORES = np.array([[0.9, 0.1], [0.7, 0.3], [0.45, 0.55], [0.35, 0.65], [0.2, 0.8], [0.6, 0.4]])
LABELS = np.array([0, 0, 0, 1, 1, 1])


def test_rates_at_default_and_given_threshold() -> None:
    def rate(name: str, **options: float) -> float:
        out = lp.create_metric(name).compute(predictions=SCORES, references=LABELS, **options)
        return float(out[name])

    # at 0.5: called positive rows 2, 3, 4 -> TP 2, FP 1, FN 1, TN 2
    assert rate("sensitivity") == pytest.approx(2 / 3)
    assert rate("specificity") == pytest.approx(2 / 3)
    assert rate("ppv") == pytest.approx(2 / 3)
    assert rate("npv") == pytest.approx(2 / 3)
    # at 0.4: rows 2..5 positive -> TP 3, FP 1, FN 0, TN 2
    assert rate("sensitivity", threshold=0.4) == 1.0
    assert rate("specificity", threshold=0.4) == pytest.approx(2 / 3)
    assert rate("ppv", threshold=0.4) == pytest.approx(3 / 4)
    assert rate("npv", threshold=0.4) == 1.0


def test_choose_threshold_rules() -> None:
    positive = SCORES[:, 1]
    # J = 2/3 at 0.65 (sens 2/3, spec 1) and at 0.4 (sens 1, spec 2/3): ties go to the higher
    assert choose_threshold(SCORES, LABELS) == pytest.approx(0.65)
    assert choose_threshold(positive, LABELS, "sensitivity>=0.6") == pytest.approx(0.65)
    assert choose_threshold(positive, LABELS, "specificity>=1") == pytest.approx(0.65)
    with pytest.raises(ConfigError, match="unknown threshold rule"):
        choose_threshold(positive, LABELS, "f1")
    with pytest.raises(DataError, match="positive and negative"):
        choose_threshold(positive, np.zeros(6))


def test_threshold_chosen_on_validation_used_on_test() -> None:
    task = lp.create_task("classification", label_names=["benign", "malignant"])
    logits = np.log(SCORES)
    out = threshold_metrics(task, (logits, LABELS), (logits[::-1], LABELS[::-1]))
    assert out["threshold"] == pytest.approx(0.65)
    assert out["sensitivity"] == pytest.approx(2 / 3) and out["specificity"] == 1.0
    assert out["ppv"] == 1.0 and out["npv"] == pytest.approx(3 / 4)
    assert out["auroc"] == pytest.approx(8 / 9)
    assert "ece" in out and "balanced_accuracy" in out


def test_ece_and_reliability_diagram(tmp_path: Path) -> None:
    metric = lp.create_metric("ece")
    perfect = metric.compute(predictions=[[1.0, 0.0], [0.0, 1.0]], references=[0, 1])
    assert perfect["ece"] == 0.0
    out = metric.compute(predictions=SCORES, references=LABELS, n_bins=2)
    # every top-label confidence is above 0.5: one bin, confidence 0.7, accuracy 4/6
    assert out["ece"] == pytest.approx(0.7 - 4 / 6)
    task = lp.create_task("classification", label_names=["a", "b"])
    values = compute_metrics(
        task,
        np.log(SCORES),
        LABELS,
        [Metric(lp.get_metric("ece"), {"n_bins": 2}), Metric(lp.get_metric("sensitivity"))],
    )
    assert values["ece"] == pytest.approx(out["ece"], abs=1e-6)  # the engine's scores: float32
    assert values["sensitivity"] == pytest.approx(2 / 3)
    path = reliability_diagram(SCORES, LABELS, tmp_path / "plots" / "reliability.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 100


def test_multiclass_rates_are_macro_one_vs_rest() -> None:
    scores = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.3, 0.5], [0.3, 0.6, 0.1]]
    out = lp.create_metric("sensitivity").compute(predictions=scores, references=[0, 1, 2, 0])
    assert out["sensitivity_per_class"] == [0.5, 1.0, 1.0]
    assert out["sensitivity"] == pytest.approx(2.5 / 3)


def _labelled(labels: list[int]) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {"x": list(range(len(labels))), "label": labels},
        features=datasets.Features(
            {"x": datasets.Value("int64"), "label": datasets.ClassLabel(names=["neg", "pos"])}
        ),
    )


def test_class_weights_and_balanced_oversample() -> None:
    train = _labelled([0] * 6 + [1] * 2)
    assert class_counts(train) == [6, 2]
    weights = balanced_class_weights(train)
    assert weights == pytest.approx([8 / 12, 8 / 4])
    task = lp.create_task("classification", label_names=["neg", "pos"], class_weights=weights)
    assert task.config()["class_weights"] == pytest.approx(weights)
    balanced = balanced_oversample(train, seed=1)
    assert class_counts(balanced) == [6, 6]
    assert set(balanced["x"]) == set(range(8))  # every original row kept
    assert balanced_oversample(train, seed=1)["x"] == balanced["x"]
    with pytest.raises(DataError, match="no rows"):
        balanced_class_weights(_labelled([0, 0, 0]))
