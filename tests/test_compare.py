"""``compare``: rows keyed by labels, every row built before any trains, controls, the paired
guard, split resampling, what stays on disk and resume. Real transfers of the example tabular
plugin's MLP on CSV files written here (a source domain and a shifted target)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import lepton_platform as lp
from lepton_platform.api.compare import (
    Comparison,
    ComparisonRow,
    Difference,
    control_notes,
    paired_difference,
)
from lepton_platform.engine.evaluate import Metric

MLP = {"num_features": 3, "hidden": [16]}
TRAIN = {"epochs": 3, "lr": 0.05, "batch_size": 32, "progress": False}
CENTRES = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]])


pytestmark = pytest.mark.usefixtures("lepton_cache")


def blobs(
    path: Path, rows: int, seed: int, shift: float = 0.0, labelled: bool = True, noise: float = 0.7
) -> str:
    rng = np.random.default_rng(seed)
    lines = ["a,b,c,label" if labelled else "a,b,c"]
    for i in range(rows):
        x = CENTRES[i % 3] + rng.normal(0, noise, 3) + shift
        values = ",".join(f"{v:.4f}" for v in x)
        lines.append(f"{values},c{i % 3}" if labelled else values)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture
def problem(tmp_path: Path) -> dict[str, Any]:
    """A source model saved from the source domain, and a shifted target."""
    source = blobs(tmp_path / "source.csv", 240, seed=0)
    lp.transfer(
        domain="tabular",
        data=source,
        backbone="mlp",
        backbone_options=MLP,
        train=TRAIN,
        output_dir=tmp_path / "source-run",
        bootstrap=0,
    )
    return {
        "source": source,
        "model": str(tmp_path / "source-run" / "model"),
        "target": blobs(tmp_path / "target.csv", 200, seed=1, shift=0.8, noise=1.1),
        "unlabelled": blobs(
            tmp_path / "unlabelled.csv", 90, seed=2, shift=0.8, labelled=False, noise=1.1
        ),
    }


def common(problem: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "domain": "tabular",
        "data": problem["target"],
        "backbone": "mlp",
        "pretrained": problem["model"],
        "train": TRAIN,
        "split": {"validation": 0.2, "test": 0.4},
        "bootstrap": 200,
        **extra,
    }


def test_one_strategy_twice_with_its_control_and_both_baselines(
    problem: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "cmp"
    comparison = lp.compare(
        ["coral", {"name": "coral", "params": {"weight": 0.3}, "label": "coral-light"}],
        seeds=[0, 1],
        source_model=problem["model"],
        output_dir=out,
        **common(problem, unlabelled_target=problem["unlabelled"]),
    )
    rows = {r.name: r for r in comparison.rows}
    assert list(rows) == ["coral", "coral-light", "coral control", "scratch", "source-only"]
    assert [r.kind for r in rows.values()] == [
        "strategy",
        "strategy",
        "control",
        "baseline",
        "baseline",
    ]
    # one control for both: the same training with the alignment off
    assert rows["coral"].control == rows["coral-light"].control == "coral control"
    assert rows["coral control"].params["weight"] == 0.0
    assert rows["coral-light"].runs[0]["details"]["weight"] == 0.3
    for name in ("coral", "coral-light"):
        assert set(rows[name].differences) == {"scratch", "source-only", "coral control"}
    # each row in its own folder, keeping only its result and its test predictions
    for folder in ("coral", "coral-light", "coral_control", "scratch"):
        for seed in (0, 1):
            kept = sorted(p.name for p in (out / folder / f"seed-{seed}").iterdir())
            assert kept == ["result.json", "test-predictions.npz"], (folder, kept)
    saved = json.loads((out / "comparison.json").read_text())
    assert [r["name"] for r in saved["rows"]] == list(rows)
    on_disk = sum(
        p.stat().st_size for p in out.rglob("*") if p.is_file() and p.name != "comparison.json"
    )
    assert 0 < saved["disk_mb"] * 2**20 <= on_disk + 1
    assert "Δ vs scratch" in (out / "comparison.md").read_text()


def test_every_row_is_built_before_any_trains(problem: dict[str, Any], tmp_path: Path) -> None:
    """dann needs an unlabelled target: the comparison stops before finetune, listed first,
    trains at all."""
    out = tmp_path / "cmp"
    with pytest.raises(lp.ConfigError, match=r"compare: row 'dann' cannot run: .*no target data"):
        lp.compare(["finetune", "dann"], seeds=[0], output_dir=out, **common(problem))
    assert not list(out.rglob("result.json")) and not list(out.rglob("checkpoints"))
    with pytest.raises(lp.ConfigError, match=r"source model .* predicts"):
        other = blobs(tmp_path / "other.csv", 90, seed=3)
        text = Path(other).read_text().replace("c0", "z0")
        Path(other).write_text(text)
        lp.compare(
            ["finetune"],
            seeds=[0],
            source_model=problem["model"],
            output_dir=tmp_path / "cmp2",
            **{**common(problem), "data": other},
        )
    assert not list((tmp_path / "cmp2").rglob("result.json"))


def test_a_deterministic_row_over_seeds_keeps_an_interval(
    problem: dict[str, Any], tmp_path: Path
) -> None:
    """The source-only baseline gives the same predictions for every seed (spread 0); its
    paired interval against scratch still has the test rows' sampling width."""
    comparison = lp.compare(
        ["finetune"], seeds=[0, 1, 2], source_model=problem["model"], **common(problem)
    )
    source_only = comparison.row("source-only")
    assert source_only.std("accuracy") == 0.0
    diff = source_only.differences["scratch"]
    assert diff.seeds == 3 and diff.high - diff.low > 0.01
    assert diff.low <= diff.delta <= diff.high
    for row in comparison.rows:
        assert all(
            np.isfinite(r["memory_added_mb"]) and r["memory_added_mb"] >= 0 for r in row.runs
        )


def test_resample_split_draws_a_split_per_seed(problem: dict[str, Any]) -> None:
    fixed = lp.compare(["finetune"], seeds=[0, 1], baselines=False, **common(problem))
    resampled = lp.compare(
        ["finetune"], seeds=[0, 1], baselines=False, resample_split=True, **common(problem)
    )
    (_, la0), (_, la1) = (fixed.rows[0].predictions()[s] for s in (0, 1))
    assert np.array_equal(la0, la1)  # one split for every seed
    (_, lb0), (_, lb1) = (resampled.rows[0].predictions()[s] for s in (0, 1))
    assert not np.array_equal(lb0, lb1)
    assert resampled.resample_split and resampled.to_json()["resample_split"] is True


def test_resume_keeps_finished_rows_with_their_time_and_details(
    problem: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "cmp"
    kwargs = common(problem, output_dir=out, seeds=[0], baselines=["scratch"])
    first = lp.compare(["finetune", "linear-probe"], **kwargs)
    (out / "linear-probe" / "seed-0" / "result.json").unlink()  # as if killed in that row
    again = lp.compare(["finetune", "linear-probe"], resume=True, **kwargs)
    kept, redone = again.row("finetune").runs[0], again.row("linear-probe").runs[0]
    assert kept["seconds"] == first.row("finetune").runs[0]["seconds"]
    assert kept["details"] == first.row("finetune").runs[0]["details"]
    assert kept["details"]["selection"]["chosen_epoch"] is not None
    assert redone["seconds"] != first.row("linear-probe").runs[0]["seconds"]
    assert (
        again.row("finetune").differences["scratch"] == first.row("finetune").differences["scratch"]
    )


def test_save_models_keeps_loadable_models(problem: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    lp.compare(
        ["finetune"], seeds=[0], baselines=False, save_models=True, output_dir=out,
        **common(problem),
    )  # fmt: skip
    predictor = lp.load(out / "finetune" / "seed-0" / "model")
    assert predictor.label_names == ["c0", "c1", "c2"]
    assert not (out / "finetune" / "seed-0" / "training").exists()


def test_labels_that_share_a_folder_are_refused() -> None:
    with pytest.raises(lp.ConfigError, match="would share the folder"):
        lp.compare(
            [("coral", {"weight": 0.5}), {"name": "coral", "label": "coral weight=0.5"}],
            domain="tabular",
            data="unused.csv",
            backbone="mlp",
        )


# -- the paired statistics on hand-made predictions ----------------------------------------------


def _logits(predicted: np.ndarray, k: int = 2) -> np.ndarray:
    return np.eye(k)[predicted] * 4.0


def test_paired_difference_is_exact_on_the_whole_set_and_zero_for_identical_rows() -> None:
    task = lp.create_task("classification", label_names=["a", "b"])
    metric = Metric.of(lp.get_metric("accuracy"))
    labels = np.array([0, 1] * 50)
    right = labels.copy()
    wrong_ten = labels.copy()
    wrong_ten[:10] = 1 - wrong_ten[:10]
    a = {0: (_logits(right), labels)}
    b = {0: (_logits(wrong_ten), labels)}
    diff = paired_difference(metric, task, a, b, against="b", resamples=500)
    assert diff is not None and diff.delta == pytest.approx(0.10)
    assert 0 < diff.low < 0.10 < diff.high < 0.2
    same = paired_difference(metric, task, a, {0: (_logits(right), labels)}, against="a")
    assert same is not None and (same.low, same.delta, same.high) == (0.0, 0.0, 0.0)
    with pytest.raises(lp.ConfigError, match="different test rows"):
        paired_difference(metric, task, a, {0: (_logits(right), labels[::-1].copy())}, against="x")


def test_a_row_no_better_than_its_control_gets_a_note() -> None:
    row = ComparisonRow("coral", "strategy", {}, control="coral control")
    row.differences["coral control"] = Difference("coral control", 0.01, -0.02, 0.04, 3, 500)
    helped = ComparisonRow("mcc", "strategy", {}, control="mcc control")
    helped.differences["mcc control"] = Difference("mcc control", 0.05, 0.02, 0.08, 3, 500)
    comparison = Comparison(metric="accuracy", seeds=[0, 1, 2], rows=[row, helped])
    notes = control_notes(comparison)
    assert len(notes) == 1 and "'coral' is not better than its control" in notes[0]
