"""The evaluate engine: metrics on a model's logits, per-class results, confusion matrix and a
bootstrap confidence interval for the headline metric.

Metrics come in as :class:`Metric` objects (a registered :class:`~lepton_platform.MetricSpec`
and its options); the application layer resolves names through the registry, this engine
never does. What a metric's result means is read from its spec's typed fields: the headline key,
the direction, whether it reads scores::

    >>> from lepton_platform.engine.evaluate import Metric, compute_metrics
    >>> metrics = [Metric(lp.get_metric("accuracy")), Metric(lp.get_metric("f1"))]  # doctest: +SKIP
    >>> compute_metrics(task, logits, labels, metrics)                              # doctest: +SKIP
    {'accuracy': 0.9, 'f1': 0.88, 'f1_macro': 0.88, 'f1_micro': 0.9, 'f1_weighted': 0.9,
     'per_class': {'cat': {'f1': 0.9, 'support': 10}, ...}}

Only ever report on data that chose nothing: the test split for the final numbers, the
validation split for early stopping and model choice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from lepton_platform.errors import ConfigError, DataError
from lepton_platform.specs import MetricSpec

if TYPE_CHECKING:
    from lepton_platform.tasks import Task

__all__ = [
    "EvaluationReport",
    "Metric",
    "Monitor",
    "bootstrap_ci",
    "compute_metrics",
    "evaluate_predictions",
]

_CORE = "lepton-platform"


@dataclass(frozen=True)
class Metric:
    """A metric to compute: its spec and the extra ``compute`` arguments (``{"k": 3}``)."""

    spec: MetricSpec
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def key(self) -> str:
        """The result key of its headline number (from the spec)."""
        return self.spec.key

    @property
    def higher_is_better(self) -> bool:
        return self.spec.higher_is_better

    def module(self) -> Any:
        """The loaded metric module (once per process and spec)."""
        return _module(self.spec)

    @classmethod
    def of(cls, metric: Metric | MetricSpec) -> Metric:
        return metric if isinstance(metric, Metric) else cls(metric)


_modules: dict[int, tuple[MetricSpec, Any]] = {}


def _module(spec: MetricSpec) -> Any:
    """The spec's module, loaded once per process (kept with the spec, so ids stay unique)."""
    entry = _modules.get(id(spec))
    if entry is None or entry[0] is not spec:
        entry = _modules[id(spec)] = (spec, spec.create())
    return entry[1]


@dataclass(frozen=True)
class Monitor:
    """What chooses the best epoch (and the best alpha, the best trial): the validation loss, or
    a metric whose spec gives the direction. ``mode`` overrides the direction."""

    metric: Metric | None = None
    mode: Literal["min", "max"] | None = None

    @property
    def name(self) -> str:
        return "loss" if self.metric is None else self.metric.name

    @property
    def higher_is_better(self) -> bool:
        if self.mode is not None:
            return self.mode == "max"
        return False if self.metric is None else self.metric.higher_is_better

    @property
    def direction(self) -> Literal["min", "max"]:
        return "max" if self.higher_is_better else "min"

    @property
    def history_key(self) -> str:
        """The key of the monitored value in an epoch's history entry (``val_loss``,
        ``val_accuracy``, ``val_class_mae``: the metric's result key)."""
        return "val_loss" if self.metric is None else f"val_{self.metric.key}"

    def value(self, task: Task, logits: np.ndarray, labels: np.ndarray) -> float:
        """The monitored value on these predictions (the loss, or the metric's headline)."""
        if self.metric is None:
            import torch

            return float(task.loss(torch.as_tensor(logits), torch.as_tensor(labels)))
        values = compute_metrics(task, logits, labels, [self.metric])
        if self.metric.key not in values:
            raise ConfigError(
                f"monitor {self.metric.name!r}: its compute() returned {sorted(values)}, not its "
                f"headline key {self.metric.key!r} (from {self.metric.spec.provider}); fix the "
                "metric spec's headline, or monitor another metric"
            )
        return float(values[self.metric.key])

    def better(self, value: float, than: float | None) -> bool:
        """Whether ``value`` improves on ``than`` (``None``: nothing yet); NaN never does."""
        if math.isnan(value):
            return False
        if than is None:
            return True
        return value > than if self.higher_is_better else value < than

    def oriented(self, value: float) -> float:
        """``value`` turned so that higher is better (for choices made by ``max``)."""
        return value if self.higher_is_better else -value


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
    metric: Metric, task: Task, predicted: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, dict[str, Any]]:
    spec = metric.spec
    if task.multi_label and not spec.multi_label:
        raise ConfigError(
            f"metric {spec.name!r} does not support multi-label tasks ({task.name!r}); "
            "drop it from metrics"
        )
    if spec.binary_only and task.num_labels != 2:
        raise ConfigError(
            f"metric {spec.name!r} is defined for two-class tasks only; task {task.name!r} has "
            f"{task.num_labels} labels"
        )
    kwargs = dict(metric.options)
    if spec.num_labels:
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
    metrics: Sequence[Metric | MetricSpec],
) -> dict[str, Any]:
    """Compute ``metrics`` on ``logits`` ``(examples, num_labels)`` against ``labels``.

    Predictions and scores come from ``task.predict``. Returns flat scalar entries
    (``accuracy``, ``f1``, ``f1_macro``, ...), plus ``per_class`` (``{label name: {precision,
    recall, f1, support, auroc}}``) and ``confusion_matrix`` (list of lists) when a metric
    produces them. Bad labels (outside the label space) or NaN logits raise ``DataError``.
    """
    resolved = [Metric.of(m) for m in metrics]
    if not resolved:
        raise ConfigError("no metrics to compute: pass metrics or use a task with defaults")
    logits, labels = _check_inputs(task, logits, labels)
    predicted, scores = _predict(task, logits)
    result: dict[str, Any] = {}
    per_class: dict[str, dict[str, Any]] = {}
    for metric in resolved:
        inputs, kwargs = _metric_call(metric, task, predicted, scores)
        try:
            out = metric.module().compute(predictions=inputs, references=labels, **kwargs)
        except ValueError as exc:
            raise DataError(
                f"metric {metric.name!r} (from {metric.spec.provider}) failed: {exc}"
            ) from exc
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
    metrics: Sequence[Metric | MetricSpec],
    *,
    headline: Metric | MetricSpec | None = None,
    n_resamples: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> EvaluationReport:
    """Compute ``metrics`` and, with ``n_resamples > 0``, a bootstrap interval for ``headline``
    (default: the first metric that is not the confusion matrix). Use it on the test split only,
    after every choice is made."""
    resolved = [Metric.of(m) for m in metrics]
    values = compute_metrics(task, logits, labels, resolved)
    per_class = values.pop("per_class", {})
    matrix = values.pop("confusion_matrix", None)
    head = Metric.of(headline) if headline is not None else None
    if head is None:
        head = next((m for m in resolved if m.key != "confusion_matrix"), None)
    report = EvaluationReport(
        metrics=values,
        label_names=list(task.label_names),
        num_examples=int(np.asarray(labels).shape[0]),
        per_class=per_class,
        confusion_matrix=matrix,
        headline=None if head is None else head.name,
    )
    if head is not None:
        if head.name not in {m.name for m in resolved}:
            extra = compute_metrics(task, logits, labels, [head])
            values.update({k: v for k, v in extra.items() if k != "per_class"})
        value = values.get(head.key)
        report.headline_value = float(value) if isinstance(value, int | float) else None
        if n_resamples:
            low, high = bootstrap_ci(
                head,
                task,
                logits,
                labels,
                n_resamples=n_resamples,
                confidence=confidence,
                seed=seed,
            )
            report.ci_low, report.ci_high = low, high
            report.confidence, report.n_resamples = confidence, n_resamples
    return report


def bootstrap_values(
    metric: Metric | MetricSpec,
    task: Task,
    logits: np.ndarray,
    labels: np.ndarray,
    indices: Iterable[np.ndarray],
) -> np.ndarray:
    """The metric's headline value on each resample (an index array per resample);
    ``nan`` where it is undefined (AUROC with one class drawn)."""
    metric = Metric.of(metric)
    logits, labels = _check_inputs(task, logits, labels)
    predicted, scores = _predict(task, logits)
    inputs, kwargs = _metric_call(metric, task, predicted, scores)
    module = metric.module()
    # The shipped modules accept arrays directly: calling their ``_compute`` skips the Arrow
    # round trip of ``compute`` (about 7 ms a call), which dominates a thousand resamples.
    fast = getattr(module, "_compute", None)
    provider = metric.spec.provider
    if provider is None or provider.distribution != _CORE or fast is None:
        fast = module.compute
    out: list[float] = []
    for idx in indices:
        try:
            result = fast(predictions=inputs[idx], references=labels[idx], **kwargs)
        except ValueError:
            out.append(math.nan)
            continue
        value = result.get(metric.key) if result else None
        ok = isinstance(value, int | float) and math.isfinite(value)
        out.append(float(value) if ok else math.nan)  # type: ignore[arg-type]
    return np.asarray(out, dtype=np.float64)


def bootstrap_ci(
    metric: Metric | MetricSpec,
    task: Task,
    logits: np.ndarray,
    labels: np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
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
    metric = Metric.of(metric)
    n = np.asarray(labels).shape[0]
    rng = np.random.default_rng(seed)
    draws = (np.asarray(rng.integers(0, n, size=n)) for _ in range(n_resamples))
    values = bootstrap_values(metric, task, logits, labels, draws)
    values = values[np.isfinite(values)]
    if len(values) * 2 < n_resamples:
        raise DataError(
            f"metric {metric.name!r} was undefined on {n_resamples - len(values)} of "
            f"{n_resamples} bootstrap resamples of {n} examples; the set is too small"
        )
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)
