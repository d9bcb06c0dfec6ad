"""Cross-validation: grouped folds never share a group, stratified folds keep the class mix,
the validation part is carved from training rows only, and mean/std are computed right."""

from __future__ import annotations

from collections import Counter
from typing import Any

import datasets
import numpy as np
import pytest

import lepton_platform as lp
from lepton_platform.engine.crossval import cross_validate, make_folds


def _dataset(n: int = 120, groups: int = 30, seed: int = 0) -> datasets.Dataset:
    rng = np.random.default_rng(seed)
    group = rng.integers(0, groups, n)
    label = (group % 3 + (rng.random(n) < 0.2)) % 3  # labels tied to groups, mostly
    return datasets.Dataset.from_dict(
        {"row": list(range(n)), "label": label.tolist(), "group": [f"p{g}" for g in group]}
    )


class _Recorder:
    """A ``run_fold`` that records the parts it got and reports a known metric per fold."""

    def __init__(self) -> None:
        self.parts: list[dict[str, datasets.Dataset]] = []

    def __call__(
        self, train: datasets.Dataset, validation: datasets.Dataset, test: datasets.Dataset,
        fold: int,
    ) -> dict[str, float]:  # fmt: skip
        self.parts.append({"train": train, "validation": validation, "test": test})
        return {"score": [0.5, 0.7, 0.6, 0.8, 0.9][fold], "test_rows": float(len(test))}


def test_grouped_folds_keep_every_group_in_one_part() -> None:
    ds = _dataset()
    recorder = _Recorder()
    result = cross_validate(recorder, ds, k=5, progress=False)
    assert result.group_column == "group" and result.stratified
    tested: list[int] = []
    for parts in recorder.parts:
        groups = {name: set(part["group"]) for name, part in parts.items()}
        rows = {name: set(part["row"]) for name, part in parts.items()}
        assert not groups["train"] & groups["validation"]
        assert not groups["train"] & groups["test"]
        assert not groups["validation"] & groups["test"]
        assert not rows["train"] & rows["validation"] and not rows["train"] & rows["test"]
        assert len(rows["train"] | rows["validation"] | rows["test"]) == len(ds)
        tested.extend(rows["test"])
    assert sorted(tested) == list(range(len(ds)))  # every row is tested exactly once


def test_stratified_folds_keep_the_class_mix() -> None:
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    ds = datasets.Dataset.from_dict({"row": list(range(100)), "label": labels.tolist()})
    recorder = _Recorder()
    result = cross_validate(recorder, ds, k=5, group_column=None, progress=False)
    for parts in recorder.parts:
        assert Counter(parts["test"]["label"]) == {0: 12, 1: 6, 2: 2}
        counts = Counter(parts["validation"]["label"])
        assert counts[2] >= 1 and abs(counts[0] / sum(counts.values()) - 0.6) < 0.05
    assert [f.sizes["test"] for f in result.folds] == [20] * 5


def test_mean_and_std_over_folds() -> None:
    result = cross_validate(_Recorder(), _dataset(), k=5, progress=False)
    scores = [0.5, 0.7, 0.6, 0.8, 0.9]
    assert [f.metrics["score"] for f in result.folds] == scores
    assert result.mean["score"] == pytest.approx(0.7)
    assert result.std["score"] == pytest.approx(np.std(scores, ddof=1))
    assert result.mean["test_rows"] == pytest.approx(120 / 5, abs=3)
    assert sum(f.sizes["test"] for f in result.folds) == 120
    data = result.to_json()
    assert data["k"] == 5 and len(data["folds"]) == 5


def test_folds_are_seeded_and_ungrouped_folds_partition_rows() -> None:
    labels = np.array([0, 1] * 20)
    a = make_folds(labels, None, k=4, seed=3)
    b = make_folds(labels, None, k=4, seed=3)
    c = make_folds(labels, None, k=4, seed=4)
    assert all(np.array_equal(x.test, y.test) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x.test, y.test) for x, y in zip(a, c, strict=True))
    plain = make_folds(None, None, k=4, seed=0, size=40)
    assert sorted(np.concatenate([f.test for f in plain]).tolist()) == list(range(40))


def test_bad_input() -> None:
    with pytest.raises(lp.DataError, match="empty"):
        cross_validate(_Recorder(), datasets.Dataset.from_dict({"label": []}), progress=False)
    with pytest.raises(lp.DataError, match="'patient' is not a column"):
        cross_validate(_Recorder(), _dataset(), group_column="patient", progress=False)
    with pytest.raises(lp.ConfigError, match="k >= 2"):
        cross_validate(_Recorder(), _dataset(), k=1, progress=False)
    # one group holds every example of class 2: some fold tests a class it never trained on
    ds = datasets.Dataset.from_dict(
        {
            "label": [0, 1] * 20 + [2] * 4,
            "group": [f"g{i % 10}" for i in range(40)] + ["rare"] * 4,
        }
    )
    with pytest.raises(lp.DataError, match=r"class\(es\) \[2\] occur in the (test|validation)"):
        cross_validate(_Recorder(), ds, k=3, stratify=False, progress=False)
    with pytest.raises(lp.ConfigError, match="must return a mapping"):
        bad: Any = lambda *_: [1.0]  # noqa: E731
        cross_validate(bad, _dataset(), k=2, progress=False)
