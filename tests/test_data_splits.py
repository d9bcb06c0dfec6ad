"""Splits: seeded stratified, group-aware, given; and the checks that refuse dishonest ones."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import pytest

from lepton_platform.data import SPLITS, SplitConfig, check_splits, group_hash, split_dataset
from lepton_platform.errors import ConfigError, DataError

NAMES = ["ant", "bee", "cat"]


def make(labels: list[int], groups: list[str] | None = None) -> datasets.Dataset:
    data: dict[str, list[Any]] = {"x": [float(i) for i in range(len(labels))], "label": labels}
    features: dict[str, Any] = {
        "x": datasets.Value("float64"),
        "label": datasets.ClassLabel(names=NAMES),
    }
    if groups is not None:
        data["group"] = groups
        features["group"] = datasets.Value("string")
    return datasets.Dataset.from_dict(data, features=datasets.Features(features))


def counts(ds: datasets.Dataset) -> Counter[int]:
    return Counter(ds["label"][:])


def test_stratified_split_keeps_proportions_and_is_seeded() -> None:
    # 60 ants, 30 bees, 10 cats
    ds = make([0] * 60 + [1] * 30 + [2] * 10)
    parts = split_dataset(ds, SplitConfig(validation=0.2, test=0.1, seed=7))
    assert [len(parts[s]) for s in SPLITS] == [70, 20, 10]
    assert counts(parts["validation"]) == Counter({0: 12, 1: 6, 2: 2})
    assert counts(parts["test"]) == Counter({0: 6, 1: 3, 2: 1})
    assert counts(parts["train"]) == Counter({0: 42, 1: 21, 2: 7})
    # every row lands in exactly one split
    xs = sorted(x for s in SPLITS for x in parts[s]["x"][:])
    assert xs == [float(i) for i in range(100)]

    again = split_dataset(ds, SplitConfig(validation=0.2, test=0.1, seed=7))
    other = split_dataset(ds, SplitConfig(validation=0.2, test=0.1, seed=8))
    assert again["test"]["x"][:] == parts["test"]["x"][:]
    assert other["test"]["x"][:] != parts["test"]["x"][:]


def test_stratified_split_keeps_a_rare_class_in_training() -> None:
    ds = make([0] * 20 + [1] * 20 + [2] * 2)
    parts = split_dataset(ds, SplitConfig(validation=0.15, test=0.15, seed=0))
    assert counts(parts["train"])[2] >= 1
    check_splits(parts)


def test_group_aware_split_has_disjoint_groups() -> None:
    labels, groups = [], []
    for patient in range(30):
        for visit in range(1 + patient % 4):
            labels.append((patient + visit) % 3)
            groups.append(f"patient-{patient:03d}")
    ds = make(labels, groups)
    parts = split_dataset(ds, SplitConfig(validation=0.2, test=0.2, seed=3))
    members = {s: set(parts[s]["group"][:]) for s in SPLITS}
    assert not members["train"] & members["validation"]
    assert not members["train"] & members["test"]
    assert not members["validation"] & members["test"]
    assert sum(len(m) for m in members.values()) == 30
    sizes = [len(parts[s]) for s in SPLITS]
    assert sum(sizes) == len(ds)
    # roughly 60/20/20 of the rows
    assert abs(sizes[1] / len(ds) - 0.2) < 0.08 and abs(sizes[2] / len(ds) - 0.2) < 0.08
    check_splits(parts)
    again = split_dataset(ds, SplitConfig(validation=0.2, test=0.2, seed=3))
    assert again["test"]["group"][:] == parts["test"]["group"][:]


def test_group_split_needs_enough_groups_and_by_group_needs_a_column() -> None:
    ds = make([0, 1, 0, 1], ["a", "a", "b", "b"])
    with pytest.raises(DataError, match="at least 3 groups, found 2"):
        split_dataset(ds)
    with pytest.raises(ConfigError, match="no 'group' column"):
        split_dataset(make([0, 1, 0, 1]), SplitConfig(by_group=True))


def test_given_splits_are_used_as_they_are_and_a_missing_one_is_carved() -> None:
    train = make([0, 1, 2] * 10)
    val = make([0, 1, 2])
    test = make([2, 1, 0, 0])
    parts = split_dataset({"train": train, "val": val, "test": test})
    assert [len(parts[s]) for s in SPLITS] == [30, 3, 4]
    assert parts["test"]["label"][:] == [2, 1, 0, 0]

    carved = split_dataset({"train": train, "test": test}, SplitConfig(validation=0.2))
    assert [len(carved[s]) for s in SPLITS] == [24, 6, 4]
    assert counts(carved["validation"]) == Counter({0: 2, 1: 2, 2: 2})
    with pytest.raises(DataError, match="unknown split 'holdout'"):
        split_dataset({"train": train, "holdout": test})


def test_unseen_class_in_test_is_named() -> None:
    parts = datasets.DatasetDict(
        {"train": make([0, 1, 0, 1]), "validation": make([0, 1]), "test": make([0, 2, 2])}
    )
    with pytest.raises(DataError, match=r"'cat' \(2 rows\) appear in the test split but never"):
        check_splits(parts)


def test_shared_group_is_refused_without_printing_the_id() -> None:
    patient = "NHS-943-476-5919"
    parts = datasets.DatasetDict(
        {
            "train": make([0, 1], [patient, "p2"]),
            "validation": make([0], ["p3"]),
            "test": make([1], [patient]),
        }
    )
    with pytest.raises(DataError) as info:
        check_splits(parts)
    message = str(info.value)
    assert "1 group(s) appear in more than one split" in message
    assert group_hash(patient) in message and "train and test" in message
    assert patient not in message
    check_splits(parts, require_groups_disjoint=False)


def test_empty_split_and_bad_fractions() -> None:
    parts = datasets.DatasetDict(
        {"train": make([0, 1]), "validation": make([0]), "test": make([0]).select([])}
    )
    with pytest.raises(DataError, match="the test split is empty"):
        check_splits(parts)
    with pytest.raises(ConfigError, match="must leave rows for training"):
        SplitConfig(validation=0.5, test=0.5)
    with pytest.raises(ConfigError, match=r"split\.test: must be a fraction from 0"):
        SplitConfig(test=-0.1)
    with pytest.raises(ConfigError, match=r"split\.validation: must be a fraction"):
        SplitConfig(validation=0)
    with pytest.raises(DataError, match="cannot be split"):
        split_dataset(make([0, 1]))


def test_no_test_split_with_test_zero() -> None:
    """``test: 0``: train and validation only (the test data come from elsewhere); the test
    split is empty, and ``check_splits`` accepts it only when asked to."""
    ds = make([0] * 12 + [1] * 6 + [2] * 2)
    config = SplitConfig(validation=0.25, test=0, seed=4)
    parts = split_dataset(ds, config)
    assert [len(parts[s]) for s in SPLITS] == [15, 5, 0]
    assert parts["test"].features == ds.features
    assert counts(parts["train"])[2] >= 1
    check_splits(parts, allow_empty_test=True)
    with pytest.raises(DataError, match=r"test split is empty.*split\.test: 0"):
        check_splits(parts)
    again = split_dataset(ds, config)
    assert again["validation"]["x"][:] == parts["validation"]["x"][:]
    # given splits: validation is still carved out of train, no test is carved
    given = split_dataset({"train": ds}, config)
    assert [len(given[s]) for s in SPLITS] == [15, 5, 0]
    both = split_dataset({"train": ds, "validation": make([0, 1])}, config)
    assert [len(both[s]) for s in SPLITS] == [20, 2, 0]
    # group-aware: two parts only
    groups = [f"p{i // 2}" for i in range(len(ds))]
    grouped = split_dataset(make(ds["label"][:], groups), config)
    assert len(grouped["test"]) == 0
    assert not set(grouped["train"]["group"][:]) & set(grouped["validation"]["group"][:])


def test_load_data_with_test_zero(tmp_path: Path) -> None:
    """Through the data layer: the bundle's test split is empty and its summary says 0 rows."""
    from lepton_platform.data import load_data
    from lepton_platform.domains import Domain

    class Rows(Domain):
        name = "rows"
        input_columns = ("x",)

        def load(self, source: Any, *, bad_records: Any) -> datasets.Dataset:
            return make([0, 1, 2] * 7)

        def from_inputs(self, inputs: Any) -> datasets.Dataset:
            raise NotImplementedError

        def example_dataset(
            self, num_examples: int, label_names: Any, seed: int = 0
        ) -> datasets.Dataset:
            raise NotImplementedError

    bundle = load_data(Rows(), {"path": "x"}, split=SplitConfig(validation=0.2, test=0))
    assert bundle.summary()["rows"] == {"train": 17, "validation": 4, "test": 0}
    with pytest.raises(DataError, match="test split is empty"):
        check_splits(bundle.splits())
