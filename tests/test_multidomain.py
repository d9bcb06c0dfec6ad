"""Multi-domain training (shared head, heads per domain) and sequential transfer."""

from __future__ import annotations

import datasets
import pytest

from lepton_platform.api.multidomain import sequential_transfer, train_multidomain
from lepton_platform.data import DataBundle
from lepton_platform.errors import ConfigError
from lepton_platform.testing.tiny import TwoLayerBN, blobs

TRAIN = {"epochs": 3, "batch_size": 32, "lr": 0.02, "progress": False, "seed": 0}


def _bundle(seed: int, shift: float, n: int = 150, names: list[str] | None = None) -> DataBundle:
    def part(k: int, size: int) -> datasets.Dataset:
        ds = blobs(size, seed=seed * 10 + k, shift=shift)
        if names is not None:
            ds = ds.cast_column("label", datasets.ClassLabel(names=names))
        return ds

    return DataBundle(
        train=part(1, n),
        validation=part(2, 60),
        test=part(3, 90),
        label_names=names or ["a", "b", "c"],
        input_columns=("features",),
        domain=f"d{seed}",
    )


def test_shared_label_space_one_head_balanced_metrics() -> None:
    result = train_multidomain(
        {"A": _bundle(1, 0.0, n=200), "B": _bundle(2, 2.0, n=50)}, TwoLayerBN, train=TRAIN
    )
    assert result.heads == "shared"
    assert result.sampling["rows_per_domain"] == {"A": 200, "B": 200}
    assert result.sampling["original_rows"] == {"A": 200, "B": 50}
    for name in ("A", "B"):
        assert result.metrics[name]["accuracy"] > 0.8
        assert result.metrics[name]["examples"] == 90
    overall = result.metrics["overall"]
    mean = (result.metrics["A"]["accuracy"] + result.metrics["B"]["accuracy"]) / 2
    assert overall["accuracy"] == pytest.approx(mean)  # equal test sizes
    assert overall["examples"] == 180


def test_different_label_spaces_get_a_head_per_domain() -> None:
    result = train_multidomain(
        {"A": _bundle(1, 0.0), "B": _bundle(2, 1.0, names=["x", "y", "z"])},
        TwoLayerBN,
        train=TRAIN,
    )
    assert result.heads == "per-domain"
    assert len(result.model.head.heads) == 2  # type: ignore[union-attr]
    assert result.label_names["B"] == ["x", "y", "z"]
    assert result.metrics["A"]["accuracy"] > 0.8
    assert result.metrics["B"]["accuracy"] > 0.8


def test_shared_labels_true_with_different_spaces_is_an_error() -> None:
    with pytest.raises(ConfigError, match="label names differ"):
        train_multidomain(
            {"A": _bundle(1, 0.0), "B": _bundle(2, 1.0, names=["x", "y", "z"])},
            TwoLayerBN,
            train=TRAIN,
            shared_labels=True,
        )


def test_single_domain_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 2 domains"):
        train_multidomain({"A": _bundle(1, 0.0)}, TwoLayerBN, train=TRAIN)


def test_sequential_transfer_measures_forgetting() -> None:
    # B's labels are A's permuted, in the same label space: training on B overwrites A
    a = _bundle(1, 0.0)
    b = _bundle(2, 0.0)
    permute = {0: 1, 1: 2, 2: 0}
    b = DataBundle(
        **{
            **b.__dict__,
            **{
                s: b[s].map(lambda r: {"label": permute[r["label"]]})
                for s in ("train", "validation", "test")
            },
        }
    )
    result = sequential_transfer(("A", a), ("B", b), TwoLayerBN, train=TRAIN)
    assert result.shared_head
    assert result.first_before > 0.8
    assert result.second_after > 0.8
    assert result.forgotten == pytest.approx(result.first_before - result.first_after)
    assert result.forgotten > 0.5
    assert set(result.to_json()) >= {"accuracy_first_before", "accuracy_first_after", "forgotten"}
