"""The standard schema, combining sources, and content fingerprints."""

from __future__ import annotations

import datasets
import pytest

from lepton_platform.data import (
    BadRecords,
    check_schema,
    combine,
    data_fingerprint,
    standardize,
)
from lepton_platform.errors import DataError


def raw(labels: list[object], **extra: list[object]) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {"x": [float(i) for i in range(len(labels))], "y": labels, "note": ["n"] * len(labels)}
        | extra
    )


def test_standardize_maps_string_labels_and_renames_columns() -> None:
    ds = standardize(
        raw(["dog", "cat", "dog"], site=[1, 1, 2]),
        input_columns=["x"],
        label_column="y",
        group_column="site",
        domain="shelter",
        source="pets.csv",
    )
    assert sorted(ds.column_names) == ["domain", "group", "label", "x"]
    assert ds.features["label"] == datasets.ClassLabel(names=["cat", "dog"])
    assert ds["label"][:] == [1, 0, 1]
    assert ds["group"][:] == ["1", "1", "2"]
    assert ds["domain"][:] == ["shelter"] * 3
    check_schema(ds, ["x"], "pets.csv")


def test_integer_labels_index_given_label_names() -> None:
    ds = standardize(
        raw([1, 0, 1]), input_columns=["x"], label_column="y", label_names=["no", "yes"]
    )
    assert ds.features["label"].names == ["no", "yes"]
    assert ds["label"][:] == [1, 0, 1]
    with pytest.raises(DataError, match=r"scan.csv, row 2: label 5 is outside the label space"):
        standardize(
            raw([1, 0, 5]),
            input_columns=["x"],
            label_column="y",
            label_names=["no", "yes"],
            source="scan.csv",
        )


def test_label_outside_label_space_names_source_row_and_value() -> None:
    with pytest.raises(DataError) as info:
        standardize(
            raw(["cat", "dog", "bird", "cat"]),
            input_columns=["x"],
            label_column="y",
            label_names=["cat", "dog"],
            source="pets.csv",
        )
    message = str(info.value)
    assert "pets.csv, row 2" in message and "'bird'" in message and "['cat', 'dog']" in message

    skipped = BadRecords("skip")
    ds = standardize(
        raw(["cat", "dog", "bird", None]),
        input_columns=["x"],
        label_column="y",
        label_names=["cat", "dog"],
        source="pets.csv",
        bad_records=skipped,
    )
    assert ds["x"][:] == [0.0, 1.0]
    assert [(r.file, r.row) for r in skipped] == [("pets.csv", 2), ("pets.csv", 3)]
    assert "missing label" in skipped.records[1].reason


def test_missing_columns_and_non_standard_data_are_named() -> None:
    with pytest.raises(DataError, match=r"pets.csv: no column\(s\) \['pixels'\]"):
        standardize(raw(["a"]), input_columns=["pixels"], label_column="y", source="pets.csv")
    with pytest.raises(DataError, match=r"b\.csv: the 'label' column is Value"):
        check_schema(raw(["a"]).rename_column("y", "label"), ["x"], "b.csv")


def test_combine_adds_a_domain_column_and_unifies_labels_by_name() -> None:
    a = standardize(raw(["cat", "dog"]), input_columns=["x"], label_column="y")
    b = standardize(raw(["dog", "fox", "fox"]), input_columns=["x"], label_column="y")
    ds = combine({"shelter": a, "wild": b})
    assert ds.features["label"].names == ["cat", "dog", "fox"]
    names = ds.features["label"].names
    assert [names[i] for i in ds["label"][:]] == ["cat", "dog", "dog", "fox", "fox"]
    assert ds["domain"][:] == ["shelter", "shelter", "wild", "wild", "wild"]

    with pytest.raises(DataError, match=r"wild, row 1: label 'fox' is not in the label space"):
        combine({"shelter": a, "wild": b}, label_names=["cat", "dog"])
    grouped = standardize(
        raw(["cat"], g=["p1"]), input_columns=["x"], label_column="y", group_column="g"
    )
    with pytest.raises(DataError, match="have a 'group' column but"):
        combine({"shelter": a, "clinic": grouped})


def test_data_fingerprint_follows_content_not_storage(tmp_path) -> None:  # type: ignore[no-untyped-def]
    full = standardize(raw(["a", "b"] * 10), input_columns=["x"], label_column="y")
    sliced = full.select(range(4, 14))
    fresh = datasets.Dataset.from_dict(full[4:14], features=full.features)
    full.save_to_disk(str(tmp_path / "saved"))
    on_disk = datasets.load_from_disk(str(tmp_path / "saved")).select(range(4, 14))
    joined = datasets.concatenate_datasets([full.select(range(4, 9)), full.select(range(9, 14))])
    fingerprints = {data_fingerprint(d) for d in (sliced, fresh, on_disk, joined)}
    assert len(fingerprints) == 1
    assert data_fingerprint(full.select(range(5, 15))) not in fingerprints
    relabelled = fresh.cast_column("label", datasets.ClassLabel(names=["b", "a"]))
    assert data_fingerprint(relabelled) not in fingerprints
