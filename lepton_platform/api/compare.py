"""Side-by-side comparison of transfer strategies, with baselines and the negative-transfer
guard.

Every row runs on the same splits with the same seeds; the table reports mean and standard
deviation over seeds of the headline metric on the test split, with time and peak memory. Two
baselines stand beside the strategies, each switched on or off on its own: ``scratch`` (the
same backbone, randomly initialised, fully trained on the target data) and, when a source model
is given, ``source-only`` (the source model applied to the target as it is). A strategy that
scores worse than the best baseline beyond the noise is flagged in plain words: that is
negative transfer. Which way is worse comes from the metric's spec.

Rows are keyed by a label (the strategy's name, with its parameters when it has any, or the
``label`` given), so one strategy may appear twice with different parameters.
"""

from __future__ import annotations

import math
import re
import shutil
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lepton_platform.errors import ConfigError

__all__ = ["BASELINES", "Comparison", "ComparisonRow", "RowSpec", "compare", "guard"]

SCRATCH = "scratch"
SOURCE_ONLY = "source-only"
BASELINES = (SCRATCH, SOURCE_ONLY)


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


@dataclass
class ComparisonRow:
    """One strategy (or baseline) over all seeds."""

    name: str
    kind: str  # "strategy" or "baseline"
    params: dict[str, Any]
    strategy: str = ""
    runs: list[dict[str, Any]] = field(default_factory=list)  # per seed: metrics, time, memory

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


@dataclass
class Comparison:
    """The table of a comparison and its warnings. ``metric`` is the registered metric,
    ``key`` its result key and ``higher_is_better`` its direction (from its spec)."""

    metric: str
    seeds: list[int]
    rows: list[ComparisonRow]
    key: str = ""
    higher_is_better: bool = True
    warnings: list[str] = field(default_factory=list)
    disk_mb: float = 0.0

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

    def to_json(self) -> dict[str, Any]:
        best = self.best()
        return {
            "metric": self.metric,
            "key": self.key,
            "higher_is_better": self.higher_is_better,
            "seeds": self.seeds,
            "best": None if best is None else best.name,
            "rows": [
                {
                    "name": r.name,
                    "kind": r.kind,
                    "strategy": r.strategy,
                    "params": r.params,
                    "mean": _finite_or_none(r.mean(self.key)),
                    "std": _finite_or_none(r.std(self.key)),
                    "seconds": _finite_or_none(r.seconds),
                    "peak_memory_mb": _finite_or_none(r.peak_memory_mb),
                    "runs": r.runs,
                }
                for r in self.rows
            ],
            "warnings": self.warnings,
            "disk_mb": self.disk_mb,
        }

    def to_markdown(self) -> str:
        lines = [
            f"| strategy | {self.key} (mean ± std over {len(self.seeds)} seeds) | "
            "time (s) | peak memory (MB) |",
            "| --- | --- | --- | --- |",
        ]
        for r in self.rows:
            label = f"{r.name} (baseline)" if r.kind == "baseline" else r.name
            lines.append(
                f"| {label} | {r.mean(self.key):.4f} ± {r.std(self.key):.4f} | "
                f"{r.seconds:.1f} | {r.peak_memory_mb:.0f} |"
            )
        out = "\n".join(lines)
        if self.warnings:
            out += "\n\n" + "\n".join(f"> **Warning:** {w}" for w in self.warnings)
        return out


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _noise(a: ComparisonRow, b: ComparisonRow, key: str) -> float:
    """The spread below which a difference is not called a difference: the combined standard
    deviation over seeds, or with one seed the half-widths of the bootstrap intervals."""
    spread = math.hypot(a.std(key), b.std(key))
    if len(a.runs) < 2 or len(b.runs) < 2:
        widths = []
        for row in (a, b):
            for run in row.runs:
                ci = run["metrics"].get("test", {}).get("ci")
                if ci and ci.get("key") == key:
                    widths.append((ci["high"] - ci["low"]) / 2)
        if widths:
            spread = max(spread, math.sqrt(sum(w * w for w in widths)))
    return spread


def guard(comparison: Comparison) -> list[str]:
    """Plain-words warnings for strategies that score worse than the best baseline beyond the
    noise (worse: lower, or higher for a lower-is-better metric)."""
    key = comparison.key
    best = comparison.best("baseline")
    if best is None:
        return []
    sign = 1.0 if comparison.higher_is_better else -1.0
    word = "below" if comparison.higher_is_better else "above"
    warnings = []
    for row in comparison.rows:
        if row.kind != "strategy" or not row.runs:
            continue
        gap = sign * (best.mean(key) - row.mean(key))
        noise = _noise(row, best, key)
        if gap > noise:
            warnings.append(
                f"negative transfer: {row.name!r} scored {row.mean(key):.4f} {key} on the "
                f"test split, {word} the {best.name!r} baseline ({best.mean(key):.4f}) by "
                f"{gap:.4f}, more than the noise ({noise:.4f}). Transferring from this source "
                "made the model worse here."
            )
    return warnings


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


def compare(
    strategies: Sequence[Any],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    baselines: bool | Sequence[str] = True,
    source_model: str | Path | None = None,
    metric: str | None = None,
    output_dir: str | Path | None = None,
    resume: bool = False,
    progress: Callable[[str], None] | None = None,
    **transfer_kwargs: Any,
) -> Comparison:
    """Run each strategy (a name, ``(name, params)`` or ``{name, params, label}``) for every
    seed on the same data and splits, with the baselines, and return the :class:`Comparison`.

    ``baselines``: ``True`` (scratch, and source-only when ``source_model`` is given),
    ``False``, or a list of ``"scratch"`` / ``"source-only"``. ``metric`` is a registered
    metric (default: the run's headline metric). ``data`` is what
    :func:`~lepton_platform.transfer` takes, or a function of the seed returning it (each seed
    draws its own labelled sample; every row sees the same one for a given seed).
    ``transfer_kwargs`` are those of :func:`lepton_platform.transfer` (domain, data, backbone,
    pretrained, train, split, ...); ``train["seed"]`` is replaced by each seed in turn.

    With ``output_dir`` each row runs in ``<output_dir>/<label>/seed-<n>`` and keeps there only
    its ``result.json`` once finished (checkpoints are deleted); ``resume=True`` reuses the
    finished ones and continues the others from their checkpoints."""
    from lepton_platform.api.job import resolve_data, resolve_domain, resolve_train
    from lepton_platform.data import DataBundle
    from lepton_platform.registry import get_metric, get_strategy

    rows_wanted = [RowSpec.parse(s) for s in strategies]
    if not rows_wanted:
        raise ConfigError("compare: give at least one strategy")
    if not seeds:
        raise ConfigError("compare: give at least one seed")
    labels = [r.label for r in rows_wanted]
    for label in labels:
        if labels.count(label) > 1 or label in BASELINES:
            raise ConfigError(
                f"compare: the row label {label!r} is used twice (or by a baseline); give each "
                "row a label of its own"
            )
    for row in rows_wanted:
        get_strategy(row.strategy)  # unknown names fail here, before any training
    for key in ("strategy", "strategy_params", "output_dir", "save", "resume"):
        if key in transfer_kwargs:
            raise ConfigError(f"compare: {key!r} is set per row; do not pass it")
    chosen_baselines = _wanted_baselines(baselines, source_model)
    metric_spec = get_metric(metric) if metric is not None else None

    domain_obj = resolve_domain(
        transfer_kwargs.pop("domain"), transfer_kwargs.pop("domain_options", None)
    )
    data = transfer_kwargs.pop("data")
    split = transfer_kwargs.pop("split", None)
    on_bad_record = transfer_kwargs.pop("on_bad_record", "error")

    def bundle_for(seed: int) -> DataBundle:
        given = data(seed) if callable(data) else data
        return resolve_data(domain_obj, given, split, on_bad_record)

    shared = None if callable(data) else bundle_for(seeds[0])
    base_train = resolve_train(transfer_kwargs.pop("train", None))
    out = Path(output_dir) if output_dir is not None else None
    say = progress or (lambda message: None)

    plan: list[tuple[str, str, str, dict[str, Any], dict[str, Any]]] = [
        (r.label, "strategy", r.strategy, dict(r.params), {}) for r in rows_wanted
    ]
    if SCRATCH in chosen_baselines:
        plan.append((SCRATCH, "baseline", "finetune", {}, {"scratch": True}))
    rows = {
        label: ComparisonRow(label, kind, params, strategy)
        for label, kind, strategy, params, _ in plan
    }
    if SOURCE_ONLY in chosen_baselines:
        rows[SOURCE_ONLY] = ComparisonRow(
            SOURCE_ONLY, "baseline", {"model": str(source_model)}, "source-only"
        )

    headline: tuple[str, str, bool] | None = None
    if metric_spec is not None:
        headline = (metric_spec.name, metric_spec.key, metric_spec.higher_is_better)
    metrics = transfer_kwargs.pop("metrics", None)
    if metric_spec is not None:
        metrics = [metric_spec.name, *[m for m in (metrics or []) if m != metric_spec.name]]
    for seed in seeds:
        train = base_train.replace(seed=seed)
        bundle = shared if shared is not None else bundle_for(seed)
        for label, _kind, strategy, params, overrides in plan:
            folder = out / slug(label) / f"seed-{seed}" if out else None
            run = _finished(folder, seed) if resume else None
            if run is None:
                say(f"{label} (seed {seed})")
                run = _run_row(
                    folder,
                    seed,
                    resume,
                    domain=domain_obj,
                    data=bundle,
                    strategy=strategy,
                    strategy_params=params,
                    train=train,
                    metrics=metrics,
                    **{**transfer_kwargs, **overrides},
                )
            else:
                say(f"{label} (seed {seed}): finished earlier, kept")
            headline = headline or (run["headline"][0], run["headline"][1], run["headline"][2])
            rows[label].runs.append(run)
        if SOURCE_ONLY in chosen_baselines:
            assert source_model is not None
            rows[SOURCE_ONLY].runs.append(_source_only(source_model, bundle, seed, metrics))

    assert headline is not None
    comparison = Comparison(
        metric=headline[0],
        key=headline[1],
        higher_is_better=headline[2],
        seeds=list(seeds),
        rows=list(rows.values()),
    )
    comparison.warnings = guard(comparison)
    if out is not None:
        from lepton_platform._io import atomic_write_json, atomic_write_text
        from lepton_platform.engine.distributed import is_main_process

        comparison.disk_mb = _disk_mb(out)
        if is_main_process():
            atomic_write_json(out / "comparison.json", comparison.to_json(), strict=True)
            atomic_write_text(out / "comparison.md", comparison.to_markdown() + "\n")
    return comparison


def _run_row(folder: Path | None, seed: int, resume: bool, **kwargs: Any) -> dict[str, Any]:
    """One row for one seed: a transfer whose model is not saved; once finished only its
    ``result.json`` stays in its folder (the checkpoints that a resume needed are deleted)."""
    from lepton_platform.api.transfer import result_json, transfer
    from lepton_platform.engine.distributed import is_main_process, wait_for_everyone

    resuming = resume and folder is not None and (folder / "training").is_dir()
    result = transfer(output_dir=folder, save=False, resume=resuming, **kwargs)
    if folder is not None:
        if is_main_process():
            shutil.rmtree(folder / "training", ignore_errors=True)
        wait_for_everyone()
    return _row_run(result_json(result), seed)


def _row_run(result: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """A row's run for one seed, from its ``result.json`` content."""
    headline = result.get("headline") or {}
    return {
        "seed": seed,
        "metrics": result["metrics"],
        "seconds": result.get("seconds"),
        "peak_memory_mb": result.get("peak_memory_mb"),
        "details": result.get("details", {}),
        "history": result.get("history", []),
        "headline": [headline.get("metric"), headline.get("key"), headline.get("higher_is_better")],
    }


def _finished(folder: Path | None, seed: int) -> dict[str, Any] | None:
    """A row finished by an earlier run of this comparison (its ``result.json``), if any."""
    import json

    if folder is None or not (folder / "result.json").is_file():
        return None
    try:
        data = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "metrics" not in data or "headline" not in data:
        return None
    return _row_run(data, seed)


def _disk_mb(folder: Path) -> float:
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return total / 2**20


def _source_only(
    source_model: str | Path, bundle: Any, seed: int, metrics: Sequence[str] | None
) -> dict[str, Any]:
    """The source model applied to the target's test split as it is."""
    import time

    from lepton_platform._memory import PeakMemory
    from lepton_platform.api.job import resolve_metrics
    from lepton_platform.api.predictor import load
    from lepton_platform.engine.evaluate import compute_metrics

    with PeakMemory() as memory:
        started = time.perf_counter()
        predictor = load(source_model)
        if list(predictor.label_names) != list(bundle.label_names):
            raise ConfigError(
                f"source model {source_model} predicts {predictor.label_names}, the target has "
                f"{bundle.label_names}: the source-only baseline needs one label space"
            )
        logits, labels = predictor.logits_dataset(bundle.test)
        if labels is None:
            raise ConfigError("the source-only baseline needs a labelled test split")
        resolved = resolve_metrics(metrics, predictor.task)
        values = {"test": compute_metrics(predictor.task, logits, labels, resolved)}
    return {
        "seed": seed,
        "metrics": values,
        "seconds": time.perf_counter() - started,
        "peak_memory_mb": memory.peak_mb,
        "details": {},
    }
