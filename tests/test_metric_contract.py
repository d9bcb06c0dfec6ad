"""The typed metric contract, end to end with a metric whose lower values are better
(``class-mae`` of the example plugin, result key ``class_mae``) and a task that is not
classification (its ``ordinal`` task): early stopping and the best epoch, ``tune``, WiSE-FT's
alpha, ``compare``'s best row, the negative-transfer guard and ``lepton runs`` all pick the
lowest value; the matrix reads the spec's result key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lepton_platform as lp
from lepton_platform.api.compare import Comparison, ComparisonRow, guard

MLP = {"num_features": 3, "hidden": [16]}
TRAIN = {"epochs": 6, "lr": 0.05, "batch_size": 16, "progress": False, "monitor": "class-mae"}


pytestmark = pytest.mark.usefixtures("lepton_cache")


def grades(path: Path, rows: int = 160, seed: int = 0, shift: float = 0.0) -> Path:
    """Four ordered grades along one direction, with overlap (so errors are one grade off)."""
    rng = np.random.default_rng(seed)
    lines = ["a,b,c,label"]
    for i in range(rows):
        grade = i % 4
        x = np.array([grade * 1.2 + shift, 0.0, 0.0]) + rng.normal(0, 0.7, 3)
        lines.append(",".join(f"{v:.4f}" for v in x) + f",g{grade}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def ordinal(path: Path, **kwargs: Any) -> Any:
    options = {
        "domain": "tabular",
        "data": str(path),
        "backbone": "mlp",
        "backbone_options": MLP,
        "task": "ordinal",
        "train": TRAIN,
        "bootstrap": 0,
    }
    return lp.transfer(**{**options, **kwargs})


def test_the_spec_gives_the_direction_and_the_key() -> None:
    spec = lp.get_metric("class-mae")
    assert (spec.higher_is_better, spec.key) == (False, "class_mae")
    assert spec.summary()["higher_is_better"] is False
    assert lp.get_task("ordinal").create(label_names=["a", "b"]).default_metrics[0] == "class-mae"


def test_monitor_keeps_the_epoch_of_the_lowest_error(tmp_path: Path) -> None:
    result = ordinal(grades(tmp_path / "g.csv"), output_dir=tmp_path / "run")
    values = [h["val_class_mae"] for h in result.history]
    assert len(set(values)) > 1, values
    selection = result.details["selection"]
    assert selection["higher_is_better"] is False and selection["key"] == "val_class_mae"
    assert selection["chosen_epoch"] == int(np.argmin(values))
    assert selection["best_score"] == min(values)
    assert result.headline_key == "class_mae" and result.higher_is_better is False
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["headline"] == {
        "metric": "class-mae",
        "key": "class_mae",
        "higher_is_better": False,
    }


def test_wise_ft_chooses_the_alpha_of_the_lowest_error(tmp_path: Path) -> None:
    data = grades(tmp_path / "g.csv")
    ordinal(data, output_dir=tmp_path / "source", train={**TRAIN, "epochs": 2})
    result = ordinal(
        data,
        pretrained=str(tmp_path / "source" / "model"),
        strategy="wise-ft",
        strategy_params={"alphas": [0.0, 0.25, 0.5, 0.75, 1.0]},
        train={**TRAIN, "epochs": 3},
    )
    sweep = result.details["sweep"]
    values = [row["value"] for row in sweep]
    assert len(set(values)) > 1, values
    assert all(row["validation_score"] == -row["value"] for row in sweep)
    lowest = min(sweep, key=lambda row: (row["value"], -row["alpha"]))
    assert result.details["alpha"] == lowest["alpha"]


def test_tune_minimises_a_lower_is_better_metric(tmp_path: Path) -> None:
    data = grades(tmp_path / "g.csv")
    result = lp.tune(
        {
            "domain": "tabular",
            "data": {"sources": [str(data)], "split": {"validation": 0.2, "test": 0.2}},
            "backbone": {"name": "mlp", "options": MLP},
            "task": "ordinal",
            "train": {**TRAIN, "epochs": 2},
            "output": {"root": str(tmp_path), "name": "search"},
            "search": {
                "space": {"train.lr": {"low": 0.001, "high": 0.2, "log": True}},
                "pruner": "none",
            },
        },
        n_trials=3,
        final=False,
    )
    assert result.direction == "minimize" and result.metric == "class-mae"
    summary = json.loads((tmp_path / "search" / "tune.json").read_text())
    values = [t["value"] for t in summary["trials"] if t["state"] == "COMPLETE"]
    assert len(values) == 3 and result.best_value == min(values)


def test_compare_best_row_and_lepton_runs_pick_the_lowest(tmp_path: Path) -> None:
    grades(tmp_path / "g.csv")
    (tmp_path / "cfg.yaml").write_text(
        "domain: tabular\n"
        "data: {sources: [g.csv], split: {validation: 0.2, test: 0.25}}\n"
        f"backbone: {{name: mlp, options: {json.dumps(MLP)}}}\n"
        "task: ordinal\n"
        "train: {epochs: 3, lr: 0.05, batch_size: 16, progress: false, monitor: class-mae}\n"
        "evaluation: {bootstrap: 0}\n"
        "output: {root: " + str(tmp_path / "runs") + "}\n"
        "compare: {strategies: [finetune, linear-probe], seeds: [0, 1], metric: class-mae}\n",
        encoding="utf-8",
    )
    outcome = lp.run_comparison(tmp_path / "cfg.yaml")
    comparison = outcome.comparison
    assert (comparison.key, comparison.higher_is_better) == ("class_mae", False)
    means = {r.name: r.mean("class_mae") for r in comparison.rows if r.kind == "strategy"}
    best = comparison.best()
    assert best is not None and best.name == min(means, key=means.__getitem__)
    written = json.loads((outcome.folder / "comparison.json").read_text())  # valid JSON
    assert written["best"] == best.name and written["key"] == "class_mae"
    (listed,) = lp.list_runs(tmp_path / "runs")
    assert (listed.kind, listed.strategy, listed.headline) == ("compare", best.name, "class_mae")
    assert listed.value == pytest.approx(means[best.name])


def _predictions(labels: np.ndarray, off_by: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits that predict ``labels + off_by`` (clipped to the 4 grades)."""
    predicted = np.clip(labels + off_by, 0, 3)
    return np.eye(4)[predicted] * 5.0, labels


def test_the_guard_calls_a_higher_error_negative_transfer() -> None:
    """With class-mae (lower is better) the paired difference is oriented so that a higher
    error is negative, and the guard flags only the row whose whole interval is below zero."""
    from lepton_platform.api.compare import paired_difference
    from lepton_platform.engine.evaluate import Metric

    metric = Metric.of(lp.get_metric("class-mae"))
    task = lp.get_task("ordinal").create(label_names=["g0", "g1", "g2", "g3"])
    rng = np.random.default_rng(0)
    rows: dict[str, ComparisonRow] = {}
    errors = {"worse": 2, "better": 0, "scratch": 1}
    for name in errors:
        rows[name] = ComparisonRow(name, "baseline" if name == "scratch" else "strategy", {})
    for seed in (0, 1, 2):
        labels = rng.integers(0, 4, 120)
        for name, off in errors.items():
            noise = np.where(rng.random(120) < 0.3, off, 0) if off else np.zeros(120, int)
            logits, _ = _predictions(labels, noise)
            error = float(np.abs(np.clip(labels + noise, 0, 3) - labels).mean())
            rows[name].runs.append({"seed": seed, "metrics": {"test": {"class_mae": error}},
                                    "seconds": 1.0, "peak_memory_mb": 1.0,
                                    "predictions": (logits, labels)})  # fmt: skip
    comparison = Comparison(
        metric="class-mae",
        key="class_mae",
        higher_is_better=False,
        seeds=[0, 1, 2],
        rows=list(rows.values()),
    )
    for name in ("worse", "better"):
        diff = paired_difference(
            metric, task, rows[name].predictions(), rows["scratch"].predictions(),
            against="scratch", resamples=300,
        )  # fmt: skip
        assert diff is not None
        rows[name].differences["scratch"] = diff
    worse, better = rows["worse"].differences["scratch"], rows["better"].differences["scratch"]
    assert worse.delta < 0 and worse.high < 0  # more error: negative, beyond the noise
    assert better.delta > 0 and better.low > 0
    expected = -(rows["worse"].mean("class_mae") - rows["scratch"].mean("class_mae"))
    assert worse.delta == pytest.approx(expected)
    warnings = guard(comparison)
    assert len(warnings) == 1 and "'worse'" in warnings[0] and "above the 'scratch'" in warnings[0]
    assert comparison.best() is not None and comparison.best().name == "better"  # type: ignore[union-attr]


def test_the_matrix_and_multiple_domains_with_a_task_that_is_not_classification(
    tmp_path: Path,
) -> None:
    a, b = grades(tmp_path / "a.csv", seed=1), grades(tmp_path / "b.csv", seed=2, shift=0.8)
    matrix = lp.cross_domain_matrix(
        "tabular",
        {"a": str(a), "b": str(b)},
        "mlp",
        backbone_options=MLP,
        task="ordinal",
        metric="class-mae",
        train={**TRAIN, "epochs": 2},
    )
    assert matrix.metric == "class_mae"
    assert all(0.0 <= v < 3.0 for row in matrix.values for v in row)
