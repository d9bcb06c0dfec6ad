"""Side-by-side comparison of transfer strategies, with baselines, controls and the
negative-transfer guard.

Every row runs on the same splits with the same seeds (with ``resample_split`` each seed draws
its own split, the same for every row); the table reports the headline metric on the test split
(mean and standard deviation over seeds), time and memory. Beside the strategies stand:

- the **baselines**, each switched on or off on its own: ``scratch`` (the same architecture
  with random weights, trained on the target like ``finetune``) and, when a source model is
  given, ``source-only`` (that model applied to the target as it is);
- the **controls**: a strategy that declares one (:meth:`Strategy.control`, an adaptation's
  alignment switched off) gets a row trained the same way without the part under test, so a
  gain can be credited to that part rather than to the extra training;
- the **teachers**: a ``distill`` row whose teacher is a model folder gets that teacher beside
  it (kind ``reference``: applied to the test split as it is, never judged by the guard), and
  the student's paired difference against it: the accuracy it keeps.

Each row also reports its size (parameters, how many trained, megabytes) and its prediction
speed on the test split (examples per second, prepared inputs, the evaluation batch size), so
that a small student stands beside its teacher and an adapter beside full fine-tuning.

**The guard** compares each strategy with each baseline (and with its control) on the same
test rows: the difference of the headline metric, oriented so that positive is better, with a
paired bootstrap interval over test examples combined with the spread over seeds (a two-stage
bootstrap: seeds drawn with replacement, then test rows, the same rows for both sides). A
strategy whose whole interval lies below zero against a baseline is flagged in plain words:
that is negative transfer. A deterministic method keeps a non-zero interval: test-set sampling
error does not vanish with the seed spread.

**Before the first training step** every row and baseline is built (options and parameters
checked, the model built, data prepared, the strategy's :meth:`~Strategy.check_job`), so a
comparison fails in seconds or runs to the end. Each row runs in ``<output_dir>/<label>/seed-N``
and keeps there, once finished, its ``result.json``, its test predictions (for the guard, and
for ``resume``) and with ``save_models`` its model; checkpoints and optimiser state are deleted.
"""

from __future__ import annotations

import io
import math
import re
import shutil
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lepton_platform.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from lepton_platform.data import DataBundle
    from lepton_platform.engine.evaluate import Metric
    from lepton_platform.tasks import Task

__all__ = [
    "BASELINES",
    "Comparison",
    "ComparisonRow",
    "Difference",
    "RowSpec",
    "compare",
    "guard",
    "paired_difference",
]

SCRATCH = "scratch"
SOURCE_ONLY = "source-only"
BASELINES = (SCRATCH, SOURCE_ONLY)
#: The kinds of row, in the order of the table.
KINDS = ("strategy", "control", "reference", "baseline")
PREDICTIONS = "test-predictions.npz"


@dataclass(frozen=True)
class RowSpec:
    """One strategy row: the registered strategy, its parameters and the row's label."""

    strategy: str
    params: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""

    @classmethod
    def parse(cls, item: Any) -> RowSpec:
        """A name, ``(name, params)``, or a mapping with ``name`` (``params``, ``label``)."""
        if isinstance(item, RowSpec):
            return item
        if isinstance(item, str):
            return cls(item, {}, item)
        if isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str):
            params = dict(item[1] or {})
            return cls(item[0], params, default_label(item[0], params))
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            unknown = set(item) - {"name", "params", "label"}
            if unknown:
                raise ConfigError(f"compare: strategy entry {dict(item)!r}: unknown keys {unknown}")
            params = dict(item.get("params") or {})
            label = str(item.get("label") or default_label(item["name"], params))
            return cls(item["name"], params, label)
        raise ConfigError(
            f"compare: a strategy is a name, (name, params) or {{name, params, label}}; got "
            f"{item!r}"
        )


def default_label(name: str, params: Mapping[str, Any]) -> str:
    """``coral`` or ``coral(adabn=True, weight=0)``: the strategy with its parameters."""
    if not params:
        return name
    shown = ", ".join(f"{k}={params[k]}" for k in sorted(params))
    return f"{name}({shown})"


def slug(label: str) -> str:
    """A folder name for a row label."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", label).strip("_") or "row"


# -- the paired statistics ----------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """A row against another on the same test rows: ``delta`` is the mean over seeds of the
    difference of the headline metric, oriented so that positive means the row is better,
    and ``(low, high)`` its two-stage bootstrap interval (seeds, then test rows)."""

    against: str
    delta: float
    low: float
    high: float
    seeds: int
    resamples: int
    confidence: float = 0.95

    @property
    def worse(self) -> bool:
        """The whole interval lies below zero: the row is worse beyond the noise."""
        return self.high < 0

    @property
    def better(self) -> bool:
        """The whole interval lies above zero."""
        return self.low > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "against": self.against,
            "delta": self.delta,
            "low": self.low,
            "high": self.high,
            "seeds": self.seeds,
            "resamples": self.resamples,
            "confidence": self.confidence,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Difference:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def __str__(self) -> str:
        return f"{self.delta:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


def paired_difference(
    metric: Metric,
    task: Task,
    row: Mapping[int, tuple[np.ndarray, np.ndarray]],
    other: Mapping[int, tuple[np.ndarray, np.ndarray]],
    *,
    against: str,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    cache: dict[tuple[Any, ...], np.ndarray] | None = None,
) -> Difference | None:
    """The oriented difference of ``metric`` between two rows' test predictions (``{seed:
    (logits, labels)}``) over the seeds both have, with its interval: each resample draws the
    seeds with replacement and, for each seed drawn, test rows with replacement, the same rows
    for both sides (paired). ``None`` when the rows share no seed.

    The resampled rows depend only on ``seed``, the seeds in common and the test size, so a
    row's metric values on them are the same against every other row: ``cache`` (a dict kept
    across calls on the same predictions) computes them once per row."""
    import numpy as np

    from lepton_platform.engine.evaluate import bootstrap_values

    common = sorted(set(row) & set(other))
    if not common or resamples < 1:
        return None
    sign = 1.0 if metric.higher_is_better else -1.0
    rng = np.random.default_rng(seed)
    point: list[float] = []
    draws: list[np.ndarray] = []  # per seed: the oriented difference on each resample
    for s in common:
        (logits_a, labels_a), (logits_b, labels_b) = row[s], other[s]
        if not np.array_equal(labels_a, labels_b):
            raise ConfigError(
                f"compare: seed {s}: the rows were tested on different test rows; a paired "
                "comparison needs the same test split for every row"
            )
        n = len(labels_a)
        whole = [np.arange(n)]
        point.append(
            sign
            * float(
                bootstrap_values(metric, task, logits_a, labels_a, whole)[0]
                - bootstrap_values(metric, task, logits_b, labels_b, whole)[0]
            )
        )
        indices = [rng.integers(0, n, size=n) for _ in range(resamples)]
        sides = []
        for logits, labels in ((logits_a, labels_a), (logits_b, labels_b)):
            key = (id(logits), seed, tuple(common), s, n, resamples)
            if cache is None or key not in cache:
                computed = bootstrap_values(metric, task, logits, labels, indices)
                if cache is None:
                    sides.append(computed)
                    continue
                cache[key] = computed
            sides.append(cache[key])
        draws.append(sign * (sides[0] - sides[1]))
    table = np.stack(draws)  # (seeds, resamples)
    picks = rng.integers(0, len(common), size=(resamples, len(common)))
    combined = np.nanmean(table[picks, np.arange(resamples)[:, None]], axis=1)
    combined = combined[np.isfinite(combined)]
    if len(combined) * 2 < resamples:
        return None  # the metric is undefined on most resamples (too few test rows)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(combined, [100 * alpha, 100 * (1 - alpha)])
    return Difference(
        against=against,
        delta=float(np.mean(point)),
        low=float(low),
        high=float(high),
        seeds=len(common),
        resamples=resamples,
        confidence=confidence,
    )


# -- the table ------------------------------------------------------------------------------------


@dataclass
class ComparisonRow:
    """One strategy, control or baseline over all seeds. ``runs`` hold per seed the metrics,
    time and memory (and, in memory only, the test predictions); ``differences`` the paired
    differences against each baseline and the row's control (keyed by their names)."""

    name: str
    kind: str  # "strategy", "control" or "baseline"
    params: dict[str, Any]
    strategy: str = ""
    runs: list[dict[str, Any]] = field(default_factory=list)
    control: str | None = None
    #: The ``reference`` row of this row's teacher (``distill`` from a model folder).
    teacher: str | None = None
    differences: dict[str, Difference] = field(default_factory=dict)

    def values(self, key: str, split: str = "test") -> list[float]:
        return [
            float(r["metrics"][split][key])
            for r in self.runs
            if isinstance(r["metrics"].get(split, {}).get(key), int | float)
        ]

    def mean(self, key: str, split: str = "test") -> float:
        values = self.values(key, split)
        return statistics.fmean(values) if values else math.nan

    def std(self, key: str, split: str = "test") -> float:
        values = self.values(key, split)
        return statistics.stdev(values) if len(values) > 1 else 0.0

    @property
    def seconds(self) -> float:
        return statistics.fmean(r["seconds"] for r in self.runs) if self.runs else math.nan

    @property
    def peak_memory_mb(self) -> float:
        return max((r["peak_memory_mb"] for r in self.runs), default=math.nan)

    @property
    def memory_added_mb(self) -> float:
        """How far memory rose while this row trained (its own footprint; max over seeds)."""
        return max((r.get("memory_added_mb") or 0.0 for r in self.runs), default=math.nan)

    def _mean_of(self, values: Sequence[Any]) -> float:
        kept = [float(v) for v in values if isinstance(v, int | float) and v is not None]
        return statistics.fmean(kept) if kept else math.nan

    @property
    def parameters(self) -> float:
        """The model's parameter count (mean over seeds)."""
        return self._mean_of([(r.get("parameters") or {}).get("model") for r in self.runs])

    @property
    def trainable(self) -> float:
        """How many parameters trained (mean over seeds)."""
        return self._mean_of([(r.get("parameters") or {}).get("trainable") for r in self.runs])

    @property
    def model_size_mb(self) -> float:
        return self._mean_of([r.get("model_size_mb") for r in self.runs])

    @property
    def examples_per_second(self) -> float:
        """Prediction speed on the test split (mean over seeds)."""
        speeds = [(r.get("prediction") or {}).get("examples_per_second") for r in self.runs]
        return self._mean_of(speeds)

    def predictions(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """``{seed: (logits, labels)}`` of the test split, for the seeds that kept them."""
        return {r["seed"]: r["predictions"] for r in self.runs if r.get("predictions")}


@dataclass
class Comparison:
    """The table of a comparison, its warnings and notes. ``metric`` is the registered
    metric, ``key`` its result key and ``higher_is_better`` its direction (from its spec)."""

    metric: str
    seeds: list[int]
    rows: list[ComparisonRow]
    key: str = ""
    higher_is_better: bool = True
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    disk_mb: float = 0.0
    resample_split: bool = False

    def __post_init__(self) -> None:
        self.key = self.key or self.metric.replace("-", "_")

    def row(self, name: str) -> ComparisonRow:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def best(self, kind: str = "strategy") -> ComparisonRow | None:
        """The best row of ``kind`` by the metric's direction."""
        rows = [r for r in self.rows if r.kind == kind and r.runs and not math.isnan(self._m(r))]
        if not rows:
            return None
        return (max if self.higher_is_better else min)(rows, key=self._m)

    def _m(self, row: ComparisonRow) -> float:
        return row.mean(self.key)

    @property
    def baselines(self) -> list[str]:
        return [r.name for r in self.rows if r.kind == "baseline"]

    def to_json(self) -> dict[str, Any]:
        best = self.best()
        return {
            "metric": self.metric,
            "key": self.key,
            "higher_is_better": self.higher_is_better,
            "seeds": self.seeds,
            "resample_split": self.resample_split,
            "best": None if best is None else best.name,
            "rows": [
                {
                    "name": r.name,
                    "kind": r.kind,
                    "strategy": r.strategy,
                    "params": r.params,
                    "control": r.control,
                    "teacher": r.teacher,
                    "mean": _finite_or_none(r.mean(self.key)),
                    "std": _finite_or_none(r.std(self.key)),
                    "seconds": _finite_or_none(r.seconds),
                    "peak_memory_mb": _finite_or_none(r.peak_memory_mb),
                    "memory_added_mb": _finite_or_none(r.memory_added_mb),
                    "parameters": _finite_or_none(r.parameters),
                    "trainable": _finite_or_none(r.trainable),
                    "model_size_mb": _finite_or_none(r.model_size_mb),
                    "examples_per_second": _finite_or_none(r.examples_per_second),
                    "differences": {k: d.to_json() for k, d in r.differences.items()},
                    "runs": [
                        {k: v for k, v in run.items() if k != "predictions"} for run in r.runs
                    ],
                }
                for r in self.rows
            ],
            "warnings": self.warnings,
            "notes": self.notes,
            "disk_mb": self.disk_mb,
        }

    def to_markdown(self) -> str:
        against = [
            *self.baselines,
            *(["control"] if any(r.control for r in self.rows) else []),
            *(["teacher"] if any(r.teacher for r in self.rows) else []),
        ]
        lines = [
            "| row | "
            + f"{self.key} (mean ± std over {len(self.seeds)} seeds) | "
            + "".join(f"Δ vs {name} [95% CI] | " for name in against)
            + "time (s) | memory added (MB) | parameters (trained) | size (MB) | "
            + "predict (examples/s) |",
            "| --- | --- | " + "--- | " * len(against) + "--- | --- | --- | --- | --- |",
        ]
        for r in self.rows:
            label = f"{r.name} ({r.kind})" if r.kind != "strategy" else r.name
            cells = []
            for name in against:
                key = {"control": r.control, "teacher": r.teacher}.get(name, name)
                diff = r.differences.get(key) if key else None
                cells.append(str(diff) if diff is not None else "")
            lines.append(
                f"| {label} | {r.mean(self.key):.4f} ± {r.std(self.key):.4f} | "
                + "".join(f"{c} | " for c in cells)
                + f"{r.seconds:.1f} | {r.memory_added_mb:.0f} | {_count(r)} | "
                + f"{_number(r.model_size_mb, '.1f')} | {_number(r.examples_per_second, '.0f')} |"
            )
        out = "\n".join(lines)
        out += (
            "\n\nΔ: the row minus the baseline (or its control) on the same test rows, positive "
            "when the row is better; the interval is a paired bootstrap over test rows and seeds."
        )
        if self.warnings:
            out += "\n\n" + "\n".join(f"> **Warning:** {w}" for w in self.warnings)
        if self.notes:
            out += "\n\n" + "\n".join(f"> **Note:** {n}" for n in self.notes)
        return out


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _number(value: float, spec: str) -> str:
    return format(value, spec) if math.isfinite(value) else ""


def _count(row: ComparisonRow) -> str:
    """``22.7M (1.5%)``: the row's parameters and the share that trained."""
    if not math.isfinite(row.parameters):
        return ""
    shown = f"{row.parameters / 1e6:.2f}M"
    if math.isfinite(row.trainable) and row.kind != "reference":
        share = row.trainable / max(row.parameters, 1)
        shown += f" ({share:.2%})" if share >= 0.001 or share == 0 else f" ({share:.4%})"
    return shown


def guard(comparison: Comparison) -> list[str]:
    """Plain-words warnings for strategies whose paired interval against a baseline lies
    wholly below zero (worse: lower, or higher for a lower-is-better metric)."""
    key = comparison.key
    word = "below" if comparison.higher_is_better else "above"
    warnings = []
    for row in comparison.rows:
        if row.kind != "strategy":
            continue
        for name in comparison.baselines:
            diff = row.differences.get(name)
            if diff is None or not diff.worse:
                continue
            base = comparison.row(name)
            warnings.append(
                f"negative transfer: {row.name!r} scored {row.mean(key):.4f} {key} on the test "
                f"split, {word} the {name!r} baseline ({base.mean(key):.4f}): the difference "
                f"{diff.delta:+.4f} has a {diff.confidence:.0%} interval [{diff.low:+.4f}, "
                f"{diff.high:+.4f}] wholly below zero (paired over the same test rows and "
                f"{diff.seeds} seed(s)). Transferring this way made the model worse here."
            )
    return warnings


def control_notes(comparison: Comparison) -> list[str]:
    """Notes for rows that are not better than their control beyond the interval: what they
    gain (over a baseline) the same training without the part under test gains too."""
    notes = []
    for row in comparison.rows:
        diff = row.differences.get(row.control) if row.control else None
        if diff is None or diff.better:
            continue
        if diff.worse:
            verdict = "the part under test made it worse"
        else:
            verdict = "whatever it gains over the baselines, the control gains too"
        notes.append(
            f"{row.name!r} is not better than its control {row.control!r} (the same training "
            f"with the part under test switched off) beyond the noise: {diff}; {verdict}."
        )
    return notes


def _wanted_baselines(baselines: bool | Sequence[str], source_model: Any) -> list[str]:
    if baselines is True:
        chosen = [SCRATCH, SOURCE_ONLY] if source_model is not None else [SCRATCH]
    elif baselines is False:
        chosen = []
    else:
        chosen = list(baselines)
        unknown = [b for b in chosen if b not in BASELINES]
        if unknown:
            raise ConfigError(
                f"compare: unknown baseline(s) {unknown}; the baselines are {', '.join(BASELINES)}"
            )
    if SOURCE_ONLY in chosen and source_model is None:
        raise ConfigError(
            "compare: the source-only baseline needs source_model (a saved model folder)"
        )
    return chosen


@dataclass
class _Planned:
    """A row to train: its table row, the strategy and parameters, and what it changes in
    the transfer's arguments (``scratch`` for the baseline)."""

    row: ComparisonRow
    strategy: str
    params: dict[str, Any]
    overrides: dict[str, Any] = field(default_factory=dict)


def _plan(
    rows_wanted: Sequence[RowSpec], baselines: Sequence[str], controls: bool
) -> list[_Planned]:
    """The strategy rows, the controls they declare (``controls``) and the scratch baseline,
    each strategy built now (its parameters checked). A control equal to a listed row is that
    row."""
    from lepton_platform.api.job import resolve_strategy

    plan = [
        _Planned(ComparisonRow(r.label, "strategy", dict(r.params), r.strategy), r.strategy,
                 dict(r.params))
        for r in rows_wanted
    ]  # fmt: skip
    if controls:
        for item in list(plan):
            params = resolve_strategy(item.strategy, item.params).control()
            if params is None:
                continue
            twin = next(
                (p for p in plan if p.strategy == item.strategy and p.params == dict(params)),
                None,
            )
            if twin is None:
                label = f"{item.row.name} control"
                twin = _Planned(
                    ComparisonRow(label, "control", dict(params), item.strategy),
                    item.strategy,
                    dict(params),
                )
                plan.append(twin)
            item.row.control = twin.row.name
    if SCRATCH in baselines:
        plan.append(
            _Planned(
                ComparisonRow(SCRATCH, "baseline", {}, "finetune"),
                "finetune",
                {},
                {"scratch": True},
            )
        )
    labels = [p.row.name for p in plan] + ([SOURCE_ONLY] if SOURCE_ONLY in baselines else [])
    folders: dict[str, str] = {}
    for label in labels:
        other = folders.setdefault(slug(label), label)
        if other != label or labels.count(label) > 1:
            raise ConfigError(
                f"compare: the rows {other!r} and {label!r} would share the folder "
                f"{slug(label)!r} (or a label is used twice, or by a baseline); give each row a "
                "label of its own"
            )
    return plan


def compare(
    strategies: Sequence[Any],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    baselines: bool | Sequence[str] = True,
    source_model: str | Path | None = None,
    metric: str | None = None,
    output_dir: str | Path | None = None,
    resume: bool = False,
    controls: bool = True,
    resample_split: bool = False,
    save_models: bool = False,
    progress: Callable[[str], None] | None = None,
    **transfer_kwargs: Any,
) -> Comparison:
    """Run each strategy (a name, ``(name, params)`` or ``{name, params, label}``) for every
    seed on the same data and splits, with the baselines and controls, and return the
    :class:`Comparison` (see the module docstring).

    ``baselines``: ``True`` (scratch, and source-only when ``source_model`` is given),
    ``False`` (neither), or a list of ``"scratch"`` / ``"source-only"``. ``controls``: add the
    control a strategy declares (an adaptation without its alignment). ``metric`` is a
    registered metric (default: the run's headline metric). ``data`` is what
    :func:`~lepton_platform.transfer` takes, or a function of the seed returning it;
    ``resample_split=True`` splits the data with each seed (instead of the split's own seed),
    so the spread over seeds includes the split's. ``transfer_kwargs`` are those of
    :func:`lepton_platform.transfer` (domain, data, backbone, pretrained, train, split,
    bootstrap: the number of resamples of the intervals, ...); ``train["seed"]`` is replaced by
    each seed in turn.

    Every row and baseline is built before the first one trains. With ``output_dir`` each row
    runs in ``<output_dir>/<label>/seed-<n>``; ``resume=True`` keeps the finished ones (their
    time and details included) and continues the others from their checkpoints;
    ``save_models`` keeps each row's model there."""
    import dataclasses

    from lepton_platform.api.job import resolve_data, resolve_domain, resolve_split, resolve_train
    from lepton_platform.registry import get_metric, get_strategy

    rows_wanted = [RowSpec.parse(s) for s in strategies]
    if not rows_wanted:
        raise ConfigError("compare: give at least one strategy")
    if not seeds:
        raise ConfigError("compare: give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"compare: the seeds {list(seeds)} repeat one")
    for row in rows_wanted:
        get_strategy(row.strategy)  # unknown names fail here, before any data are read
    for key in ("strategy", "strategy_params", "output_dir", "save", "resume", "scratch"):
        if key in transfer_kwargs:
            raise ConfigError(f"compare: {key!r} is set per row; do not pass it")
    chosen_baselines = _wanted_baselines(baselines, source_model)
    metric_spec = get_metric(metric) if metric is not None else None
    plan = _plan(rows_wanted, chosen_baselines, controls)

    domain_obj = resolve_domain(
        transfer_kwargs.pop("domain"), transfer_kwargs.pop("domain_options", None)
    )
    data = transfer_kwargs.pop("data")
    split = resolve_split(transfer_kwargs.pop("split", None))
    on_bad_record = transfer_kwargs.pop("on_bad_record", "error")
    resamples = int(transfer_kwargs.get("bootstrap", 1000))

    def bundle_for(seed: int) -> DataBundle:
        given = data(seed) if callable(data) else data
        wanted = dataclasses.replace(split, seed=seed) if resample_split else split
        return resolve_data(domain_obj, given, wanted, on_bad_record)

    per_seed = callable(data) or resample_split
    shared = None if per_seed else bundle_for(seeds[0])
    base_train = resolve_train(transfer_kwargs.pop("train", None))
    out = Path(output_dir) if output_dir is not None else None
    say = progress or (lambda message: None)

    metrics = transfer_kwargs.pop("metrics", None)
    if metric_spec is not None:
        metrics = [metric_spec.name, *[m for m in (metrics or []) if m != metric_spec.name]]
    source_row = (
        ComparisonRow(SOURCE_ONLY, "baseline", {"model": str(source_model)}, "source-only")
        if SOURCE_ONLY in chosen_baselines
        else None
    )
    teachers = _teachers(plan)
    batch_size = base_train.eval_batch_size or base_train.batch_size

    def folder_of(label: str, seed: int) -> Path | None:
        return out / slug(label) / f"seed-{seed}" if out else None

    def row_kwargs(item: _Planned, seed: int, bundle: DataBundle) -> dict[str, Any]:
        return {
            "domain": domain_obj,
            "data": bundle,
            "strategy": item.strategy,
            "strategy_params": item.params,
            "train": base_train.replace(seed=seed),
            "metrics": metrics,
            **{**transfer_kwargs, **item.overrides},
        }

    finished = {
        (item.row.name, seed): _finished(folder_of(item.row.name, seed), seed)
        for item in plan
        for seed in seeds
        if resume
    }
    finished = {k: v for k, v in finished.items() if v is not None}

    # Build every row that will train, and the source-only baseline, before any trains.
    first = shared if shared is not None else bundle_for(seeds[0])
    to_train = [p for p in plan if any((p.row.name, s) not in finished for s in seeds)]
    _preflight(
        [row_kwargs(p, seeds[0], first) for p in to_train],
        [p.row.name for p in to_train],
        source_model if source_row is not None else None,
        first,
        say,
    )

    headline: Metric | None = None
    task: Task | None = None
    for seed in seeds:
        bundle = shared if shared is not None else (first if seed == seeds[0] else bundle_for(seed))
        for item in plan:
            run = finished.get((item.row.name, seed))
            if run is None:
                say(f"{item.row.name} (seed {seed})")
                run, job = _run_row(
                    folder_of(item.row.name, seed),
                    seed,
                    resume,
                    save_models,
                    **row_kwargs(item, seed, bundle),
                )
                headline = headline or job.headline
                task = task or job.task
            else:
                say(f"{item.row.name} (seed {seed}): finished earlier, kept")
            item.row.runs.append(run)
        if source_row is not None:
            assert source_model is not None
            source_row.runs.append(_applied(source_model, bundle, seed, metrics, batch_size))
        for teacher_row, folder in teachers:
            teacher_row.runs.append(_applied(folder, bundle, seed, metrics, batch_size))

    rows = [p.row for p in plan if p.row.kind != "baseline"]
    rows += [row for row, _ in teachers]
    rows += [p.row for p in plan if p.row.kind == "baseline"]
    rows += [source_row] if source_row is not None else []
    if headline is None or task is None:  # every row was finished earlier: rebuild the names
        headline, task = _headline_and_task(metrics, transfer_kwargs, first)
    if metric_spec is not None:
        from lepton_platform.engine.evaluate import Metric

        headline = Metric.of(metric_spec)
    comparison = Comparison(
        metric=headline.name,
        key=headline.key,
        higher_is_better=headline.higher_is_better,
        seeds=list(seeds),
        rows=rows,
        resample_split=resample_split,
    )
    say("paired differences")
    baseline_rows = [r for r in rows if r.kind == "baseline"]
    resampled: dict[tuple[Any, ...], np.ndarray] = {}  # each row's values, computed once
    for table_row in rows:
        others = [b for b in baseline_rows if b is not table_row]
        if table_row.control:
            others.append(comparison.row(table_row.control))
        if table_row.teacher:
            others.append(comparison.row(table_row.teacher))
        for other in others:
            diff = paired_difference(
                headline,
                task,
                table_row.predictions(),
                other.predictions(),
                against=other.name,
                resamples=resamples,
                seed=seeds[0],
                cache=resampled,
            )
            if diff is not None:
                table_row.differences[other.name] = diff
    comparison.warnings = guard(comparison)
    comparison.notes = control_notes(comparison)
    if resamples < 1:
        comparison.notes.append(
            "bootstrap is 0 (evaluation.bootstrap): no paired intervals were computed, so the "
            "guard gives no verdict; set it to 1000 for one"
        )
    if out is not None:
        from lepton_platform._io import atomic_write_json, atomic_write_text
        from lepton_platform.engine.distributed import is_main_process

        comparison.disk_mb = _disk_mb(out)
        if is_main_process():
            atomic_write_json(out / "comparison.json", comparison.to_json(), strict=True)
            atomic_write_text(out / "comparison.md", comparison.to_markdown() + "\n")
    return comparison


def _preflight(
    jobs: Sequence[Mapping[str, Any]],
    labels: Sequence[str],
    source_model: str | Path | None,
    bundle: DataBundle,
    say: Callable[[str], None],
) -> None:
    """Build every row's job (model, options, data, the strategy's checks) without training,
    and check the source model: a comparison fails here, in seconds, or not for these
    reasons. Each job is dropped once built."""
    import gc
    import time

    from lepton_platform.api.job import build_job
    from lepton_platform.errors import LeptonError

    started = time.perf_counter()
    for label, kwargs in zip(labels, jobs, strict=True):
        try:
            job = build_job(**{k: v for k, v in kwargs.items() if k != "bootstrap"})
        except LeptonError as exc:  # the same error, saying which row
            raise type(exc)(f"compare: row {label!r} cannot run: {exc}") from exc
        del job
        gc.collect()
    if source_model is not None:
        _source_predictor(source_model, bundle)
    checked = len(jobs) + (source_model is not None)
    say(f"checked {checked} rows in {time.perf_counter() - started:.0f} s")


def _headline_and_task(
    metrics: Sequence[str] | None, kwargs: Mapping[str, Any], bundle: DataBundle
) -> tuple[Metric, Task]:
    from lepton_platform.api.job import resolve_metrics
    from lepton_platform.registry import create_task

    task = create_task(
        kwargs.get("task", "classification"),
        label_names=bundle.label_names,
        **dict(kwargs.get("task_options") or {}),
    )
    return resolve_metrics(metrics, task)[0], task


def _run_row(
    folder: Path | None, seed: int, resume: bool, save_models: bool, **kwargs: Any
) -> tuple[dict[str, Any], Any]:
    """One row for one seed; once finished its folder keeps ``result.json``, the test
    predictions and (``save_models``) the model; the checkpoints a resume needed go."""
    from lepton_platform.api.job import build_job
    from lepton_platform.api.transfer import result_json, run_job
    from lepton_platform.engine.distributed import is_main_process, wait_for_everyone

    resuming = resume and folder is not None and (folder / "training").is_dir()
    bootstrap = kwargs.pop("bootstrap", 1000)
    job = build_job(output_dir=folder, resume=resuming, **kwargs)
    result = run_job(job, output_dir=folder, save=save_models, bootstrap=bootstrap)
    test = result.predictions.get("test")
    predictions = None if test is None else (test["logits"], test["labels"])
    if folder is not None:
        if is_main_process():
            if predictions is not None:
                _write_predictions(folder / PREDICTIONS, *predictions)
            shutil.rmtree(folder / "training", ignore_errors=True)
        wait_for_everyone()
    run = _row_run(result_json(result), seed)
    run["predictions"] = predictions
    return run, job


def _write_predictions(path: Path, logits: np.ndarray, labels: np.ndarray) -> None:
    import numpy as np

    from lepton_platform._io import atomic_write_bytes

    buffer = io.BytesIO()
    np.savez_compressed(buffer, logits=np.asarray(logits), labels=np.asarray(labels))
    atomic_write_bytes(path, buffer.getvalue())


def _row_run(result: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """A row's run for one seed, from its ``result.json`` content."""
    headline = result.get("headline") or {}
    return {
        "seed": seed,
        "metrics": result["metrics"],
        "seconds": result.get("seconds"),
        "peak_memory_mb": result.get("peak_memory_mb"),
        "memory_added_mb": result.get("memory_added_mb"),
        "parameters": result.get("parameters", {}),
        "model_size_mb": result.get("model_size_mb"),
        "prediction": result.get("prediction", {}),
        "details": result.get("details", {}),
        "history": result.get("history", []),
        "headline": [headline.get("metric"), headline.get("key"), headline.get("higher_is_better")],
    }


def _finished(folder: Path | None, seed: int) -> dict[str, Any] | None:
    """A row finished by an earlier run of this comparison (its ``result.json`` and test
    predictions), if any; anything unreadable means not finished."""
    import json

    import numpy as np

    if folder is None or not (folder / "result.json").is_file():
        return None
    try:
        data = json.loads((folder / "result.json").read_text(encoding="utf-8"))
        with np.load(folder / PREDICTIONS) as saved:
            predictions = (saved["logits"], saved["labels"])
    except (OSError, ValueError, KeyError):
        return None
    if not isinstance(data, dict) or "metrics" not in data or "headline" not in data:
        return None
    run = _row_run(data, seed)
    run["predictions"] = predictions
    return run


def _disk_mb(folder: Path) -> float:
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return total / 2**20


def _source_predictor(source_model: str | Path, bundle: DataBundle) -> Any:
    from lepton_platform.api.predictor import load

    predictor = load(source_model)
    if list(predictor.label_names) != list(bundle.label_names):
        raise ConfigError(
            f"source model {source_model} predicts {predictor.label_names}, the target has "
            f"{bundle.label_names}: the source-only baseline needs one label space"
        )
    return predictor


def _teachers(plan: Sequence[_Planned]) -> list[tuple[ComparisonRow, str]]:
    """A ``reference`` row for each teacher folder of the ``distill`` rows (one per folder),
    each distill row (its control too: the student without the teacher) pointed at it."""
    from lepton_platform.api.job import resolve_strategy
    from lepton_platform.strategies.distill import Distill

    found: dict[str, ComparisonRow] = {}
    for item in plan:
        strategy = resolve_strategy(item.strategy, item.params)
        if not isinstance(strategy, Distill) or strategy.teacher_folder is None:
            continue
        folder = str(Path(strategy.teacher_folder).expanduser().absolute())
        if folder not in found:
            label = "teacher" if not found else f"teacher-{len(found) + 1}"
            found[folder] = ComparisonRow(label, "reference", {"model": folder}, "teacher")
        item.row.teacher = found[folder].name
    taken = {p.row.name for p in plan}
    clash = [row.name for row in found.values() if row.name in taken]
    if clash:
        raise ConfigError(
            f"compare: the row label(s) {clash} are those of the distillation teachers' rows; "
            "give those rows other labels"
        )
    return [(row, folder) for folder, row in found.items()]


def _applied(
    folder: str | Path,
    bundle: DataBundle,
    seed: int,
    metrics: Sequence[str] | None,
    batch_size: int,
) -> dict[str, Any]:
    """A saved model (the source model, a teacher) applied to the target's test split as it
    is: its metrics, size and prediction speed, measured as a trained row's are (prepared
    inputs, the evaluation batch size, the one prediction function)."""
    import time

    from lepton_platform._memory import PeakMemory
    from lepton_platform.api.job import resolve_metrics
    from lepton_platform.api.transfer import parameter_counts, prediction_speed, size_mb
    from lepton_platform.data import prepare
    from lepton_platform.engine.evaluate import compute_metrics
    from lepton_platform.engine.predict import predict

    with PeakMemory() as memory:
        started = time.perf_counter()
        predictor = _source_predictor(folder, bundle)
        if "label" not in bundle.test.column_names:
            raise ConfigError(f"applying {folder} to the target needs a labelled test split")
        prepared = prepare(bundle.test, predictor.preprocessor, desc="preprocess (test)")
        timed = time.perf_counter()
        out = predict(predictor.model, prepared, predictor.preprocessor, batch_size=batch_size)
        seconds = time.perf_counter() - timed
        assert out.labels is not None
        logits, labels = out.outputs, out.labels
        resolved = resolve_metrics(metrics, predictor.task)
        values = {"test": compute_metrics(predictor.task, logits, labels, resolved)}
    return {
        "seed": seed,
        "metrics": values,
        "seconds": time.perf_counter() - started,
        "peak_memory_mb": memory.peak_mb,
        "memory_added_mb": memory.added_mb,
        "details": {},
        "parameters": parameter_counts(predictor.model, trainable=0),
        "model_size_mb": size_mb(predictor.model),
        "prediction": prediction_speed(predictor.model, "test", len(labels), seconds, batch_size),
        "predictions": (logits, labels),
    }
