"""Class imbalance: class weights for the loss, and a balanced resampling of the training split.

    >>> balanced_class_weights([0, 0, 0, 1])
    [0.6666666666666666, 2.0]

Use the weights with the core ``classification`` task
(``task_options={"class_weights": balanced_class_weights(bundle.train)}``), computed on the
training split only. :func:`balanced_oversample` draws a training split in which every class is
as frequent as the largest one (rows repeated, seeded): the engine then sees class-balanced
batches in expectation, as a weighted sampler would give.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from lepton_platform.errors import ConfigError, DataError

if TYPE_CHECKING:
    import datasets

__all__ = ["balanced_class_weights", "balanced_indices", "balanced_oversample", "class_counts"]


def _labels(data: datasets.Dataset | Sequence[int] | np.ndarray) -> tuple[np.ndarray, int | None]:
    """Label indices and, for a dataset with a ``ClassLabel``, the number of classes."""
    import datasets

    if isinstance(data, datasets.Dataset):
        if "label" not in data.column_names:
            raise DataError(f"the dataset has no 'label' column; it has {data.column_names}")
        feature = data.features["label"]
        num = len(feature.names) if isinstance(feature, datasets.ClassLabel) else None
        values = data.with_format("arrow")["label"].to_numpy()
        return np.asarray(values, dtype=np.int64), num
    arr = np.asarray(data)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise DataError(f"labels must be a vector of class indices, got {arr.dtype} {arr.shape}")
    return arr.astype(np.int64), None


def class_counts(
    data: datasets.Dataset | Sequence[int] | np.ndarray, num_labels: int | None = None
) -> list[int]:
    """Rows per class (index order)."""
    labels, known = _labels(data)
    n = num_labels or known or (int(labels.max(initial=-1)) + 1)
    if labels.size and (labels.min() < 0 or labels.max() >= n):
        raise DataError(f"labels outside 0..{n - 1}")
    return [int(c) for c in np.bincount(labels, minlength=n)]


def balanced_class_weights(
    data: datasets.Dataset | Sequence[int] | np.ndarray,
    num_labels: int | None = None,
    *,
    power: float = 1.0,
) -> list[float]:
    """``n / (k * n_c)`` per class (scikit-learn's "balanced"), raised to ``power``
    (0.5 softens it). A class without rows has no weight to give: :class:`DataError`."""
    if power < 0:
        raise ConfigError(f"power must be >= 0, got {power}")
    counts = class_counts(data, num_labels)
    empty = [i for i, c in enumerate(counts) if c == 0]
    if empty:
        raise DataError(
            f"class(es) {empty} have no rows in this split; balanced weights need every class "
            "(compute them on the training split)"
        )
    total, k = sum(counts), len(counts)
    return [float((total / (k * c)) ** power) for c in counts]


def balanced_indices(labels: Sequence[int] | np.ndarray, seed: int = 0) -> list[int]:
    """Row indices in which every class appears as often as the largest: each class's rows
    all once, topped up by seeded draws with replacement, then shuffled."""
    arr = np.asarray(labels, dtype=np.int64)
    if arr.size == 0:
        raise DataError("cannot balance an empty split")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(arr, return_counts=True)
    target = int(counts.max())
    picks: list[np.ndarray] = []
    for k, count in zip(classes, counts, strict=True):
        rows = np.flatnonzero(arr == k)
        extra = rng.choice(rows, size=target - int(count), replace=True)
        picks.append(np.concatenate([rows, extra]))
    out = np.concatenate(picks)
    return [int(i) for i in out[rng.permutation(len(out))]]


def balanced_oversample(dataset: datasets.Dataset, seed: int = 0) -> datasets.Dataset:
    """The training split resampled to equal class frequencies (:func:`balanced_indices`).
    Only ever apply it to the training split."""
    labels, _ = _labels(dataset)
    return dataset.select(balanced_indices(labels, seed))
