"""Multi-label label columns (``List(ClassLabel)``) through the data layer, and cached
preprocessing invalidated when a file referred to by path changes."""

from __future__ import annotations

import os
from pathlib import Path

import datasets
import pytest

from lepton_platform.data import (
    check_splits,
    data_fingerprint,
    is_multi_label,
    label_indices,
    label_names_of,
)
from lepton_platform.errors import DataError

NAMES = ["cat", "dog", "bird"]


def multilabel(rows: list[list[int]]) -> datasets.Dataset:
    features = datasets.Features(
        {"x": datasets.Value("int64"), "label": datasets.List(datasets.ClassLabel(names=NAMES))}
    )
    return datasets.Dataset.from_dict({"x": list(range(len(rows))), "label": rows}, features)


def test_multilabel_columns_are_recognised_and_flattened() -> None:
    ds = multilabel([[0, 2], [1], [], [0, 1, 2]])
    assert is_multi_label(ds.features["label"])
    assert label_names_of(ds) == NAMES
    assert sorted(label_indices(ds)) == [0, 0, 1, 1, 2, 2]


def test_check_splits_accepts_multilabel_and_names_an_unseen_class() -> None:
    good = datasets.DatasetDict(
        train=multilabel([[0, 2], [1]]), validation=multilabel([[0]]), test=multilabel([[1, 2]])
    )
    check_splits(good)
    bad = datasets.DatasetDict(
        train=multilabel([[0], [1]]), validation=multilabel([[0]]), test=multilabel([[2]])
    )
    with pytest.raises(DataError, match="'bird' \\(1 rows\\) appear in the test split"):
        check_splits(bad)


def test_fingerprint_follows_the_files_a_dataset_refers_to(tmp_path: Path) -> None:
    file = tmp_path / "a.txt"
    file.write_text("first")
    ds = datasets.Dataset.from_dict({"path": [str(file)], "label": [0]})
    before = data_fingerprint(ds)
    assert (
        data_fingerprint(datasets.Dataset.from_dict({"path": [str(file)], "label": [0]})) == before
    )
    file.write_text("second, longer")
    os.utime(file, ns=(1, 1))
    after = data_fingerprint(datasets.Dataset.from_dict({"path": [str(file)], "label": [0]}))
    assert after != before
