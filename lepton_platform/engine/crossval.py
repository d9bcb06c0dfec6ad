"""Stratified or grouped k-fold cross-validation of a whole transfer recipe.

Each fold's held-out part is its test set. A validation part is carved out of the remaining
training folds (stratified and grouped the same way), so whatever the recipe chooses with it
(epochs, checkpoints, thresholds, hyper-parameters) is never chosen on the data that reports
the fold's result. No group (patient, speaker, document) ever appears in two parts of a fold.

    >>> def run_fold(train, validation, test, fold):            # doctest: +SKIP
    ...     trainer = Trainer(model_for(fold), task, config)
    ...     trainer.fit(train, validation, preprocessor)
    ...     logits, labels = trainer.predict(test, preprocessor)
    ...     return compute_metrics(task, logits, labels, ["accuracy"])
    >>> result = cross_validate(run_fold, dataset, k=5)          # doctest: +SKIP
    >>> result.mean["accuracy"], result.std["accuracy"]          # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lepton_platform.errors import ConfigError, DataError

if TYPE_CHECKING:
    import datasets

__all__ = ["CrossValResult", "FoldResult", "cross_validate", "make_folds"]

RunFold = Callable[
    ["datasets.Dataset", "datasets.Dataset", "datasets.Dataset", int], Mapping[str, float]
]


@dataclass(frozen=True)
class FoldSplit:
    """Row indices of one fold's three disjoint parts."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


@dataclass
class FoldResult:
    """One fold: its index, the recipe's metrics on its test part, and the part sizes."""

    index: int
    metrics: dict[str, float]
    sizes: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"fold": self.index, "metrics": dict(self.metrics), "sizes": dict(self.sizes)}


@dataclass
class CrossValResult:
    """Per-fold metrics plus the mean and sample standard deviation (``ddof=1``) of every
    numeric metric over the folds that reported it."""

    folds: list[FoldResult]
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    k: int = 0
    stratified: bool = False
    group_column: str | None = None
    seed: int = 0

    @property
    def fold_sizes(self) -> list[dict[str, int]]:
        return [f.sizes for f in self.folds]

    def to_json(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "stratified": self.stratified,
            "group_column": self.group_column,
            "seed": self.seed,
            "mean": dict(self.mean),
            "std": dict(self.std),
            "folds": [f.to_json() for f in self.folds],
        }


def _summarise(folds: Sequence[FoldResult]) -> tuple[dict[str, float], dict[str, float]]:
    names: list[str] = []
    for fold in folds:
        names.extend(k for k in fold.metrics if k not in names)
    mean: dict[str, float] = {}
    std: dict[str, float] = {}
    for name in names:
        values = [
            float(f.metrics[name])
            for f in folds
            if isinstance(f.metrics.get(name), int | float)
            and not isinstance(f.metrics.get(name), bool)
            and math.isfinite(float(f.metrics[name]))
        ]
        if not values:
            continue
        mean[name] = float(np.mean(values))
        std[name] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return mean, std


def _splitter(n_splits: int, stratify: bool, grouped: bool, seed: int) -> Any:
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    if stratify and grouped:
        return StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    if stratify:
        return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    if grouped:
        return GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return KFold(n_splits=n_splits, shuffle=True, random_state=seed)


def _split(
    n_splits: int,
    labels: np.ndarray | None,
    groups: np.ndarray | None,
    seed: int,
    what: str,
) -> list[tuple[np.ndarray, np.ndarray]]:
    splitter = _splitter(n_splits, labels is not None, groups is not None, seed)
    size = len(labels) if labels is not None else len(groups) if groups is not None else 0
    placeholder = np.zeros(size)
    try:
        return list(splitter.split(placeholder, labels, groups))
    except ValueError as exc:
        raise DataError(
            f"cannot make {n_splits} {what} folds of {size} rows: {exc} "
            "(use fewer folds, more data, or stratify=False)"
        ) from exc


def make_folds(
    labels: np.ndarray | None,
    groups: np.ndarray | None,
    *,
    k: int = 5,
    validation_folds: int | None = None,
    seed: int = 0,
    size: int | None = None,
) -> list[FoldSplit]:
    """Index sets of ``k`` folds, each split into disjoint train, validation and test parts.

    ``labels`` (one class index per row, or ``None``) stratifies; ``groups`` (or ``None``) keeps
    each group inside one part. The validation part is one of ``validation_folds`` (default
    ``max(k - 1, 4)``: a quarter or less of the training rows) inner folds of the training rows.
    """
    if k < 2:
        raise ConfigError(f"cross-validation needs k >= 2 folds, got {k}")
    inner = max(k - 1, 4) if validation_folds is None else validation_folds
    if inner < 2:
        raise ConfigError(f"validation_folds must be >= 2, got {inner}")
    n = size if size is not None else len(labels if labels is not None else groups)  # type: ignore[arg-type]
    rows = np.arange(n)
    folds: list[FoldSplit] = []
    outer = (
        _split(k, labels, groups, seed, "outer")
        if (labels is not None or groups is not None)
        else _kfold(k, n, seed)
    )
    for index, (train_pool, test) in enumerate(outer):
        sub_labels = None if labels is None else labels[train_pool]
        sub_groups = None if groups is None else groups[train_pool]
        if sub_labels is None and sub_groups is None:
            inner_splits = _kfold(inner, len(train_pool), seed + 1 + index)
        else:
            inner_splits = _split(inner, sub_labels, sub_groups, seed + 1 + index, "validation")
        fit_rel, val_rel = inner_splits[0]
        split = FoldSplit(
            train=np.sort(rows[train_pool][fit_rel]),
            validation=np.sort(rows[train_pool][val_rel]),
            test=np.sort(rows[test]),
        )
        _check_disjoint(split, groups, index)
        folds.append(split)
    return folds


def _kfold(n_splits: int, n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold

    if n < n_splits:
        raise DataError(f"cannot make {n_splits} folds of {n} rows (use fewer folds)")
    return list(KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(np.zeros(n)))


def _check_disjoint(split: FoldSplit, groups: np.ndarray | None, index: int) -> None:
    parts = {"train": split.train, "validation": split.validation, "test": split.test}
    for name, rows in parts.items():
        if rows.size == 0:
            raise DataError(
                f"fold {index}: the {name} part is empty (use fewer folds or more data)"
            )
    names = list(parts)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared_rows = np.intersect1d(parts[a], parts[b])
            if shared_rows.size:  # a bug, never the user's data: stop rather than leak
                raise AssertionError(f"fold {index}: rows {shared_rows[:5]} in both {a} and {b}")
            if groups is not None:
                shared = np.intersect1d(groups[parts[a]], groups[parts[b]])
                if shared.size:
                    raise AssertionError(
                        f"fold {index}: groups {shared[:5].tolist()} in both {a} and {b}"
                    )


def _column(dataset: datasets.Dataset, name: str) -> np.ndarray:
    return np.asarray(dataset[name])


def cross_validate(
    run_fold: RunFold,
    dataset: datasets.Dataset,
    *,
    k: int = 5,
    stratify: bool = True,
    group_column: str | None = "group",
    seed: int = 0,
    progress: bool = True,
    validation_folds: int | None = None,
) -> CrossValResult:
    """Run a whole recipe on ``k`` folds and report each fold's metrics, their mean and std.

    ``run_fold(train, validation, test, fold_index) -> {metric: value}`` trains on ``train``,
    chooses anything it must on ``validation`` and reports on ``test``. ``stratify`` keeps class
    proportions (single-label only; multi-label folds are not stratified). ``group_column``
    (default ``"group"``, used when the dataset has it; ``None`` to ignore groups) keeps every
    group inside one part. A class missing from a fold's training part raises ``DataError``.
    """
    if len(dataset) == 0:
        raise DataError("cannot cross-validate an empty dataset (0 rows)")
    columns = set(dataset.column_names)
    groups: np.ndarray | None = None
    if group_column is not None:
        if group_column in columns:
            groups = _column(dataset, group_column)
        elif group_column != "group":
            raise DataError(
                f"group_column {group_column!r} is not a column of the dataset "
                f"(columns: {sorted(columns)})"
            )
    labels: np.ndarray | None = None
    all_labels = _column(dataset, "label") if "label" in columns else None
    if stratify:
        if all_labels is None:
            raise DataError("stratify=True needs a 'label' column (or pass stratify=False)")
        if all_labels.ndim == 1:
            labels = all_labels
    folds = make_folds(
        labels, groups, k=k, validation_folds=validation_folds, seed=seed, size=len(dataset)
    )
    iterator: Any = enumerate(folds)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, total=len(folds), desc="cross-validation", unit="fold")
    results: list[FoldResult] = []
    for index, split in iterator:
        if all_labels is not None and all_labels.ndim == 1:
            _check_classes(all_labels, split, index)
        train = dataset.select(split.train)
        validation = dataset.select(split.validation)
        test = dataset.select(split.test)
        metrics = run_fold(train, validation, test, index)
        if not isinstance(metrics, Mapping):
            raise ConfigError(
                f"run_fold must return a mapping of metric names to numbers, got "
                f"{type(metrics).__name__} for fold {index}"
            )
        sizes = {"train": len(train), "validation": len(validation), "test": len(test)}
        results.append(FoldResult(index=index, metrics=dict(metrics), sizes=sizes))
    mean, std = _summarise(results)
    return CrossValResult(
        folds=results,
        mean=mean,
        std=std,
        k=k,
        stratified=labels is not None,
        group_column=group_column if groups is not None else None,
        seed=seed,
    )


def _check_classes(labels: np.ndarray, split: FoldSplit, index: int) -> None:
    seen = set(labels[split.train].tolist())
    for part in ("validation", "test"):
        unseen = sorted(set(labels[getattr(split, part)].tolist()) - seen)
        if unseen:
            raise DataError(
                f"fold {index}: class(es) {unseen} occur in the {part} part but never in its "
                "training part (too few rows or groups of that class); use fewer folds or "
                "gather more data for it"
            )
