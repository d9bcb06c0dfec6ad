"""Train / validation / test splits: given ones, a seeded stratified split, or a group-aware
split in which no group (patient, speaker, document) appears in two splits.

    >>> import datasets
    >>> ds = datasets.Dataset.from_dict(
    ...     {"x": list(range(20)), "label": [0, 1] * 10},
    ...     features=datasets.Features(
    ...         {"x": datasets.Value("int64"), "label": datasets.ClassLabel(names=["a", "b"])}))
    >>> parts = split_dataset(ds, SplitConfig(validation=0.2, test=0.2, seed=1))
    >>> [len(parts[s]) for s in SPLITS]
    [12, 4, 4]
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Mapping, Sequence

import datasets
import numpy as np

from lepton_platform.data.schema import GROUP, LABEL, class_label, column_values, label_indices
from lepton_platform.errors import ConfigError, DataError
from lepton_platform.settings import SplitConfig

__all__ = [
    "SPLITS",
    "SPLIT_ALIASES",
    "SplitConfig",
    "check_splits",
    "group_hash",
    "normalize_split_name",
    "split_dataset",
]

#: The three splits every run has, in order.
SPLITS = ("train", "validation", "test")
#: Other names sources use for them.
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}


def group_hash(group: object) -> str:
    """A short, stable stand-in for a group id in messages (ids may be patient ids)."""
    return "#" + hashlib.sha256(str(group).encode()).hexdigest()[:8]


def normalize_split_name(name: str, where: str = "data") -> str:
    """``train`` / ``validation`` / ``test`` for a split name or alias (``val``, ``dev``)."""
    key = str(name).strip().lower()
    if key not in SPLIT_ALIASES:
        raise DataError(
            f"{where}: unknown split {name!r}; use one of {', '.join(SPLITS)} "
            f"(or {', '.join(a for a in SPLIT_ALIASES if a not in SPLITS)})"
        )
    return SPLIT_ALIASES[key]


# -- assignment ------------------------------------------------------------------------------


def _targets(n: int, fractions: Sequence[float]) -> list[int]:
    """Rows per held-out split: at least one each, leaving at least one for training."""
    if n < len(fractions) + 1:
        raise DataError(
            f"{n} row(s) cannot be split into training and {len(fractions)} held-out split(s); "
            "add data or give the splits"
        )
    targets = [max(1, round(n * f)) for f in fractions]
    while sum(targets) > n - 1:
        targets[int(np.argmax(targets))] -= 1
    return targets


def _stratified_rows(
    labels: Sequence[int], fractions: Sequence[float], rng: np.random.Generator
) -> np.ndarray:
    """Split id per row (0 train, j for the j-th held-out split), class proportions kept."""
    n = len(labels)
    targets = _targets(n, fractions)
    classes = sorted(set(labels))
    counts = Counter(labels)
    # every class keeps one row for training where it can
    available = {k: max(counts[k] - 1, 0) for k in classes}
    alloc: list[dict[int, int]] = []
    for f, target in zip(fractions, targets, strict=True):
        ideal = {k: counts[k] * f for k in classes}
        take = {k: min(math.floor(ideal[k]), available[k]) for k in classes}
        remaining = target - sum(take.values())
        order = list(rng.permutation(len(classes)))
        while remaining > 0:
            open_ = [k for k in classes if take[k] < available[k]]
            if not open_:
                break
            best = max(open_, key=lambda k: (ideal[k] - take[k], -order[classes.index(k)]))
            take[best] += 1
            remaining -= 1
        while remaining < 0:
            best = max((k for k in classes if take[k] > 0), key=lambda k: take[k] - ideal[k])
            take[best] -= 1
            remaining += 1
        for k in classes:
            available[k] -= take[k]
        alloc.append(take)

    assign = np.zeros(n, dtype=np.int64)
    by_class: dict[int, list[int]] = {k: [] for k in classes}
    for row, k in enumerate(labels):
        by_class[k].append(row)
    for k in classes:
        rows = np.asarray(by_class[k])[rng.permutation(len(by_class[k]))]
        start = 0
        for j, take in enumerate(alloc, start=1):
            assign[rows[start : start + take[k]]] = j
            start += take[k]
    return assign


def _random_rows(n: int, fractions: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    targets = _targets(n, fractions)
    order = rng.permutation(n)
    assign = np.zeros(n, dtype=np.int64)
    start = 0
    for j, target in enumerate(targets, start=1):
        assign[order[start : start + target]] = j
        start += target
    return assign


def _grouped_rows(
    labels: Sequence[int],
    groups: Sequence[str],
    fractions: Sequence[float],
    rng: np.random.Generator,
    stratify: bool,
) -> np.ndarray:
    """Split id per row such that each group lies in one split; greedy, largest groups first,
    each to the split whose class counts (or size) fall furthest below its target."""
    names = list(dict.fromkeys(groups))
    parts = len(fractions) + 1
    if len(names) < parts:
        raise DataError(
            f"a group-aware split into {parts} splits needs at least {parts} groups, found "
            f"{len(names)}; add data, give the splits, or set split.by_group: false"
        )
    gindex = {g: i for i, g in enumerate(names)}
    classes = sorted(set(labels)) if stratify else [0]
    cindex = {k: i for i, k in enumerate(classes)}
    counts = np.zeros((len(names), len(classes)))
    rows_of: list[list[int]] = [[] for _ in names]
    for row, (k, g) in enumerate(zip(labels, groups, strict=True)):
        gi = gindex[g]
        counts[gi, cindex[k] if stratify else 0] += 1
        rows_of[gi].append(row)

    shares = np.asarray([1 - sum(fractions), *fractions])
    target = shares[:, None] * counts.sum(axis=0)[None, :]
    alloc = np.zeros_like(target)
    order = rng.permutation(len(names))
    order = order[np.argsort(-counts[order].sum(axis=1), kind="stable")]
    split_of = np.zeros(len(names), dtype=np.int64)
    for gi in order:
        g = counts[gi]
        # change of the squared distance to the targets when the group joins each split,
        # relative to the split's size so that small splits are not starved
        delta = ((2 * g[None, :] * (alloc - target) + g[None, :] ** 2) / shares[:, None]).sum(1)
        j = int(np.argmin(delta))
        split_of[gi] = j
        alloc[j] += g

    def members(j: int) -> list[int]:
        return [i for i in range(len(names)) if split_of[i] == j]

    # no held-out split may be empty: move the smallest group of the largest split
    for j in range(1, parts):
        if not members(j):
            donor = max(range(parts), key=lambda s: len(members(s)))
            gi = min(members(donor), key=lambda i: counts[i].sum())
            split_of[gi] = j
    # a class that training never sees: move the smallest group holding it into training
    if stratify:
        for ci in range(len(classes)):
            if any(counts[i, ci] for i in members(0)):
                continue
            holders = [i for i in range(len(names)) if split_of[i] != 0 and counts[i, ci] > 0]
            holders = [i for i in holders if len(members(int(split_of[i]))) > 1]
            if holders:
                split_of[min(holders, key=lambda i: counts[i].sum())] = 0

    assign = np.zeros(len(labels), dtype=np.int64)
    for gi, rows in enumerate(rows_of):
        assign[rows] = split_of[gi]
    return assign


def _assign(ds: datasets.Dataset, fractions: Sequence[float], config: SplitConfig) -> np.ndarray:
    by_group = config.by_group
    if by_group is None:
        by_group = GROUP in ds.column_names
    elif by_group and GROUP not in ds.column_names:
        raise ConfigError(
            f"split.by_group is true but the data has no {GROUP!r} column; name the group "
            "column in the source (group_column) or set split.by_group: false"
        )
    stratify = config.stratify and isinstance(ds.features.get(LABEL), datasets.ClassLabel)
    rng = np.random.default_rng(config.seed)
    if by_group:
        labels = column_values(ds, LABEL) if stratify else [0] * len(ds)
        groups = [str(g) for g in column_values(ds, GROUP)]
        return _grouped_rows(labels, groups, fractions, rng, stratify)
    if stratify:
        return _stratified_rows(column_values(ds, LABEL), fractions, rng)
    return _random_rows(len(ds), fractions, rng)


def _select(ds: datasets.Dataset, assign: np.ndarray, j: int) -> datasets.Dataset:
    return ds.select(np.flatnonzero(assign == j).tolist())


# -- public ----------------------------------------------------------------------------------


def split_dataset(
    ds: datasets.Dataset | datasets.DatasetDict | Mapping[str, datasets.Dataset],
    config: SplitConfig | None = None,
) -> datasets.DatasetDict:
    """``train`` / ``validation`` / ``test`` from one dataset, or from given splits.

    One dataset is split by ``config``: seeded, stratified by class, and by group when a
    ``group`` column exists (unless ``by_group`` says otherwise). Given splits are used as they
    are; a missing validation (or test) split is carved out of ``train`` (``config.validation``
    or ``config.test`` of its rows), and with only ``train`` given it is split like one dataset.
    With ``config.test == 0`` no test split is carved: ``test`` is empty (train and validation
    only). The same data and seed always give the same split.
    """
    config = config or SplitConfig()
    if isinstance(ds, datasets.Dataset):
        if config.test == 0:
            assign = _assign(ds, [config.validation], config)
            return datasets.DatasetDict(
                {
                    "train": _select(ds, assign, 0),
                    "validation": _select(ds, assign, 1),
                    "test": ds.select([]),
                }
            )
        assign = _assign(ds, [config.validation, config.test], config)
        return datasets.DatasetDict({s: _select(ds, assign, j) for j, s in enumerate(SPLITS)})

    given: dict[str, datasets.Dataset] = {}
    for name, part in ds.items():
        split = normalize_split_name(name)
        if split in given:
            raise DataError(f"the given splits name {split!r} twice (as {name!r} and an alias)")
        given[split] = part
    if "train" not in given:
        raise DataError(f"the given splits {sorted(ds)} have no training split; name one 'train'")
    missing = [s for s in ("validation", "test") if s not in given]
    if len(missing) == 2:
        return split_dataset(given["train"], config)
    if missing == ["test"] and config.test == 0:
        given["test"] = given["train"].select([])
        missing = []
    if missing:
        split = missing[0]
        fraction = config.validation if split == "validation" else config.test
        train = given["train"]
        assign = _assign(train, [fraction], config)
        given["train"] = _select(train, assign, 0)
        given[split] = _select(train, assign, 1)
    return datasets.DatasetDict({s: given[s] for s in SPLITS})


def check_splits(
    dsd: datasets.DatasetDict | Mapping[str, datasets.Dataset],
    *,
    require_groups_disjoint: bool = True,
    allow_empty_test: bool = False,
) -> None:
    """Raise :class:`DataError` unless the splits are usable and honest: all three present and
    non-empty (``allow_empty_test``: the test split may be empty, as ``SplitConfig(test=0)``
    makes it), one label space, no validation or test class that training never saw, and (when
    ``require_groups_disjoint``) no group in two splits. Group ids are shown hashed."""
    absent = [s for s in SPLITS if s not in dsd]
    if absent:
        raise DataError(f"missing split(s) {absent}; have {sorted(dsd)}")
    for s in SPLITS:
        if len(dsd[s]) == 0 and not (s == "test" and allow_empty_test):
            hint = " (split.test: 0 asks for no test split)" if s == "test" else ""
            raise DataError(f"the {s} split is empty; add data or change the split fractions{hint}")
    spaces = {s: class_label(dsd[s].features.get(LABEL)) for s in SPLITS}
    for s, space in spaces.items():
        if space is None:
            raise DataError(
                f"the {s} split's {LABEL!r} column is {dsd[s].features.get(LABEL)!r}, "
                "not a ClassLabel"
            )
    names: list[str] = list(spaces["train"].names)  # type: ignore[union-attr]
    for s in ("validation", "test"):
        other = list(spaces[s].names)  # type: ignore[union-attr]
        if other != names:
            raise DataError(
                f"the {s} split's label names {other} differ from train's {names}; "
                "combine sources through lepton_platform.data.load_data to unify them"
            )

    seen = set(label_indices(dsd["train"]))
    for s in ("validation", "test"):
        counts = Counter(label_indices(dsd[s]))
        unseen = sorted(k for k in counts if k not in seen)
        if unseen:
            listed = ", ".join(f"{names[k]!r} ({counts[k]} rows)" for k in unseen[:5])
            more = f" and {len(unseen) - 5} more" if len(unseen) > 5 else ""
            raise DataError(
                f"class(es) {listed}{more} appear in the {s} split but never in train: the "
                "model cannot learn them. Add training examples of them, drop them, or let "
                "Lepton split the data (stratified)"
            )

    if require_groups_disjoint and all(GROUP in dsd[s].column_names for s in SPLITS):
        members = {s: set(column_values(dsd[s], GROUP)) for s in SPLITS}
        shared: dict[str, list[str]] = {}
        for i, a in enumerate(SPLITS):
            for b in SPLITS[i + 1 :]:
                for g in members[a] & members[b]:
                    shared.setdefault(g, []).append(f"{a}/{b}")
        if shared:
            example = sorted(shared, key=group_hash)[0]
            where = " and ".join(
                sorted({p for pair in shared[example] for p in pair.split("/")}, key=SPLITS.index)
            )
            raise DataError(
                f"{len(shared)} group(s) appear in more than one split (e.g. group "
                f"{group_hash(example)} in {where}): rows of one patient, speaker or document "
                "must stay in one split. Let Lepton split by group (split.by_group: true) or "
                "fix the given splits"
            )
