"""The evaluate engine: metrics from logits through the task and the registry, per-class
results by label name, a plugin's metric used like a built-in, bad input, and bootstrap
confidence intervals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm

import lepton_platform as lp
from lepton_platform import MetricSpec, hookimpl
from lepton_platform.engine.evaluate import (
    EvaluationReport,
    Metric,
    bootstrap_ci,
    compute_metrics,
    evaluate_predictions,
)

LABELS = ["cat", "dog", "fox"]


def specs(*names: str) -> list[MetricSpec]:
    """Registered metrics by name (the application layer resolves names; the engine takes
    specs)."""
    return [lp.get_metric(name) for name in names]


def _logits(n: int, seed: int, skill: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Logits that favour the true class by ``skill`` (so metrics are neither 0 nor 1)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), labels] += skill
    return logits.astype(np.float32), labels


@pytest.fixture(scope="module")
def task() -> Any:
    return lp.create_task("classification", label_names=LABELS)


def test_compute_metrics_from_logits_matches_sklearn(task: Any) -> None:
    logits, labels = _logits(80, seed=1)
    preds = logits.argmax(1)
    out = compute_metrics(
        task, logits, labels, specs("accuracy", "f1", "confusion-matrix", "auroc")
    )
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(labels, preds))
    assert (
        out["f1"] == out["f1_macro"] == pytest.approx(skm.f1_score(labels, preds, average="macro"))
    )
    assert out["f1_weighted"] == pytest.approx(skm.f1_score(labels, preds, average="weighted"))
    scores = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert out["auroc"] == pytest.approx(skm.roc_auc_score(labels, scores, multi_class="ovr"))
    assert out["confusion_matrix"] == skm.confusion_matrix(labels, preds).tolist()
    per_class = out["per_class"]
    assert list(per_class) == LABELS
    f1s = skm.f1_score(labels, preds, average=None)
    for i, name in enumerate(LABELS):
        assert per_class[name]["f1"] == pytest.approx(f1s[i])
        assert per_class[name]["support"] == int((labels == i).sum())
        assert 0.0 <= per_class[name]["auroc"] <= 1.0
    json.dumps(out)


def test_default_metrics_come_from_the_task(task: Any) -> None:
    logits, labels = _logits(30, seed=2)
    out = compute_metrics(task, logits, labels, specs(*task.default_metrics))
    assert {"accuracy", "f1", "balanced_accuracy"} <= set(out)
    assert "confusion_matrix" not in out
    assert lp.get_metric("balanced-accuracy").key == "balanced_accuracy"
    assert lp.get_metric("f1").key == "f1"


def test_top_k_options_reach_the_module(task: Any) -> None:
    logits, labels = _logits(40, seed=3, skill=0.3)
    out = compute_metrics(task, logits, labels, [Metric(lp.get_metric("top-k-accuracy"), {"k": 2})])
    assert out["k"] == 2
    assert out["top_k_accuracy"] == pytest.approx(skm.top_k_accuracy_score(labels, logits, k=2))


def test_multilabel_task_and_unsupported_metric() -> None:
    task = lp.create_task("multilabel-classification", label_names=["red", "round", "big"])
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, (40, 3))
    logits = (labels * 2 - 1) * 0.8 + rng.normal(size=(40, 3))
    out = compute_metrics(task, logits, labels, specs("f1", "auroc", "accuracy"))
    preds = (logits > 0).astype(int)
    assert out["f1_micro"] == pytest.approx(skm.f1_score(labels, preds, average="micro"))
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(labels, preds))
    assert out["auroc"] == pytest.approx(skm.roc_auc_score(labels, logits, average="macro"))
    assert set(out["per_class"]) == {"red", "round", "big"}
    with pytest.raises(lp.ConfigError, match="does not support multi-label"):
        compute_metrics(task, logits, labels, specs("balanced-accuracy"))


def test_bad_input_is_named(task: Any) -> None:
    logits, labels = _logits(10, seed=5)
    labels[7] = 3
    with pytest.raises(lp.DataError, match="label 3 at row 7 is outside the label space"):
        compute_metrics(task, logits, labels, specs("accuracy"))
    logits, labels = _logits(10, seed=5)
    logits[4, 1] = np.nan
    with pytest.raises(lp.DataError, match="NaN or infinite at row 4"):
        compute_metrics(task, logits, labels, specs("accuracy"))
    with pytest.raises(lp.DataError, match="empty"):
        compute_metrics(task, np.zeros((0, 3)), np.zeros(0, dtype=int), specs("accuracy"))
    with pytest.raises(lp.DataError, match=r"shape \(examples, 3\)"):
        compute_metrics(task, np.zeros((4, 2)), np.zeros(4, dtype=int), specs("accuracy"))
    with pytest.raises(lp.UnknownNameError, match="did you mean 'accuracy'"):
        compute_metrics(task, *_logits(5, seed=0), specs("acuracy"))


class _Agreement:
    """A metric shaped like an ``evaluate`` module: the fraction of exact agreements."""

    def compute(self, *, predictions: Any, references: Any) -> dict[str, float]:
        return {"agreement": float(np.mean(np.asarray(predictions) == np.asarray(references)))}


class _MetricPlugin:
    @hookimpl
    def lepton_metrics(self) -> list[MetricSpec]:
        return [MetricSpec(name="agreement", factory=_Agreement)]


@pytest.fixture
def agreement_plugin() -> Iterator[None]:
    lp.register_plugin(_MetricPlugin(), name="agreement-plugin", distribution="lepton-agree")
    yield
    lp.unregister_plugin("agreement-plugin")


def test_a_plugin_metric_is_used_like_a_builtin(task: Any, agreement_plugin: None) -> None:
    logits, labels = _logits(50, seed=6)
    out = compute_metrics(task, logits, labels, specs("agreement", "accuracy"))
    assert out["agreement"] == pytest.approx(out["accuracy"])
    low, high = bootstrap_ci(lp.get_metric("agreement"), task, logits, labels, n_resamples=60)
    assert low <= out["agreement"] <= high


def test_bootstrap_interval_brackets_the_estimate_and_shrinks_with_data(task: Any) -> None:
    small_logits, small_labels = _logits(60, seed=7)
    big_logits, big_labels = _logits(600, seed=7)
    small = bootstrap_ci(
        lp.get_metric("f1"), task, small_logits, small_labels, n_resamples=300, seed=1
    )
    again = bootstrap_ci(
        lp.get_metric("f1"), task, small_logits, small_labels, n_resamples=300, seed=1
    )
    big = bootstrap_ci(lp.get_metric("f1"), task, big_logits, big_labels, n_resamples=300, seed=1)
    assert small == again  # seeded
    point = compute_metrics(task, small_logits, small_labels, specs("f1"))["f1"]
    assert small[0] < point < small[1]
    assert (big[1] - big[0]) < 0.6 * (small[1] - small[0])
    narrow = bootstrap_ci(
        lp.get_metric("f1"),
        task,
        small_logits,
        small_labels,
        n_resamples=300,
        seed=1,
        confidence=0.5,
    )
    assert small[0] < narrow[0] < narrow[1] < small[1]
    auroc = bootstrap_ci(lp.get_metric("auroc"), task, small_logits, small_labels, n_resamples=200)
    assert 0.5 < auroc[0] < auroc[1] <= 1.0
    with pytest.raises(lp.ConfigError, match="confidence"):
        bootstrap_ci(lp.get_metric("f1"), task, small_logits, small_labels, confidence=1.5)


def test_evaluation_report_is_json_ready(task: Any) -> None:
    logits, labels = _logits(90, seed=8)
    report = evaluate_predictions(
        task, logits, labels, specs("f1", "accuracy", "confusion-matrix"), n_resamples=100, seed=3
    )
    assert isinstance(report, EvaluationReport)
    assert report.headline == "f1"
    assert report.headline_value == pytest.approx(report.metrics["f1"])
    assert report.ci_low is not None and report.ci_high is not None
    assert report.ci_low <= report.headline_value <= report.ci_high
    assert report.confusion_matrix is not None and len(report.confusion_matrix) == 3
    data = json.loads(json.dumps(report.to_json()))
    assert data["bootstrap"]["n_resamples"] == 100
    assert data["num_examples"] == 90
    assert set(data["per_class"]) == set(LABELS)
