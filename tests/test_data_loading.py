"""load_data end to end with a small real domain that reads CSV files of numbers."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import pytest

import lepton_platform as lp
from lepton_platform import load_data
from lepton_platform.data import BadRecords, DataBundle, SplitConfig
from lepton_platform.domains import Domain
from lepton_platform.errors import DataError


class NumbersDomain(Domain):
    """``x,label[,patient]`` CSV files; a folder of ``train.csv`` / ``test.csv`` gives splits."""

    name = "numbers"
    input_columns = ("x",)

    def load(
        self, source: Mapping[str, Any], *, bad_records: BadRecords
    ) -> datasets.Dataset | datasets.DatasetDict:
        assert "domain" not in source and "split" not in source  # data-layer keys stay out
        path = Path(source["path"])
        if path.is_dir():
            return datasets.DatasetDict(
                {f.stem: self._read(f, bad_records) for f in sorted(path.glob("*.csv"))}
            )
        return self._read(path, bad_records)

    def _read(self, path: Path, bad_records: BadRecords) -> datasets.Dataset:
        data: dict[str, list[Any]] = {"x": [], "label": []}
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames and "patient" in reader.fieldnames:
                data["group"] = []
            for line, row in enumerate(reader, start=2):
                try:
                    x = float(row["x"])
                except ValueError:
                    bad_records.add(str(path), line, f"x={row['x']!r} is not a number")
                    continue
                data["x"].append(x)
                data["label"].append(row["label"])
                if "group" in data:
                    data["group"].append(row["patient"])
        return datasets.Dataset.from_dict(data)

    def from_inputs(self, inputs: Sequence[Any]) -> datasets.Dataset:
        return datasets.Dataset.from_dict({"x": [float(v) for v in inputs]})

    def example_dataset(
        self, num_examples: int, label_names: Sequence[str], seed: int = 0
    ) -> datasets.Dataset:
        features = datasets.Features(
            {"x": datasets.Value("float64"), "label": datasets.ClassLabel(names=list(label_names))}
        )
        return datasets.Dataset.from_dict(
            {
                "x": [float(i) for i in range(num_examples)],
                "label": [i % len(label_names) for i in range(num_examples)],
            },
            features=features,
        )


def write_csv(path: Path, rows: Sequence[Sequence[object]], header: str = "x,label") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def labelled(n: int, names: Sequence[str] = ("low", "high")) -> list[tuple[float, str]]:
    return [(float(i), names[i % len(names)]) for i in range(n)]


def class_counts(bundle: DataBundle, split: str) -> dict[str, int]:
    counts: dict[str, int] = bundle.summary()["classes"][split]
    return counts


def test_one_source_is_split_stratified_and_summarised(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "a.csv", labelled(40))
    bundle = load_data(NumbersDomain(), {"path": str(src)}, split=SplitConfig(0.25, 0.25, seed=1))
    assert bundle.label_names == ["high", "low"]
    summary = bundle.summary()
    assert summary["rows"] == {"train": 20, "validation": 10, "test": 10}
    assert class_counts(bundle, "test") == {"high": 5, "low": 5}
    assert "domains" not in summary and summary["bad_records"]["skipped"] == 0
    assert set(bundle.fingerprints) == {"train", "validation", "test"}
    again = load_data(NumbersDomain(), str(src), split=SplitConfig(0.25, 0.25, seed=1))
    assert again.fingerprints == bundle.fingerprints
    assert bundle.input_columns == ("x",) and bundle["val"] is bundle.validation


def test_bad_record_stops_the_run_naming_file_and_row(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "a.csv", [*labelled(10), ("oops", "low"), *labelled(4)])
    with pytest.raises(DataError) as info:
        load_data(NumbersDomain(), {"path": str(src)})
    assert f"{src}, row 12: x='oops' is not a number" in str(info.value)
    assert "on_bad_record: skip" in str(info.value)


def test_skipped_bad_records_are_counted_and_listed(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "a.csv", [*labelled(20), ("oops", "low"), ("", "high")])
    bundle = load_data(NumbersDomain(), {"path": str(src)}, on_bad_record="skip")
    summary = bundle.summary()
    assert sum(summary["rows"].values()) == 20
    assert summary["bad_records"]["skipped"] == 2
    assert [(r["file"], r["row"]) for r in summary["bad_records"]["records"]] == [
        (str(src), 22),
        (str(src), 23),
    ]


def test_two_sources_combine_with_a_domain_column(tmp_path: Path) -> None:
    a = write_csv(tmp_path / "site_a.csv", labelled(20, ("cat", "dog")))
    b = write_csv(tmp_path / "b.csv", labelled(30, ("dog", "fox", "cat")))
    bundle = load_data(NumbersDomain(), [{"path": str(a)}, {"path": str(b), "domain": "wild"}])
    assert bundle.label_names == ["cat", "dog", "fox"]
    summary = bundle.summary()
    totals = {
        d: sum(summary["domains"][s].get(d, 0) for s in summary["rows"]) for d in ("site_a", "wild")
    }
    assert totals == {"site_a": 20, "wild": 30}
    assert sum(sum(c.values()) for c in summary["classes"].values()) == 50
    assert sum(summary["classes"][s]["fox"] for s in summary["rows"]) == 10


def test_given_splits_are_respected(tmp_path: Path) -> None:
    write_csv(tmp_path / "folder" / "train.csv", labelled(20))
    write_csv(tmp_path / "folder" / "test.csv", [(100.0, "low"), (101.0, "high"), (102.0, "low")])
    bundle = load_data(NumbersDomain(), {"path": str(tmp_path / "folder")}, split=SplitConfig(0.2))
    assert bundle.test["x"][:] == [100.0, 101.0, 102.0]
    assert len(bundle.train) == 16 and len(bundle.validation) == 4
    assert max(bundle.train["x"][:] + bundle.validation["x"][:]) < 100

    extra = write_csv(tmp_path / "extra.csv", [(200.0, "high"), (201.0, "low")])
    per_source = load_data(
        NumbersDomain(),
        [{"path": str(tmp_path / "folder" / "train.csv")}, {"path": str(extra), "split": "val"}],
    )
    assert per_source.validation["x"][:] == [200.0, 201.0]
    assert len(per_source.train) == 17 and len(per_source.test) == 3


def test_unseen_class_in_given_test_is_a_clear_error(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", labelled(10))
    test = write_csv(tmp_path / "test.csv", [(1.0, "low"), (2.0, "medium")])
    with pytest.raises(DataError, match=r"'medium' \(1 rows\) appear in the test split but never"):
        load_data(NumbersDomain(), [{"path": str(train)}, {"path": str(test), "split": "test"}])


def test_label_outside_the_label_space(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "a.csv", [*labelled(10), (3.5, "medium")])
    with pytest.raises(DataError, match=r"row 10: label 'medium' is not in the label space"):
        load_data(NumbersDomain(), {"path": str(src)}, label_names=["low", "high"])
    bundle = load_data(
        NumbersDomain(), {"path": str(src)}, label_names=["low", "high"], on_bad_record="skip"
    )
    assert bundle.label_names == ["low", "high"]
    assert bundle.summary()["bad_records"]["records"][0]["reason"].startswith("label 'medium'")


def test_group_column_gives_a_leak_free_split(tmp_path: Path) -> None:
    rows = [(float(i), ("low", "high")[i % 2], f"p{i // 3}") for i in range(60)]
    src = write_csv(tmp_path / "scans.csv", rows, header="x,label,patient")
    bundle = load_data(NumbersDomain(), {"path": str(src)})
    groups = {s: set(bundle[s]["group"][:]) for s in ("train", "validation", "test")}
    assert not groups["train"] & (groups["validation"] | groups["test"])
    assert not groups["validation"] & groups["test"]
    assert bundle.summary()["groups"] == {s: len(g) for s, g in groups.items()}


def test_empty_source_is_named(tmp_path: Path) -> None:
    full = write_csv(tmp_path / "full.csv", labelled(10))
    empty = write_csv(tmp_path / "empty.csv", [])
    with pytest.raises(
        DataError, match=r"source 'empty' \(.*empty.csv\): the source holds no rows"
    ):
        load_data(NumbersDomain(), [{"path": str(full)}, {"path": str(empty)}])
    allbad = write_csv(tmp_path / "bad.csv", [("x", "low"), ("y", "high")])
    with pytest.raises(DataError, match=r"bad.csv.*holds no rows \(2 bad record"):
        load_data(NumbersDomain(), {"path": str(allbad)}, on_bad_record="skip")


def test_a_registered_domain_name_is_created_through_the_registry(tmp_path: Path) -> None:
    class Plugin:
        @lp.hookimpl
        def lepton_domains(self) -> list[lp.DomainSpec]:
            return [lp.DomainSpec(name="numbers", factory=NumbersDomain)]

    old = lp.set_host(lp.PluginHost(discover=False))
    try:
        lp.register_plugin(Plugin(), "numbers-plugin")
        bundle = load_data("numbers", {"path": str(write_csv(tmp_path / "a.csv", labelled(12)))})
        assert bundle.domain == "numbers"
        assert sum(bundle.summary()["rows"].values()) == 12
    finally:
        lp.set_host(old)
