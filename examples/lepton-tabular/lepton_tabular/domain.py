"""The ``tabular`` domain: numeric feature vectors read from CSV files with a label column.

Each CSV file has a header row. One column holds the label (``label`` unless the source says
otherwise), an optional one the group (patient, site, ...); the feature columns are the others,
or the ones the source names. Every row becomes one example with the input column ``features``
(a list of float32) and ``label`` (a ``ClassLabel``).

A row with the wrong number of columns, a value that is not a number, or a NaN / infinite value is
a bad record: it goes to ``bad_records.add(file, row, reason)`` with ``row`` the line number in
the file (the header is line 1).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from lepton_platform.data.records import BadRecords
from lepton_platform.domains import Domain
from lepton_platform.errors import ConfigError, DataError

__all__ = ["TabularDomain"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)

_SOURCE_KEYS = ("path", "format", "label_column", "feature_columns", "group_column", "label_names")


class TabularDomain(Domain):
    """Reads CSV files of numeric features.

    ``label_column`` and ``group_column`` are the defaults for every source (a source may
    override them); ``example_features`` is the width of :meth:`example_dataset`'s vectors.
    """

    name = "tabular"
    input_columns = ("features",)

    def __init__(
        self,
        *,
        label_column: str = "label",
        group_column: str | None = None,
        example_features: int = 4,
    ) -> None:
        if example_features < 1:
            raise ConfigError(f"example_features must be at least 1, got {example_features}")
        self.label_column = label_column
        self.group_column = group_column
        self.example_features = int(example_features)

    # -- reading CSV ---------------------------------------------------------------------------

    def load(self, source: Mapping[str, Any], *, bad_records: BadRecords) -> datasets.Dataset:
        """Read a CSV file, or every ``*.csv`` in a folder (sorted), into the standard schema.

        ``source``: ``path`` (required), ``label_column``, ``group_column``, ``feature_columns``
        (default: every other column) and ``label_names`` (default: the sorted labels seen).
        """
        rows, path, group_column = self._rows(source, bad_records, labelled=True)
        seen = sorted({str(label) for _, label, _ in rows})
        label_names = [str(n) for n in source.get("label_names") or seen]
        missing = sorted(set(seen) - set(label_names))
        if missing:
            raise DataError(f"{path}: labels {missing} are not among label_names {label_names}")
        index = {name: i for i, name in enumerate(label_names)}
        data: dict[str, list[Any]] = {
            "features": [f for f, _, _ in rows],
            "label": [index[str(label)] for _, label, _ in rows],
        }
        features = datasets.Features(
            {
                "features": datasets.List(datasets.Value("float32")),
                "label": datasets.ClassLabel(names=label_names),
            }
        )
        if group_column is not None:
            data["group"] = [g for _, _, g in rows]
            features["group"] = datasets.Value("string")
        return datasets.Dataset.from_dict(data, features=features)

    def load_unlabelled(
        self, source: Mapping[str, Any], *, bad_records: BadRecords
    ) -> datasets.Dataset:
        """Unlabelled feature vectors: a CSV file (or folder of them) with or without the
        label column (a label there is ignored, unread)."""
        rows, _, _ = self._rows(source, bad_records, labelled=False)
        features = datasets.Features({"features": datasets.List(datasets.Value("float32"))})
        return datasets.Dataset.from_dict({"features": [f for f, _, _ in rows]}, features=features)

    def _rows(
        self, source: Mapping[str, Any], bad_records: BadRecords, *, labelled: bool
    ) -> tuple[list[tuple[list[float], str | None, str | None]], Path, str | None]:
        """The rows of a source's files (features, label, group), its path and group column;
        without ``labelled`` the label column may be absent and is never read."""
        unknown = sorted(set(source) - set(_SOURCE_KEYS))
        if unknown:
            raise ConfigError(
                f"tabular source has unknown key(s) {unknown}; allowed: {', '.join(_SOURCE_KEYS)}"
            )
        if "path" not in source:
            raise ConfigError("tabular source needs a 'path' (a CSV file or a folder of them)")
        fmt = source.get("format", "csv")
        if fmt != "csv":
            raise ConfigError(f"tabular source format must be 'csv', got {fmt!r}")
        path = Path(source["path"])
        if path.is_dir():
            files = sorted(path.glob("*.csv"))
            if not files:
                raise DataError(f"{path}: folder holds no *.csv file")
        elif path.is_file():
            files = [path]
        else:
            raise DataError(f"{path}: no such file or folder")
        label_column = str(source.get("label_column", self.label_column))
        group_column = source.get("group_column", self.group_column)
        wanted = source.get("feature_columns")

        rows: list[tuple[list[float], str | None, str | None]] = []
        for file in files:
            rows.extend(
                self._read_file(file, label_column, group_column, wanted, bad_records, labelled)
            )
        if not rows:
            raise DataError(f"{path}: no readable rows")
        return rows, path, group_column

    def _read_file(
        self,
        file: Path,
        label_column: str,
        group_column: str | None,
        wanted: Sequence[str] | None,
        bad_records: BadRecords,
        labelled: bool = True,
    ) -> list[tuple[list[float], str | None, str | None]]:
        with file.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{file}: empty file, expected a header row")
            header = [h.strip() for h in header]
            has_label = label_column in header
            if labelled and not has_label:
                raise DataError(
                    f"{file}: no label column {label_column!r} in the header {header}; "
                    "set label_column in the source"
                )
            if group_column is not None and group_column not in header:
                raise DataError(f"{file}: no group column {group_column!r} in the header")
            skip = {label_column, group_column}
            feature_cols = list(wanted) if wanted else [h for h in header if h not in skip]
            absent = [c for c in feature_cols if c not in header]
            if absent:
                raise DataError(f"{file}: feature columns {absent} are not in the header")
            if not feature_cols:
                raise DataError(f"{file}: no feature columns besides {label_column!r}")
            positions = [header.index(c) for c in feature_cols]
            label_at = header.index(label_column) if labelled else None
            group_at = None if group_column is None else header.index(group_column)

            out: list[tuple[list[float], str | None, str | None]] = []
            for line, row in enumerate(reader, start=2):
                if not row:
                    continue  # a blank line is not a record
                if len(row) != len(header):
                    bad_records.add(
                        str(file), line, f"has {len(row)} columns, the header has {len(header)}"
                    )
                    continue
                values, reason = _parse(row, positions, feature_cols)
                if reason is not None:
                    bad_records.add(str(file), line, reason)
                    continue
                label = None if label_at is None else row[label_at].strip()
                if label_at is not None and not label:
                    bad_records.add(str(file), line, f"empty label in column {label_column!r}")
                    continue
                group = None if group_at is None else row[group_at].strip()
                out.append((values, label, group))
            return out

    # -- prediction inputs and examples ----------------------------------------------------------

    def from_inputs(self, inputs: Sequence[Any]) -> datasets.Dataset:
        """Feature vectors (lists, tuples or 1-D arrays of numbers), all of one length."""
        rows: list[list[float]] = []
        for i, item in enumerate(inputs):
            if isinstance(item, str | bytes) or not hasattr(item, "__len__"):
                raise DataError(
                    f"input {i}: expected a sequence of numbers for the tabular domain, "
                    f"got {type(item).__name__}"
                )
            try:
                vector = [float(v) for v in item]
            except (TypeError, ValueError) as exc:
                raise DataError(f"input {i}: not a vector of numbers ({exc})") from None
            if not all(math.isfinite(v) for v in vector):
                raise DataError(f"input {i}: holds NaN or infinite values")
            if rows and len(vector) != len(rows[0]):
                raise DataError(
                    f"input {i}: has {len(vector)} features, input 0 has {len(rows[0])}"
                )
            rows.append(vector)
        features = datasets.Features({"features": datasets.List(datasets.Value("float32"))})
        return datasets.Dataset.from_dict({"features": rows}, features=features)

    def example_dataset(
        self, num_examples: int, label_names: Sequence[str], seed: int = 0
    ) -> datasets.Dataset:
        """Gaussian vectors of ``example_features`` values, shifted per class."""
        names = [str(n) for n in label_names]
        rng = np.random.default_rng(seed)
        labels = [i % len(names) for i in range(num_examples)]
        vectors = rng.normal(size=(num_examples, self.example_features)).astype(np.float32)
        vectors += np.asarray(labels, dtype=np.float32)[:, None]
        features = datasets.Features(
            {
                "features": datasets.List(datasets.Value("float32")),
                "label": datasets.ClassLabel(names=names),
            }
        )
        return datasets.Dataset.from_dict(
            {"features": vectors.tolist(), "label": labels}, features=features
        )


def _parse(
    row: Sequence[str], positions: Sequence[int], names: Sequence[str]
) -> tuple[list[float], str | None]:
    values: list[float] = []
    for at, name in zip(positions, names, strict=True):
        text = row[at].strip()
        try:
            value = float(text)
        except ValueError:
            return [], f"column {name!r}: {text!r} is not a number"
        if not math.isfinite(value):
            return [], f"column {name!r}: {text!r} is NaN or infinite"
        if abs(value) > _FLOAT32_MAX:
            return [], f"column {name!r}: {text!r} does not fit in a 32-bit float"
        values.append(value)
    return values, None
