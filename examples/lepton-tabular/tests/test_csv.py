"""Reading CSV files into the standard schema, bad rows named by file and row, and the MLP on
the result."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
import torch
from lepton_tabular.backbone import feature_statistics
from lepton_tabular.domain import TabularDomain

import lepton_platform as lp
from lepton_platform.data.records import BadRecords
from lepton_platform.errors import ConfigError, DataError


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def good_csv(tmp_path: Path) -> Path:
    return write(
        tmp_path / "iris.csv",
        ["a,b,c,label", "1.0,2.0,3.0,x", "4,5,6,y", "-1.5,0,2e3,x", "", "7,8,9,z"],
    )


def test_reads_features_and_labels(good_csv: Path) -> None:
    bad = BadRecords()
    ds = TabularDomain().load({"path": str(good_csv)}, bad_records=bad)
    assert ds.column_names == ["features", "label"]
    assert ds.features["label"].names == ["x", "y", "z"]
    assert ds["label"] == [0, 1, 0, 2]
    assert ds["features"][2] == [-1.5, 0.0, 2000.0]
    assert ds.features["features"].feature.dtype == "float32"
    assert len(bad) == 0


def test_label_names_group_and_feature_columns_from_the_source(tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", ["site,f1,f2,y", "s1,0.5,1,no", "s2,1.5,2,yes"])
    source = {
        "path": str(path),
        "label_column": "y",
        "group_column": "site",
        "feature_columns": ["f2"],
        "label_names": ["yes", "no"],
    }
    ds = TabularDomain().load(source, bad_records=BadRecords())
    assert ds["features"] == [[1.0], [2.0]]
    assert ds["label"] == [1, 0]
    assert ds["group"] == ["s1", "s2"]


def test_a_folder_reads_every_csv_in_order(tmp_path: Path) -> None:
    write(tmp_path / "b.csv", ["f,label", "2,q"])
    write(tmp_path / "a.csv", ["f,label", "1,p"])
    ds = TabularDomain().load({"path": str(tmp_path)}, bad_records=BadRecords())
    assert ds["features"] == [[1.0], [2.0]]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("1,2,x", "has 3 columns, the header has 4"),
        ("1,abc,3,x", "column 'b': 'abc' is not a number"),
        ("1,2,nan,x", "column 'c': 'nan' is NaN or infinite"),
        ("1,2,3,", "empty label in column 'label'"),
    ],
)
def test_a_bad_row_stops_the_run_naming_file_and_row(tmp_path: Path, row: str, reason: str) -> None:
    path = write(tmp_path / "bad.csv", ["a,b,c,label", "1,2,3,x", row, "4,5,6,y"])
    with pytest.raises(DataError) as info:
        TabularDomain().load({"path": str(path)}, bad_records=BadRecords())
    assert f"{path}, row 3: {reason}" in str(info.value)


def test_skipping_bad_rows_counts_and_lists_them(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mixed.csv",
        ["a,b,label", "1,2,x", "1,inf,y", "3,4,y", "5,six,x", "7,8,9,x", "9,10,x"],
    )
    bad = BadRecords("skip")
    ds = TabularDomain().load({"path": str(path)}, bad_records=bad)
    assert ds["features"] == [[1.0, 2.0], [3.0, 4.0], [9.0, 10.0]]
    assert [(r.file, r.row) for r in bad] == [(str(path), 3), (str(path), 5), (str(path), 6)]
    assert "'inf' is NaN or infinite" in bad.records[0].reason


def test_missing_label_column_and_unknown_source_key(good_csv: Path) -> None:
    with pytest.raises(DataError, match="no label column 'target'"):
        TabularDomain().load(
            {"path": str(good_csv), "label_column": "target"}, bad_records=BadRecords()
        )
    with pytest.raises(ConfigError, match="unknown key"):
        TabularDomain().load({"path": str(good_csv), "sep": ";"}, bad_records=BadRecords())
    with pytest.raises(DataError, match="no such file"):
        TabularDomain().load({"path": str(good_csv) + ".missing"}, bad_records=BadRecords())


def test_from_inputs_checks_vectors() -> None:
    domain = TabularDomain()
    ds = domain.from_inputs([[1, 2], (3.5, 4)])
    assert ds["features"] == [[1.0, 2.0], [3.5, 4.0]]
    with pytest.raises(DataError, match="input 1: has 3 features, input 0 has 2"):
        domain.from_inputs([[1, 2], [1, 2, 3]])
    with pytest.raises(DataError, match="input 0: expected a sequence of numbers"):
        domain.from_inputs(["1,2"])


def test_mlp_standardises_with_statistics_from_the_training_data(good_csv: Path) -> None:
    ds = TabularDomain().load({"path": str(good_csv)}, bad_records=BadRecords())
    mean, std = feature_statistics(ds["features"])
    assert mean[0] == pytest.approx((1 + 4 - 1.5 + 7) / 4)
    backbone = lp.create_backbone(
        "mlp", num_features=3, hidden=[5], feature_mean=mean, feature_std=std
    )
    pre = backbone.preprocessor()
    scaled = ds.map(pre.transform, batched=True)
    table = torch.tensor(scaled["features_scaled"])
    assert torch.allclose(table.mean(dim=0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(table.std(dim=0, unbiased=False), torch.ones(3), atol=1e-4)
    assert pre.config()["mean"] == mean  # the statistics travel with the backbone's config
    out = backbone(**pre.collate(list(scaled)))
    assert out.shape == (4, 5)
    assert isinstance(ds, datasets.Dataset)


def test_mlp_refuses_data_of_another_width(good_csv: Path) -> None:
    ds = TabularDomain().load({"path": str(good_csv)}, bad_records=BadRecords())
    pre = lp.create_backbone("mlp", num_features=5, hidden=[4]).preprocessor()
    with pytest.raises(DataError, match="expects 5 features per row"):
        ds.map(pre.transform, batched=True)


def test_mlp_loads_its_own_weights_and_names_mismatches(tmp_path: Path) -> None:
    from safetensors.torch import save_model

    source = lp.create_backbone("mlp", num_features=3, hidden=[4, 2])
    save_model(source, str(tmp_path / "model.safetensors"))
    again = lp.create_backbone("mlp", pretrained=str(tmp_path), num_features=3, hidden=[4, 2])
    x = torch.randn(2, 3)
    assert torch.equal(source(features=x), again(features=x))
    with pytest.raises(lp.ArtifactError, match="shape mismatch"):
        lp.create_backbone("mlp", pretrained=str(tmp_path), num_features=3, hidden=[4, 3])
