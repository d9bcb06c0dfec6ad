"""The standard schema every domain produces, so that the engines never look at modality.

A dataset in the standard schema has the domain's input column(s) (``image``, ``text``,
``features``, ...), ``label`` (a ``ClassLabel``), and optionally ``domain`` (which source a row
came from) and ``group`` (patient, speaker, document: kept within one split).

    >>> import datasets
    >>> raw = datasets.Dataset.from_dict({"x": [1.0, 2.0], "y": ["dog", "cat"]})
    >>> ds = standardize(raw, input_columns=["x"], label_column="y", source="pets.csv")
    >>> ds.features["label"].names, ds["label"][:]
    (['cat', 'dog'], [1, 0])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets

from lepton_platform.errors import ConfigError, DataError

if TYPE_CHECKING:
    from lepton_platform.data.records import BadRecords

__all__ = [
    "DOMAIN",
    "GROUP",
    "LABEL",
    "STANDARD_COLUMNS",
    "check_schema",
    "column_values",
    "label_names_of",
    "standardize",
]

LABEL = "label"
DOMAIN = "domain"
GROUP = "group"
#: The columns the data layer itself manages (besides the domain's input columns).
STANDARD_COLUMNS = (LABEL, DOMAIN, GROUP)


def column_values(ds: datasets.Dataset, column: str) -> list[Any]:
    """The values of one column as a Python list (row order, indices mapping applied)."""
    return list(ds.with_format("arrow")[column].to_pylist())


def class_label(feature: Any) -> datasets.ClassLabel | None:
    """The ``ClassLabel`` of a label feature: itself (single-label), or the element type of a
    ``List(ClassLabel)`` (multi-label: each row holds the indices of its labels)."""
    if isinstance(feature, datasets.ClassLabel):
        return feature
    inner = getattr(feature, "feature", None)
    if isinstance(feature, datasets.List) and isinstance(inner, datasets.ClassLabel):
        return inner
    return None


def is_multi_label(feature: Any) -> bool:
    """True for a ``List(ClassLabel)`` label feature."""
    return class_label(feature) is not None and not isinstance(feature, datasets.ClassLabel)


def label_indices(ds: datasets.Dataset) -> list[int]:
    """Every label index of the ``label`` column, flattened for multi-label rows."""
    values = column_values(ds, LABEL)
    if is_multi_label(ds.features.get(LABEL)):
        return [int(i) for row in values for i in (row or [])]
    return [int(v) for v in values]


def label_names_of(ds: datasets.Dataset) -> list[str]:
    """The class names of the ``label`` column (a ``ClassLabel``, or a ``List`` of them)."""
    feature = class_label(ds.features.get(LABEL))
    if feature is None:
        raise DataError(
            f"the dataset's {LABEL!r} column is {ds.features.get(LABEL)!r}, not a ClassLabel; "
            "pass it through lepton_platform.data.standardize first"
        )
    return list(feature.names)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _is_integral(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()


def _report(bad_records: BadRecords | None, source: str, row: int, reason: str) -> None:
    if bad_records is None:
        raise DataError(f"{source}, row {row}: {reason}")
    bad_records.add(source, row, reason)


def _encode_labels(
    ds: datasets.Dataset,
    column: str,
    label_names: Sequence[str] | None,
    source: str,
    bad_records: BadRecords | None,
) -> tuple[list[int], list[str], list[int]]:
    """Class indices, class names and the rows to keep (the others were bad records)."""
    feature = ds.features[column]
    values = column_values(ds, column)
    if isinstance(feature, datasets.ClassLabel):
        values = [None if v is None or v < 0 else feature.names[v] for v in values]
        present = list(feature.names)
    else:
        present = []
    given = None if label_names is None else [str(n) for n in label_names]
    if given is not None and len(set(given)) != len(given):
        raise DataError(f"{source}: label_names {given} name a class twice")

    as_index = (
        not isinstance(feature, datasets.ClassLabel)
        and given is not None
        and all(_is_integral(v) for v in values if not _is_missing(v))
    )
    if given is not None:
        names = given
    elif present:
        names = present
    else:
        seen = {v for v in values if not _is_missing(v)}
        if seen and all(_is_integral(v) for v in seen):
            names = [str(int(v)) for v in sorted(seen)]
        else:
            names = sorted(str(v) for v in seen)
    index = {name: i for i, name in enumerate(names)}

    codes: list[int] = []
    keep: list[int] = []
    for row, value in enumerate(values):
        if _is_missing(value):
            _report(bad_records, source, row, f"missing label in column {column!r}")
            continue
        if as_index:
            code = int(value)
            if not 0 <= code < len(names):
                _report(
                    bad_records,
                    source,
                    row,
                    f"label {value!r} is outside the label space: an index into "
                    f"label_names needs 0 <= label < {len(names)} ({names})",
                )
                continue
        else:
            key = str(int(value)) if _is_integral(value) else str(value)
            if key not in index:
                _report(
                    bad_records,
                    source,
                    row,
                    f"label {key!r} is not in the label space {names}; add it to label_names "
                    "or fix the row",
                )
                continue
            code = index[key]
        codes.append(code)
        keep.append(row)
    return codes, names, keep


def standardize(
    ds: datasets.Dataset,
    *,
    input_columns: Sequence[str],
    label_column: str = LABEL,
    label_names: Sequence[str] | None = None,
    domain: str | None = None,
    group_column: str | None = None,
    source: str = "dataset",
    bad_records: BadRecords | None = None,
    keep_columns: Sequence[str] = (),
) -> datasets.Dataset:
    """Rename and cast ``ds`` to the standard schema.

    The label becomes a ``ClassLabel``: string labels are mapped to ``label_names`` (default:
    the sorted labels seen); integer labels are indices into ``label_names`` when it is given.
    A missing label, or one outside the label space, is a bad record named by ``source`` and row
    (the 0-based row of ``ds``): a :class:`DataError`, or with a skipping ``bad_records`` the row
    is left out and listed. ``domain`` fills a ``domain`` column; ``group_column`` becomes
    ``group`` (as strings). Columns other than these and ``keep_columns`` are dropped.
    """
    if not isinstance(ds, datasets.Dataset):
        raise DataError(f"{source}: expected a datasets.Dataset, got {type(ds).__name__}")
    wanted = [*input_columns, label_column, *keep_columns]
    if group_column is not None:
        wanted.append(group_column)
    missing = [c for c in wanted if c not in ds.column_names]
    if missing:
        raise DataError(
            f"{source}: no column(s) {missing}; the data has {ds.column_names}. "
            "Name the right columns in the source (label_column, group_column, ...)"
        )
    if label_column in input_columns:
        raise DataError(f"{source}: the label column {label_column!r} is also an input column")

    codes, names, keep = _encode_labels(ds, label_column, label_names, source, bad_records)
    if len(keep) != len(ds):
        ds = ds.select(keep)

    group_src = (
        group_column if group_column is not None else (GROUP if GROUP in ds.column_names else None)
    )
    columns = [*dict.fromkeys([*input_columns, *keep_columns])]
    if group_src is not None:
        columns.append(group_src)
    if domain is None and DOMAIN in ds.column_names and DOMAIN not in columns:
        columns.append(DOMAIN)
    ds = ds.select_columns(list(dict.fromkeys(columns)))
    ds = ds.add_column(LABEL, codes, feature=datasets.ClassLabel(names=names))

    if group_src is not None:
        if group_src != GROUP:
            ds = ds.rename_column(group_src, GROUP)
        if ds.features[GROUP] != datasets.Value("string"):
            ds = ds.cast_column(GROUP, datasets.Value("string"))
        groups = column_values(ds, GROUP)
        empty = [i for i, g in enumerate(groups) if _is_missing(g)]
        if empty:
            for row in empty:
                # rows are renumbered only by skipped labels, so report the original row
                _report(bad_records, source, keep[row], f"missing group in {group_src!r}")
            dropped = set(empty)
            ds = ds.select([i for i in range(len(ds)) if i not in dropped])
    if domain is not None:
        ds = ds.add_column(DOMAIN, [str(domain)] * len(ds), feature=datasets.Value("string"))
    elif DOMAIN in ds.column_names and ds.features[DOMAIN] != datasets.Value("string"):
        ds = ds.cast_column(DOMAIN, datasets.Value("string"))
    return ds


def check_schema(ds: datasets.Dataset, input_columns: Sequence[str], where: str) -> None:
    """Raise :class:`DataError` naming ``where`` unless ``ds`` is in the standard schema."""
    if not isinstance(ds, datasets.Dataset):
        raise DataError(f"{where}: expected a datasets.Dataset, got {type(ds).__name__}")
    missing = [c for c in (*input_columns, LABEL) if c not in ds.column_names]
    if missing:
        raise DataError(
            f"{where}: no column(s) {missing} of the standard schema; the data has "
            f"{ds.column_names}. A domain's load() must return its input columns "
            f"{list(input_columns)} and {LABEL!r} (see lepton_platform.data.standardize)"
        )
    feature = ds.features[LABEL]
    if class_label(feature) is None:
        raise DataError(
            f"{where}: the {LABEL!r} column is {feature!r}, not a datasets.ClassLabel (or a "
            "List of them for multi-label data); use lepton_platform.data.standardize"
        )
    for column in (DOMAIN, GROUP):
        if column in ds.column_names and ds.features[column] != datasets.Value("string"):
            raise DataError(
                f"{where}: the {column!r} column must hold strings, it is {ds.features[column]!r}"
            )


def pick_column(
    wanted: Any, candidates: Sequence[str], columns: Sequence[str], where: Any, what: str
) -> str:
    """The column a source names for ``what`` (``image``, ``label``, ...), or the first of the
    usual ``candidates`` present. For domains reading tables: a named column that is missing,
    or no candidate at all, is an error naming the source and the columns it has."""
    if wanted is not None:
        if wanted not in columns:
            raise ConfigError(f"{where}: {what}_column {wanted!r} not in columns {list(columns)}")
        return str(wanted)
    for name in candidates:
        if name in columns:
            return name
    raise DataError(
        f"{where}: no {what} column (looked for {', '.join(candidates)}; columns: "
        f"{list(columns)}); set {what}_column in the source"
    )


def pick_columns(
    source: Mapping[str, Any],
    what: str,
    candidates: Sequence[str],
    label_candidates: Sequence[str],
    columns: Sequence[str],
    where: Any,
    *,
    labelled: bool,
) -> tuple[str, str | None, str | None]:
    """A table source's input column (``<what>_column`` or the first of ``candidates``), its
    label column (``label_column`` or the first of ``label_candidates``) and its
    ``group_column``; the last two only when ``labelled``. A named column that is missing is
    an error naming the source and the columns it has (:func:`pick_column`)."""
    data = pick_column(source.get(f"{what}_column"), candidates, columns, where, what)
    if not labelled:
        return data, None, None
    label = pick_column(source.get("label_column"), label_candidates, columns, where, "label")
    group = source.get("group_column")
    if group is not None and group not in columns:
        raise ConfigError(f"{where}: group_column {group!r} not in columns {list(columns)}")
    return data, label, None if group is None else str(group)


def is_saved_dataset(path: Path) -> bool:
    """True for a folder written by ``datasets``' ``save_to_disk`` (a ``Dataset`` or a
    ``DatasetDict``), which domains read with ``datasets.load_from_disk``."""
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()
    )
