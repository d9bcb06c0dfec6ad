"""Several labelled sources combined into one dataset with a ``domain`` column.

Label spaces are unified by class *name*: ``cat`` in one source and ``cat`` in another are one
class, whatever their indices were.

    >>> import datasets
    >>> a = datasets.Dataset.from_dict(
    ...     {"x": [1.0], "label": [0]},
    ...     features=datasets.Features(
    ...         {"x": datasets.Value("float64"), "label": datasets.ClassLabel(names=["cat"])}))
    >>> b = datasets.Dataset.from_dict(
    ...     {"x": [2.0], "label": [0]},
    ...     features=datasets.Features(
    ...         {"x": datasets.Value("float64"), "label": datasets.ClassLabel(names=["dog"])}))
    >>> ds = combine({"shelter": a, "vet": b})
    >>> ds.features["label"].names, ds["domain"][:]
    (['cat', 'dog'], ['shelter', 'vet'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import datasets

from lepton_platform.data.schema import (
    DOMAIN,
    GROUP,
    LABEL,
    _report,
    column_values,
    label_names_of,
)
from lepton_platform.errors import DataError

if TYPE_CHECKING:
    from lepton_platform.data.records import BadRecords

__all__ = ["combine", "relabel", "unified_label_names"]


def unified_label_names(
    pieces: Sequence[datasets.Dataset], label_names: Sequence[str] | None = None
) -> list[str]:
    """One label space for several datasets: ``label_names`` if given; the shared names when
    every dataset has the same; else the union in order of first appearance."""
    if label_names is not None:
        return [str(n) for n in label_names]
    spaces = [label_names_of(ds) for ds in pieces]
    if not spaces:
        return []
    if all(space == spaces[0] for space in spaces):
        return spaces[0]
    return list(dict.fromkeys(name for space in spaces for name in space))


def relabel(
    ds: datasets.Dataset,
    label_names: Sequence[str],
    *,
    source: str,
    bad_records: BadRecords | None = None,
) -> datasets.Dataset:
    """Re-encode ``label`` into the label space ``label_names``, matching classes by name.

    A row whose class is not in ``label_names`` is a bad record named by ``source`` and row:
    a :class:`DataError`, or skipped and listed when ``bad_records`` skips.
    """
    old = label_names_of(ds)
    target = [str(n) for n in label_names]
    if old == target:
        return ds
    index = {name: i for i, name in enumerate(target)}
    codes: list[int] = []
    keep: list[int] = []
    for row, value in enumerate(column_values(ds, LABEL)):
        name = None if value is None or value < 0 else old[value]
        if name is None:
            _report(bad_records, source, row, "missing label")
            continue
        if name not in index:
            _report(
                bad_records,
                source,
                row,
                f"label {name!r} is not in the label space {target}; add it to label_names "
                "or fix the row",
            )
            continue
        codes.append(index[name])
        keep.append(row)
    if len(keep) != len(ds):
        ds = ds.select(keep)
    order = ds.column_names
    ds = ds.remove_columns(LABEL).add_column(
        LABEL, codes, feature=datasets.ClassLabel(names=target)
    )
    return ds.select_columns(order)


def _named(
    sources: Sequence[tuple[str, datasets.Dataset]] | Mapping[str, datasets.Dataset],
) -> list[tuple[str, datasets.Dataset]]:
    if isinstance(sources, Mapping):
        return list(sources.items())
    return [(str(name), ds) for name, ds in sources]


def combine(
    sources: Sequence[tuple[str, datasets.Dataset]] | Mapping[str, datasets.Dataset],
    *,
    label_names: Sequence[str] | None = None,
    add_domain: bool = True,
    bad_records: BadRecords | None = None,
) -> datasets.Dataset:
    """Concatenate labelled datasets (``{name: dataset}`` or ``[(name, dataset), ...]``) into one.

    Labels are unified by name (see :func:`unified_label_names`); with ``add_domain`` a
    dataset without a ``domain`` column gets one holding its name. Either every source has a
    ``group`` column or none has. Input columns of different types are cast to the first
    source's types; when that fails the error names both sources.
    """
    named = _named(sources)
    if not named:
        raise DataError("nothing to combine: no sources given")
    for name, ds in named:
        if not isinstance(ds, datasets.Dataset):
            raise DataError(f"{name}: expected a datasets.Dataset, got {type(ds).__name__}")
    names = unified_label_names([ds for _, ds in named], label_names)
    with_group = [name for name, ds in named if GROUP in ds.column_names]
    if with_group and len(with_group) != len(named):
        without = [name for name, ds in named if GROUP not in ds.column_names]
        raise DataError(
            f"sources {with_group} have a {GROUP!r} column but {without} have none; give a "
            "group column for every source or for none (groups keep patients or speakers "
            "within one split)"
        )

    pieces: list[datasets.Dataset] = []
    for name, ds in named:
        ds = relabel(ds, names, source=name, bad_records=bad_records)
        if add_domain and DOMAIN not in ds.column_names:
            ds = ds.add_column(DOMAIN, [name] * len(ds), feature=datasets.Value("string"))
        pieces.append(ds)

    first_name, first = named[0][0], pieces[0]
    aligned = [first]
    for (name, _), ds in zip(named[1:], pieces[1:], strict=True):
        if set(ds.column_names) != set(first.column_names):
            raise DataError(
                f"sources {first_name!r} and {name!r} have different columns: "
                f"{sorted(first.column_names)} and {sorted(ds.column_names)}"
            )
        ds = ds.select_columns(first.column_names)
        if ds.features != first.features:
            try:
                ds = ds.cast(first.features)
            except (ValueError, TypeError) as exc:
                raise DataError(
                    f"source {name!r} cannot be combined with {first_name!r}: its columns "
                    f"{dict(ds.features)} do not cast to {dict(first.features)} ({exc})"
                ) from None
        aligned.append(ds)
    if len(aligned) == 1:
        return aligned[0]
    return datasets.concatenate_datasets(aligned)
