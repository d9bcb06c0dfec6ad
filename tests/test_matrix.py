"""The cross-domain matrix: JSON and a labelled heat map."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from PIL import Image

from lepton_platform.api.matrix import cross_domain_matrix
from lepton_platform.data import DataBundle
from lepton_platform.errors import ConfigError
from lepton_platform.testing.tiny import TwoLayerBN, blobs

TRAIN = {"epochs": 2, "batch_size": 32, "lr": 0.02, "progress": False, "trackers": ()}


def _bundle(seed: int, shift: float, names: list[str] | None = None) -> DataBundle:
    def part(k: int, n: int) -> datasets.Dataset:
        ds = blobs(n, seed=seed * 10 + k, shift=shift)
        return ds.cast_column("label", datasets.ClassLabel(names=names)) if names else ds

    return DataBundle(
        train=part(1, 120),
        validation=part(2, 45),
        test=part(3, 60),
        label_names=names or ["a", "b", "c"],
        input_columns=("features",),
    )


def test_matrix_with_leave_one_out_written_as_json_and_png(tmp_path: Path) -> None:
    domains = {"A": _bundle(1, 0.0), "B": _bundle(2, 1.5), "C": _bundle(3, -1.5)}
    matrix = cross_domain_matrix(
        None, domains, TwoLayerBN, strategy="finetune", train=TRAIN, output_dir=tmp_path
    )
    assert matrix.rows == ["A", "B", "C", "all but A", "all but B", "all but C"]
    assert matrix.columns == ["A", "B", "C"]
    assert len(matrix.values) == 6 and all(len(r) == 3 for r in matrix.values)
    for i in range(3):  # in-domain beats a domain shifted by 3 units
        assert matrix.values[i][i] > 0.7
    assert matrix.values[1][2] < matrix.values[1][1]
    saved = json.loads((tmp_path / "matrix.json").read_text())
    assert saved["rows"] == matrix.rows and saved["metric"] == "accuracy"
    assert saved["values"] == matrix.values
    image = Image.open(tmp_path / "matrix.png")
    assert image.size[0] > 200 and image.size[1] > 200


def test_heat_map_axes_are_labelled(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from lepton_platform.api.matrix import CrossDomainMatrix

    captured = {}
    original = plt.Figure.savefig

    def spy(fig, *args, **kwargs):  # type: ignore[no-untyped-def]
        ax = fig.axes[0]
        captured["x"] = [t.get_text() for t in ax.get_xticklabels()]
        captured["y"] = [t.get_text() for t in ax.get_yticklabels()]
        captured["labels"] = (ax.get_xlabel(), ax.get_ylabel())
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(plt.Figure, "savefig", spy)
    CrossDomainMatrix(["A", "all but A"], ["A", "B"], [[0.9, 0.5], [0.6, 0.8]], "accuracy").save(
        tmp_path
    )
    assert captured["x"] == ["A", "B"]
    assert captured["y"] == ["A", "all but A"]
    assert captured["labels"] == ("tested on", "trained on")


def test_matrix_refuses_different_label_spaces_and_one_domain() -> None:
    with pytest.raises(ConfigError, match="label names differ"):
        cross_domain_matrix(
            None, {"A": _bundle(1, 0), "B": _bundle(2, 0, ["x", "y", "z"])}, TwoLayerBN
        )
    with pytest.raises(ConfigError, match="at least 2"):
        cross_domain_matrix(None, {"A": _bundle(1, 0)}, TwoLayerBN)
