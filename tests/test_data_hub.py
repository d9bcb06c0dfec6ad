"""Hub sources: ``{"hub": id, "config": ..., "split": ...}`` read by the data layer through
``datasets.load_dataset``; tested offline on a local data set repository folder (data files and
a README whose YAML declares two configs), which ``load_dataset`` reads without a network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import pytest

from lepton_platform.data import BadRecords, load_data, load_unlabelled
from lepton_platform.data.loading import load_hub
from lepton_platform.domains import Domain
from lepton_platform.errors import ConfigError, DataError

NAMES = ["even", "odd"]
README = """---
configs:
- config_name: small
  data_files:
  - split: train
    path: small/train-*.parquet
  - split: test
    path: small/test-*.parquet
- config_name: large
  data_files:
  - split: train
    path: large/train-*.parquet
---
# A local data set repository
"""


def _rows(n: int, offset: int = 0) -> datasets.Dataset:
    features = datasets.Features(
        {"x": datasets.Value("float64"), "label": datasets.ClassLabel(names=NAMES)}
    )
    values = [float(offset + i) for i in range(n)]
    return datasets.Dataset.from_dict(
        {"x": values, "label": [i % 2 for i in range(n)]}, features=features
    )


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data set repository folder as the Hub holds one: parquet files and a README."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "repo"
    for config, sizes in (("small", {"train": 20, "test": 6}), ("large", {"train": 40})):
        for split, n in sizes.items():
            (root / config).mkdir(parents=True, exist_ok=True)
            _rows(n, 100 if split == "test" else 0).to_parquet(
                str(root / config / f"{split}-00000-of-00001.parquet")
            )
    (root / "README.md").write_text(README, encoding="utf-8")
    return root


class Rows(Domain):
    """A domain that reads no datasets itself: a dataset given (from the Hub) is used as it
    is, in the standard schema (input column ``x``)."""

    name = "rows"
    input_columns = ("x",)

    def load(self, source: Any, *, bad_records: BadRecords) -> datasets.Dataset:
        raise AssertionError("not called for datasets")

    def from_inputs(self, inputs: Any) -> datasets.Dataset:
        raise NotImplementedError

    def example_dataset(self, num_examples: int, label_names: Any, seed: int = 0) -> Any:
        raise NotImplementedError


class Reader(Rows):
    """A domain that reads datasets: it gets ``{"dataset": ..., <the other keys>}``."""

    reads_datasets = True
    seen: list[dict[str, Any]] = []

    def load(self, source: Any, *, bad_records: BadRecords) -> Any:
        self.seen.append({k: v for k, v in source.items() if k != "dataset"})
        return source["dataset"]

    def load_unlabelled(self, source: Any, *, bad_records: BadRecords) -> Any:
        return self.load(source, bad_records=bad_records)


def test_a_config_and_its_splits(repo: Path) -> None:
    bundle = load_data(Rows(), {"hub": str(repo), "config": "small"})
    assert bundle.label_names == NAMES
    rows = bundle.summary()["rows"]
    assert rows["test"] == 6 and rows["train"] + rows["validation"] == 20  # validation carved
    assert min(bundle.test["x"]) >= 100  # the repository's own test split


def test_a_split_with_a_slice_and_test_from_elsewhere(repo: Path) -> None:
    bundle = load_data(
        Rows(),
        [
            {"hub": str(repo), "config": "large", "split": "train[:30]"},
            {"hub": str(repo), "config": "small", "split": "test"},
        ],
    )
    assert len(bundle.train) + len(bundle.validation) == 30
    assert len(bundle.test) == 6
    assert set(bundle.train["domain"]) == {"repo"}


def test_the_domain_reads_the_dataset_with_the_other_keys(repo: Path) -> None:
    Reader.seen.clear()
    source = {"hub": str(repo), "config": "small", "split": "train", "label_column": "label"}
    bundle = load_data(Reader(), [source, {"hub": str(repo), "config": "small", "split": "test"}])
    assert len(bundle.test) == 6
    assert Reader.seen[0] == {"label_column": "label"}  # no hub, config or split keys
    target = load_unlabelled(Reader(), {"hub": str(repo), "config": "large", "split": "train"})
    assert len(target) == 40 and target.column_names == ["x"]


def test_offline_unknown_id_config_and_split_are_named(repo: Path) -> None:
    with pytest.raises(DataError, match=r"hub data set 'nobody/no-such-set'.*offline"):
        load_hub({"hub": "nobody/no-such-set", "split": "train"})
    with pytest.raises(DataError, match=r"config 'tiny'.*cannot be loaded.*small"):
        load_hub({"hub": str(repo), "config": "tiny"})
    with pytest.raises(DataError, match=r"cannot be loaded.*validation"):
        load_data(Rows(), {"hub": str(repo), "config": "small", "split": "validation"})
    with pytest.raises(ConfigError, match="'hub' or 'path'"):
        load_hub({"hub": str(repo), "path": "x.csv"})
    with pytest.raises(ConfigError, match="needs 'hub'"):
        load_hub({"hub": ""})
