"""Side-by-side comparison of transfer strategies, with baselines and the negative-transfer
guard.

Every strategy runs on the same splits with the same seeds; the table reports mean and standard
deviation over seeds of each metric on the test split, with time and peak memory. Two baselines
stand beside them: ``scratch`` (the same backbone, randomly initialised, fully trained on the
target data) and, when a source model is given, ``source-only`` (the source model applied to the
target as it is). A strategy that scores below the best baseline by more than the noise is
flagged in plain words: that is negative transfer.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lepton_platform.errors import ConfigError

__all__ = ["Comparison", "ComparisonRow", "compare"]

SCRATCH = "scratch"
SOURCE_ONLY = "source-only"


@dataclass
class ComparisonRow:
    """One strategy (or baseline) over all seeds."""

    name: str
    kind: str  # "strategy" or "baseline"
    params: dict[str, Any]
    runs: list[dict[str, Any]] = field(default_factory=list)  # per seed: metrics, time, memory

    def values(self, metric: str, split: str = "test") -> list[float]:
        return [
            float(r["metrics"][split][metric])
            for r in self.runs
            if metric in r["metrics"].get(split, {})
        ]

    def mean(self, metric: str, split: str = "test") -> float:
        values = self.values(metric, split)
        return statistics.fmean(values) if values else math.nan

    def std(self, metric: str, split: str = "test") -> float:
        values = self.values(metric, split)
        return statistics.stdev(values) if len(values) > 1 else 0.0

    @property
    def seconds(self) -> float:
        return statistics.fmean(r["seconds"] for r in self.runs) if self.runs else math.nan

    @property
    def peak_memory_mb(self) -> float:
        return max((r["peak_memory_mb"] for r in self.runs), default=math.nan)


@dataclass
class Comparison:
    """The table of a comparison and its warnings."""

    metric: str
    seeds: list[int]
    rows: list[ComparisonRow]
    warnings: list[str] = field(default_factory=list)

    def row(self, name: str) -> ComparisonRow:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "seeds": self.seeds,
            "rows": [
                {
                    "name": r.name,
                    "kind": r.kind,
                    "params": r.params,
                    "mean": r.mean(self.metric),
                    "std": r.std(self.metric),
                    "seconds": r.seconds,
                    "peak_memory_mb": r.peak_memory_mb,
                    "runs": r.runs,
                }
                for r in self.rows
            ],
            "warnings": self.warnings,
        }

    def to_markdown(self) -> str:
        lines = [
            f"| strategy | {self.metric} (mean ± std over {len(self.seeds)} seeds) | "
            "time (s) | peak memory (MB) |",
            "| --- | --- | --- | --- |",
        ]
        for r in self.rows:
            label = f"{r.name} (baseline)" if r.kind == "baseline" else r.name
            lines.append(
                f"| {label} | {r.mean(self.metric):.4f} ± {r.std(self.metric):.4f} | "
                f"{r.seconds:.1f} | {r.peak_memory_mb:.0f} |"
            )
        out = "\n".join(lines)
        if self.warnings:
            out += "\n\n" + "\n".join(f"> **Warning:** {w}" for w in self.warnings)
        return out


def _noise(a: ComparisonRow, b: ComparisonRow, metric: str) -> float:
    """The spread below which a difference is not called a difference: the combined standard
    deviation over seeds, or with one seed the half-widths of the bootstrap intervals."""
    spread = math.hypot(a.std(metric), b.std(metric))
    if len(a.runs) < 2 or len(b.runs) < 2:
        widths = []
        for row in (a, b):
            for run in row.runs:
                ci = run["metrics"].get("test", {}).get("ci")
                if ci and ci.get("metric", "").replace("-", "_") == metric:
                    widths.append((ci["high"] - ci["low"]) / 2)
        if widths:
            spread = max(spread, math.sqrt(sum(w * w for w in widths)))
    return spread


def guard(comparison: Comparison) -> list[str]:
    """Plain-words warnings for strategies that score below the best baseline beyond noise."""
    metric = comparison.metric
    baselines = [r for r in comparison.rows if r.kind == "baseline" and r.runs]
    if not baselines:
        return []
    best = max(baselines, key=lambda r: r.mean(metric))
    warnings = []
    for row in comparison.rows:
        if row.kind != "strategy" or not row.runs:
            continue
        gap = best.mean(metric) - row.mean(metric)
        noise = _noise(row, best, metric)
        if gap > noise:
            warnings.append(
                f"negative transfer: {row.name!r} scored {row.mean(metric):.4f} {metric} on the "
                f"test split, below the {best.name!r} baseline ({best.mean(metric):.4f}) by "
                f"{gap:.4f}, more than the noise ({noise:.4f}). Transferring from this source "
                "made the model worse here."
            )
    return warnings


def compare(
    strategies: Sequence[str | tuple[str, Mapping[str, Any]]],
    *,
    seeds: Sequence[int] = (0, 1, 2),
    baselines: bool = True,
    source_model: str | Path | None = None,
    metric: str | None = None,
    output_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    **transfer_kwargs: Any,
) -> Comparison:
    """Run each strategy (a name, or ``(name, params)``) for every seed on the same data and
    splits, with the baselines, and return the :class:`Comparison`.

    ``data`` is a data bundle or sources as for :func:`~lepton_platform.recipe.transfer`, or a
    function of the seed returning one (each seed draws its own labelled sample; every
    strategy sees the same one for a given seed).

    ``transfer_kwargs`` are those of :func:`lepton_platform.recipe.transfer` (domain, data,
    backbone, pretrained, train, split, ...); ``train["seed"]`` is replaced by each seed in
    turn.
    """
    from lepton_platform.data import DataBundle
    from lepton_platform.recipe import resolve_data, resolve_train_config, transfer
    from lepton_platform.registry import get_strategy

    if not strategies:
        raise ConfigError("compare: give at least one strategy")
    if not seeds:
        raise ConfigError("compare: give at least one seed")
    wanted = [(s, {}) if isinstance(s, str) else (s[0], dict(s[1])) for s in strategies]
    for name, _ in wanted:
        get_strategy(name)  # unknown names fail here, before any training
    for key in ("strategy", "strategy_params", "output_dir", "save"):
        if key in transfer_kwargs:
            raise ConfigError(f"compare: {key!r} is set per strategy; do not pass it")

    from lepton_platform.domains import Domain
    from lepton_platform.registry import create_domain

    domain = transfer_kwargs.pop("domain")
    domain_obj = domain if isinstance(domain, Domain) else create_domain(domain)
    data = transfer_kwargs.pop("data")
    split = transfer_kwargs.pop("split", None)
    on_bad_record = transfer_kwargs.pop("on_bad_record", "error")

    def bundle_for(seed: int) -> DataBundle:
        given = data(seed) if callable(data) else data
        if isinstance(given, DataBundle):
            return given
        return resolve_data(domain_obj, given, split, on_bad_record)

    shared = None if callable(data) else bundle_for(seeds[0])
    base_train = resolve_train_config(transfer_kwargs.pop("train", None))
    out = Path(output_dir) if output_dir is not None else None
    say = progress or (lambda message: None)

    plan: list[tuple[str, str, str, dict[str, Any], dict[str, Any]]] = []
    for name, params in wanted:
        plan.append((name, "strategy", name, params, {}))
    if baselines:
        plan.append((SCRATCH, "baseline", "finetune", {}, {"pretrained": None}))
    rows = {label: ComparisonRow(label, kind, params) for label, kind, _, params, _ in plan}
    if baselines and source_model is not None:
        rows[SOURCE_ONLY] = ComparisonRow(SOURCE_ONLY, "baseline", {"model": str(source_model)})

    import dataclasses

    for seed in seeds:
        train = dataclasses.replace(base_train, seed=seed)
        bundle = shared if shared is not None else bundle_for(seed)
        for label, _kind, strategy, params, overrides in plan:
            say(f"{label} (seed {seed})")
            kwargs = {**transfer_kwargs, **overrides}
            result = transfer(
                domain=domain_obj,
                data=bundle,
                strategy=strategy,
                strategy_params=params,
                train=train,
                output_dir=out / label / f"seed-{seed}" if out else None,
                save=False,
                **kwargs,
            )
            rows[label].runs.append(
                {
                    "seed": seed,
                    "metrics": result.metrics,
                    "seconds": result.seconds,
                    "peak_memory_mb": result.peak_memory_mb,
                    "details": result.details,
                }
            )
        if baselines and source_model is not None:
            rows[SOURCE_ONLY].runs.append(_source_only(source_model, bundle, seed))

    metric_name = metric or _headline(rows)
    comparison = Comparison(metric=metric_name, seeds=list(seeds), rows=list(rows.values()))
    comparison.warnings = guard(comparison)
    if out is not None:
        import json

        out.mkdir(parents=True, exist_ok=True)
        (out / "comparison.json").write_text(
            json.dumps(comparison.to_json(), indent=2, default=str)
        )
        (out / "comparison.md").write_text(comparison.to_markdown() + "\n")
    return comparison


def _headline(rows: Mapping[str, ComparisonRow]) -> str:
    for row in rows.values():
        for run in row.runs:
            test = run["metrics"].get("test", {})
            for key in ("accuracy", "f1_macro", "auroc"):
                if key in test:
                    return key
    raise ConfigError("compare: no test metrics were produced; is there a test split?")


def _source_only(source_model: str | Path, bundle: Any, seed: int) -> dict[str, Any]:
    """The source model applied to the target's test split as it is."""
    import time

    from lepton_platform._memory import PeakMemory
    from lepton_platform.artifacts import load
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
        metrics = {"test": compute_metrics(predictor.task, logits, labels)}
    return {
        "seed": seed,
        "metrics": metrics,
        "seconds": time.perf_counter() - started,
        "peak_memory_mb": memory.peak_mb,
        "details": {},
    }
