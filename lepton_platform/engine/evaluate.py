"""The evaluate engine: metrics on a model's logits, per-class results, confusion matrix and a
bootstrap confidence interval for the headline metric.

Metrics are resolved by name through the registry (``lepton_platform.get_metric``), so the
built-in ``evaluate`` modules and any plugin's are used the same way::

    >>> from lepton_platform.engine.evaluate import compute_metrics
    >>> compute_metrics(task, logits, labels, ["accuracy", "f1"])  # doctest: +SKIP
    {'accuracy': 0.9, 'f1': 0.88, 'f1_macro': 0.88, 'f1_micro': 0.9, 'f1_weighted': 0.9,
     'per_class': {'cat': {'f1': 0.9, 'support': 10}, ...}}

Only ever report on data that chose nothing: the test split for the final numbers, the
validation split for early stopping and model choice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lepton_platform.errors import ConfigError, DataError
from lepton_platform.registry import create_metric, get_metric

if TYPE_CHECKING:
    from lepton_platform.specs import MetricSpec
    from lepton_platform.tasks import Task

__all__ = [
    "EvaluationReport",
    "bootstrap_ci",
    "compute_metrics",
    "evaluate_predictions",
    "headline_key",
]

_CORE = "lepton-platform"


def headline_key(metric: str) -> str:
    """The result key holding a metric's single headline number (``"f1"`` -> ``"f1"``, the
    macro average; ``"balanced-accuracy"`` -> ``"balanced_accuracy"``)."""
    spec = get_metric(metric)
    key = spec.metadata.get("headline")
    return str(key) if key else metric.replace("-", "_")


def _check_inputs(task: Task, logits: np.ndarray, labels: np.ndarray) -> tuple[Any, Any]:
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    n_labels = task.num_labels
    if logits.ndim != 2 or logits.shape[1] != n_labels:
        raise DataError(
            f"logits must have shape (examples, {n_labels}) for the {n_labels} labels of task "
            f"{task.name!r}, got {logits.shape}"
        )
    if logits.shape[0] == 0:
        raise DataError("cannot compute metrics on an empty set of examples (0 rows)")
    if labels.shape[0] != logits.shape[0]:
        raise DataError(f"{logits.shape[0]} rows of logits but {labels.shape[0]} labels")
    bad = np.flatnonzero(~np.isfinite(logits).all(axis=1))
    if bad.size:
        raise DataError(
            f"logits are NaN or infinite at row {int(bad[0])} ({bad.size} rows in all); "
            "the model diverged or its inputs hold NaN"
        )
    if task.multi_label:
        if labels.shape != logits.shape:
            raise DataError(
                f"multi-label labels must be 0/1 vectors of shape {logits.shape}, "
                f"got {labels.shape}"
            )
        wrong = np.argwhere((labels != 0) & (labels != 1))
        if wrong.size:
            row, col = (int(v) for v in wrong[0])
            raise DataError(f"multi-label label at row {row}, column {col} is not 0 or 1")
        return logits, labels.astype(np.int64)
    if labels.ndim != 1:
        raise DataError(f"labels must be a vector of label indices, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.mod(labels, 1) == 0):
            raise DataError(f"labels must be integer label indices, got dtype {labels.dtype}")
        labels = labels.astype(np.int64)
    outside = np.flatnonzero((labels < 0) | (labels >= n_labels))
    if outside.size:
        row = int(outside[0])
        raise DataError(
            f"label {int(labels[row])} at row {row} is outside the label space of "
            f"{n_labels} labels {task.label_names} ({outside.size} rows in all)"
        )
    return logits, labels.astype(np.int64)


def _predict(task: Task, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import torch

    predicted, scores = task.predict(torch.from_numpy(np.ascontiguousarray(logits)))
    return predicted.cpu().numpy().astype(np.int64), scores.cpu().double().numpy()


def _metric_call(
    spec: MetricSpec,
    task: Task,
    predicted: np.ndarray,
    scores: np.ndarray,
    options: Mapping[str, Any] | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    if task.multi_label and not spec.metadata.get("multi_label", True):
        raise ConfigError(
            f"metric {spec.name!r} does not support multi-label tasks ({task.name!r}); "
            "drop it from metrics"
        )
    kwargs = dict(options or {})
    if spec.metadata.get("num_labels"):
        kwargs.setdefault("num_labels", task.num_labels)
    return (scores if spec.needs_scores else predicted), kwargs


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return repr(value)


def compute_metrics(
    task: Task,
    logits: np.ndarray,
    labels: np.ndarray,
    metrics: Sequence[str] | None = None,
    *,
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Compute registered metrics on ``logits`` ``(examples, num_labels)`` against ``labels``.

    ``metrics`` defaults to ``task.default_metrics``. Predictions and scores come from
    ``task.predict``. Returns flat scalar entries (``accuracy``, ``f1``, ``f1_macro``, ...),
    plus ``per_class`` (``{label name: {precision, recall, f1, support, auroc}}``) and
    ``confusion_matrix`` (list of lists) when a requested metric produces them.
    ``metric_options`` passes extra ``compute`` arguments per metric (``{"top-k-accuracy":
    {"k": 3}}``). Bad labels (outside the label space) or NaN logits raise ``DataError``.
    """
    names = list(task.default_metrics if metrics is None else metrics)
    if not names:
        raise ConfigError("no metrics to compute: pass metric names or use a task with defaults")
    logits, labels = _check_inputs(task, logits, labels)
    predicted, scores = _predict(task, logits)
    result: dict[str, Any] = {}
    per_class: dict[str, dict[str, Any]] = {}
    for name in names:
        spec = get_metric(name)
        inputs, kwargs = _metric_call(
            spec, task, predicted, scores, (metric_options or {}).get(name)
        )
        module = create_metric(name)
        try:
            out = module.compute(predictions=inputs, references=labels, **kwargs)
        except ValueError as exc:
            raise DataError(f"metric {name!r} (from {spec.provider}) failed: {exc}") from exc
        _merge(result, per_class, out or {}, task)
    if per_class:
        result["per_class"] = per_class
    return result


def _merge(
    result: dict[str, Any], per_class: dict[str, dict[str, Any]], out: Mapping[str, Any], task: Task
) -> None:
    n = task.num_labels
    for key, value in out.items():
        if isinstance(value, np.ndarray):
            value = value.tolist()
        is_vector = isinstance(value, list | tuple) and len(value) == n
        if key.endswith("_per_class") and is_vector:
            stat = key[: -len("_per_class")]
            for label, v in zip(task.label_names, value, strict=True):
                per_class.setdefault(label, {})[stat] = _jsonable(v)
        elif key == "support" and is_vector:
            for label, v in zip(task.label_names, value, strict=True):
                per_class.setdefault(label, {})["support"] = _jsonable(v)
        else:
            result[key] = _jsonable(value)


@dataclass
class EvaluationReport:
    """Everything one evaluation produced, JSON-ready through :meth:`to_json`.

    ``metrics`` holds the flat scalars; ``headline`` names the metric the confidence interval
    (``ci_low``, ``ci_high``, at ``confidence``) is for.
    """

    metrics: dict[str, Any]
    label_names: list[str]
    num_examples: int
    per_class: dict[str, dict[str, Any]] = field(default_factory=dict)
    confusion_matrix: list[Any] | None = None
    headline: str | None = None
    headline_value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float | None = None
    n_resamples: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "metrics": _jsonable(self.metrics),
            "label_names": list(self.label_names),
            "num_examples": self.num_examples,
            "per_class": _jsonable(self.per_class),
            "confusion_matrix": _jsonable(self.confusion_matrix),
            "headline": self.headline,
            "headline_value": _jsonable(self.headline_value),
        }
        if self.n_resamples:
            out["bootstrap"] = {
                "low": _jsonable(self.ci_low),
                "high": _jsonable(self.ci_high),
                "confidence": self.confidence,
                "n_resamples": self.n_resamples,
            }
        return out


def evaluate_predictions(
    task: Task,
    logits: np.ndarray,
    labels: np.ndarray,
    metrics: Sequence[str] | None = None,
    *,
    headline: str | None = None,
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
    n_resamples: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> EvaluationReport:
    """Compute ``metrics`` and, with ``n_resamples > 0``, a bootstrap interval for ``headline``
    (default: the first metric). Use it on the test split only, after every choice is made."""
    names = list(task.default_metrics if metrics is None else metrics)
    values = compute_metrics(task, logits, labels, names, metric_options=metric_options)
    per_class = values.pop("per_class", {})
    matrix = values.pop("confusion_matrix", None)
    head = headline or next((n for n in names if n != "confusion-matrix"), None)
    report = EvaluationReport(
        metrics=values,
        label_names=list(task.label_names),
        num_examples=int(np.asarray(labels).shape[0]),
        per_class=per_class,
        confusion_matrix=matrix,
        headline=head,
    )
    if head is not None:
        key = headline_key(head)
        if head not in names:
            extra = compute_metrics(task, logits, labels, [head], metric_options=metric_options)
            values.update({k: v for k, v in extra.items() if k != "per_class"})
        value = values.get(key)
        report.headline_value = float(value) if isinstance(value, int | float) else None
        if n_resamples:
            opts = (metric_options or {}).get(head)
            low, high = bootstrap_ci(
                head,
                task,
                logits,
                labels,
                n_resamples=n_resamples,
                confidence=confidence,
                seed=seed,
                metric_options=opts,
            )
            report.ci_low, report.ci_high = low, high
            report.confidence, report.n_resamples = confidence, n_resamples
    return report


def bootstrap_ci(
    metric_name: str,
    task: Task,
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    metric_options: Mapping[str, Any] | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval ``(low, high)`` of a metric's headline value.

    Examples are resampled with replacement ``n_resamples`` times (seeded). Resamples on which
    the metric is undefined (AUROC with one class drawn) are skipped; if more than half are,
    the set is too small and ``DataError`` says so.
    """
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ConfigError(f"n_resamples must be at least 1, got {n_resamples}")
    logits, labels = _check_inputs(task, logits, labels)
    predicted, scores = _predict(task, logits)
    spec = get_metric(metric_name)
    key = headline_key(metric_name)
    inputs, kwargs = _metric_call(spec, task, predicted, scores, metric_options)
    module = create_metric(metric_name)
    # The shipped modules accept arrays directly: calling their ``_compute`` skips the Arrow
    # round trip of ``compute`` (about 7 ms a call), which dominates a thousand resamples.
    fast = getattr(module, "_compute", None)
    if spec.provider is None or spec.provider.distribution != _CORE or fast is None:
        fast = module.compute
    rng = np.random.default_rng(seed)
    n = labels.shape[0]
    values: list[float] = []
    for _ in range(n_resamples):
        idx = rng.integers(0, n, size=n)
        try:
            out = fast(predictions=inputs[idx], references=labels[idx], **kwargs)
        except ValueError:
            continue
        value = out.get(key) if out else None
        if isinstance(value, int | float) and math.isfinite(value):
            values.append(float(value))
    if len(values) * 2 < n_resamples:
        raise DataError(
            f"metric {metric_name!r} was undefined on {n_resamples - len(values)} of "
            f"{n_resamples} bootstrap resamples of {n} examples; the set is too small"
        )
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(np.asarray(values), [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)
