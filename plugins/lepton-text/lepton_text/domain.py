"""The ``text`` domain: sentences (or sentence pairs) with a label.

Sources, one mapping each (``load_data("text", [source, ...])``):

- ``{"path": "reviews.tsv"}``: CSV (``.csv``), TSV (``.tsv``, ``.txt``), JSON (``.json``: an
  array of objects or JSON Lines), JSON Lines (``.jsonl``, ``.ndjson``), Parquet (``.parquet``);
  a folder reads every such file in it, sorted. ``format`` overrides the file extension
  (``csv``, ``tsv``, ``json``, ``jsonl``, ``parquet``, ``disk``).
- a folder written by ``datasets.Dataset.save_to_disk`` (or ``DatasetDict``), or
  ``{"dataset": <datasets.Dataset or DatasetDict>}``: an object in memory (Python API).

Source keys (each defaults to the domain's option of the same name): ``text_column``
(default ``text``), ``text_pair_column`` (default: ``text_pair`` when the data has it),
``label_column`` (``label``), ``group_column``, ``label_separator`` (multi-label cells in
delimited files, e.g. ``"|"``), ``delimiter``, ``header`` (``true``, ``false`` or unset: the
first row is a header when one of its cells names the text, label, pair or group column),
``quoting`` (``auto``, ``none``, ``csv``), ``columns`` (names for a file without a header), plus
``label_names`` (the label order; default: the labels seen, sorted, numbers numerically),
``domain`` (a value for the ``domain`` column) and ``split`` (one split of a ``DatasetDict``).
A misspelled key is refused, naming the closest one.

A header without the label column, when the label column was not named, takes the labels from
its only column besides the text (pair) and group columns, with a warning (``text,sentiment``
reads two classes); with more candidates the reader refuses, naming the columns it found.

Without a header, the columns are named by ``columns`` or, for 2 or 3 columns,
``text, label`` and ``text, text_pair, label``: the review data's ``sentence<TAB>0/1`` reads with
no options at all. Column names may also be 0-based positions.

Unlabelled target data (:meth:`TextDomain.load_unlabelled`, for domain adaptation) reads the same
sources with the same keys and needs no label: a ``.txt`` file with no tab in it (or any file
with ``format: lines``) is one example per line (blank lines skipped), a delimited file, JSON or
Parquet needs only the text column (without a header, one column is ``text``), and a label
present anywhere is not read.

Bad records go to ``bad_records.add(file, row, reason)``: a missing label, a wrong number of
columns, a text that is not a string, a JSON line that does not parse, and a label outside the
label space: not among the ``label_names`` given, or, inferred, not of the kind the others are
(``positive`` among 0/1 labels, a header row read as data). A file whose text column is empty
in every row is refused. Rows are physical line
numbers (from 1) in CSV, TSV and JSON Lines files, and 0-based record indices in JSON arrays,
Parquet files and datasets.
"""

from __future__ import annotations

import copy
import json
import random
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets

from lepton_platform.data import BadRecords, is_saved_dataset
from lepton_platform.domains import Domain
from lepton_platform.errors import ConfigError, DataError, did_you_mean
from lepton_text._tiny import EXAMPLE_WORDS
from lepton_text.reading import Quoting, read_delimited, read_utf8, split_lines

__all__ = ["TextDomain"]

_SOURCE_KEYS = (
    "path",
    "format",
    "dataset",
    "split",
    "domain",
    "label_names",
    "columns",
    "text_column",
    "text_pair_column",
    "label_column",
    "group_column",
    "label_separator",
    "delimiter",
    "header",
    "quoting",
)
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_FORMATS = ("csv", "tsv", "json", "jsonl", "parquet", "disk", "lines")

Column = str | int
Label = str | list[str]


class _Record:
    """One example as read: where it came from (file and row), its texts, label(s) and
    group."""

    __slots__ = ("group", "label", "pair", "row", "text", "where")

    def __init__(
        self,
        text: str,
        pair: str | None,
        label: Label | None,
        group: str | None,
        where: str = "",
        row: int | None = None,
    ) -> None:
        self.text = text
        self.pair = pair
        self.label = label
        self.group = group
        self.where = where
        self.row = row


def _label_text(value: Any) -> str | None:
    """A label cell as a name, or ``None`` when it is missing."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        if value != value:  # NaN
            return None
        return str(int(value)) if value.is_integer() else str(value)
    text = str(value).strip()
    return text or None


def _read_lines(text: str, where: str = "") -> list[_Record]:
    """One unlabelled record per line of ``text`` (blank lines are no records)."""
    return [
        _Record(line, None, None, None, where, n) for n, line in split_lines(text) if line.strip()
    ]


def _is_number(name: str) -> bool:
    try:
        float(name)
    except ValueError:
        return False
    return True


def _sort_key(name: str) -> tuple[int, float, str]:
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def _names_a_column(first: Sequence[str], options: _Options) -> bool:
    """Whether a file's first row is a header: one of its cells is a column the options name
    (the text, label, text pair or group column), so that ``text,sentiment`` is recognised
    as well as ``text,label``."""
    cells = {cell.strip() for cell in first}
    named = (
        options.text_column,
        options.label_column,
        options.text_pair_column,
        options.group_column,
    )
    return any(isinstance(c, str) and c in cells for c in named)


def _with_label_from_header(file: Path, names: Sequence[str], options: _Options) -> _Options:
    """The options with the label column taken from a header that lacks the default one but
    has exactly one column besides the text (pair) and group columns (``text,sentiment``).
    A label column the user named is never replaced; with more candidates, nothing is
    guessed (the reader then names the columns found)."""
    label = options.label_column
    if options.label_column_given or not isinstance(label, str) or label in names:
        return options

    def named(column: Column | None) -> str | None:
        if isinstance(column, int):
            return names[column] if 0 <= column < len(names) else None
        return column

    used = {named(options.text_column), named(options.text_pair_column) or "text_pair"}
    used.add(named(options.group_column))
    others = [n for n in names if n not in used]
    if len(others) != 1:
        return options
    warnings.warn(
        f"{file}: the header has no {label!r} column; the labels are read from "
        f"{others[0]!r}, its only other column (set label_column: {others[0]} to say so)",
        stacklevel=4,
    )
    chosen = copy.copy(options)
    chosen.label_column = others[0]
    return chosen


def _check_not_all_empty(records: Sequence[_Record], where: str, options: _Options) -> None:
    """An empty text in every row is a column mix-up, not data: refuse it, naming the file."""
    if records and not any(r.text.strip() for r in records):
        raise DataError(
            f"{where}: the text column {options.text_column!r} is empty in all {len(records)} "
            "rows; check text_column (and the delimiter): the sentences are not where it points"
        )


def _stray_labels(
    records: Sequence[_Record], given: Sequence[str] | None
) -> list[tuple[_Record, str]]:
    """The records whose label is outside the label space, with the reason: the given
    ``label_names``, or else the kind of the other labels (a name among numbers, such as
    ``positive`` among 0/1 or a header row read as data, or a number among names)."""
    if given is not None:
        allowed = set(given)
        out: list[tuple[_Record, str]] = []
        for record in records:
            labels = record.label if isinstance(record.label, list) else [record.label]
            wrong = [n for n in labels if n is not None and n not in allowed]
            if wrong:
                out.append((record, f"label {wrong[0]!r} is not among label_names {list(given)}"))
        return out
    single = [r for r in records if isinstance(r.label, str)]
    numbers = [r for r in single if _is_number(str(r.label))]
    if not numbers or len(numbers) == len(single):
        return []
    words = [r for r in single if not _is_number(str(r.label))]
    strays, usual, kind = (
        (words, numbers, "a number") if len(numbers) >= len(words) else (numbers, words, "a name")
    )
    seen = sorted({str(r.label) for r in usual}, key=_sort_key)
    shown = ", ".join(seen[:6]) + (", ..." if len(seen) > 6 else "")
    out = []
    for record in strays:
        reason = (
            f"label {record.label!r} is not {kind} like the other labels ({shown}); fix the "
            "row, or give label_names to say which labels there are"
        )
        if record.row == 1 and record.where.lower().endswith((".csv", ".tsv", ".txt")):
            reason += " (if row 1 is a header, set header: true)"
        out.append((record, reason))
    return out


class _Options:
    """The resolved reading options of one source."""

    def __init__(self, domain: TextDomain, source: Mapping[str, Any]) -> None:
        def pick(key: str) -> Any:
            return source[key] if key in source else getattr(domain, key)

        self.text_column: Column = pick("text_column")
        self.text_pair_column: Column | None = pick("text_pair_column")
        self.label_column: Column = pick("label_column")
        #: whether the user named the label column (else a header may name it otherwise)
        self.label_column_given = "label_column" in source or domain.label_column_given
        self.group_column: Column | None = pick("group_column")
        self.label_separator: str | None = pick("label_separator")
        self.delimiter: str | None = pick("delimiter")
        self.header: bool | None = pick("header")
        self.quoting: Quoting = pick("quoting")
        columns = source.get("columns")
        self.columns: list[str] | None = None if columns is None else [str(c) for c in columns]
        if self.header is not None and not isinstance(self.header, bool):
            raise ConfigError(
                f"text source: header must be true, false or unset, got {self.header!r}"
            )


class TextDomain(Domain):
    """Reads labelled sentences and sentence pairs. The keyword options are the defaults of
    every source's keys of the same name (see the module docstring).

    :attr:`input_columns` is ``("text",)``, and ``("text", "text_pair")`` on a domain built with
    ``text_pair_column`` or once it has loaded a source of sentence pairs (the data layer then
    requires every source to have pairs).
    """

    name = "text"
    input_columns: tuple[str, ...] = ("text",)
    reads_datasets = True

    def __init__(
        self,
        *,
        text_column: Column = "text",
        text_pair_column: Column | None = None,
        label_column: Column | None = None,
        group_column: Column | None = None,
        label_separator: str | None = None,
        delimiter: str | None = None,
        header: bool | None = None,
        quoting: Quoting = "auto",
    ) -> None:
        if quoting not in ("auto", "none", "csv"):
            raise ConfigError(f"quoting must be 'auto', 'none' or 'csv', got {quoting!r}")
        self.text_column = text_column
        self.text_pair_column = text_pair_column
        self.label_column: Column = "label" if label_column is None else label_column
        self.label_column_given = label_column is not None
        self.group_column = group_column
        self.label_separator = label_separator
        self.delimiter = delimiter
        self.header = header
        self.quoting: Quoting = quoting
        if text_pair_column is not None:
            self.input_columns = ("text", "text_pair")

    # -- loading -----------------------------------------------------------------------------

    def load(
        self, source: Mapping[str, Any], *, bad_records: BadRecords
    ) -> datasets.Dataset | datasets.DatasetDict:
        """Read one source into ``text`` (+ ``text_pair``), ``label`` (a ``ClassLabel``, or a
        list of them for multi-label data), and ``group`` / ``domain`` when asked for."""
        return self._read(source, bad_records, labelled=True)

    def load_unlabelled(
        self, source: Mapping[str, Any], *, bad_records: BadRecords
    ) -> datasets.Dataset | datasets.DatasetDict:
        """Read one source of unlabelled target sentences into ``text`` (+ ``text_pair``) only:
        a ``.txt`` file without tabs or a ``format: lines`` file (one example per line), a
        delimited, JSON or Parquet file without a label column, or any source :meth:`load`
        reads, its labels not read. Keys, options and bad records are those of :meth:`load`."""
        return self._read(source, bad_records, labelled=False)

    def _read(
        self, source: Mapping[str, Any], bad_records: BadRecords, labelled: bool
    ) -> datasets.Dataset | datasets.DatasetDict:
        unknown = sorted(set(source) - set(_SOURCE_KEYS))
        if unknown:
            hint = did_you_mean(str(unknown[0]), _SOURCE_KEYS)
            hint = hint if hint.startswith("; did you mean") else ""
            raise ConfigError(
                f"text source has unknown key(s) {unknown}{hint}; allowed: "
                f"{', '.join(_SOURCE_KEYS)}"
            )
        options = _Options(self, source)
        if "dataset" in source:
            obj = source["dataset"]
            if not isinstance(obj, datasets.Dataset | datasets.DatasetDict):
                raise ConfigError(
                    "text source 'dataset' must be a datasets.Dataset or DatasetDict, got "
                    f"{type(obj).__name__}"
                )
            return self._from_datasets(obj, "<dataset>", source, options, bad_records, labelled)
        if "path" not in source:
            raise ConfigError(
                "text source needs a 'path' (a file, a folder of files, a saved dataset) or a "
                "'dataset' object"
            )
        path = Path(str(source["path"])).expanduser()
        fmt = source.get("format")
        if fmt is not None and fmt not in _FORMATS:
            raise ConfigError(
                f"text source format must be one of {', '.join(_FORMATS)}; got {fmt!r}"
            )
        if fmt == "lines" and labelled:
            raise ConfigError(
                f"{path}: format 'lines' (one example per line) holds no labels; it is read as "
                "unlabelled target data (unlabelled_target), not as labelled data"
            )
        if fmt == "disk" or (path.is_dir() and is_saved_dataset(path)):
            try:
                saved = datasets.load_from_disk(str(path))
            except (FileNotFoundError, ValueError) as exc:
                raise DataError(f"{path}: not a saved dataset ({exc})") from None
            return self._from_datasets(saved, str(path), source, options, bad_records, labelled)
        files = self._files(path, fmt)
        records: list[_Record] = []
        for file in files:
            file_format = fmt or _EXTENSIONS[file.suffix.lower()]
            read = self._read_file(file, file_format, options, bad_records, labelled)
            _check_not_all_empty(read, str(file), options)
            records.extend(read)
        if not records:
            raise DataError(f"{path}: no readable records")
        return self._build([records], str(path), source, options, labelled, bad_records)[0]

    @staticmethod
    def _files(path: Path, fmt: str | None) -> list[Path]:
        if path.is_dir():
            files = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in _EXTENSIONS
            )
            if not files:
                raise DataError(
                    f"{path}: folder holds no text data file ({', '.join(sorted(_EXTENSIONS))})"
                )
            return files
        if not path.is_file():
            raise DataError(f"{path}: no such file or folder")
        if fmt is None and path.suffix.lower() not in _EXTENSIONS:
            raise ConfigError(
                f"{path}: cannot tell the format from the extension {path.suffix!r}; set "
                f"format to one of {', '.join(_FORMATS)}"
            )
        return [path]

    def _read_file(
        self, file: Path, fmt: str, options: _Options, bad_records: BadRecords, labelled: bool
    ) -> list[_Record]:
        if fmt == "lines":
            return _read_lines(read_utf8(file), str(file))
        if fmt in ("csv", "tsv"):
            return self._read_delimited(file, fmt, options, bad_records, labelled)
        if fmt in ("json", "jsonl"):
            return self._read_json(file, fmt, options, bad_records, labelled)
        if fmt == "parquet":
            import pyarrow.parquet as pq

            try:
                table = pq.read_table(str(file))
            except Exception as exc:
                raise DataError(f"{file}: not a readable Parquet file ({exc})") from None
            return self._from_mappings(
                str(file),
                enumerate(table.to_pylist()),
                table.column_names,
                options,
                bad_records,
                labelled=labelled,
            )
        raise ConfigError(f"{file}: format {fmt!r} is not a file format")

    # -- delimited files ---------------------------------------------------------------------

    def _read_delimited(
        self, file: Path, fmt: str, options: _Options, bad_records: BadRecords, labelled: bool
    ) -> list[_Record]:
        text = read_utf8(file)
        delimiter = options.delimiter or ("," if fmt == "csv" else "\t")
        # Unlabelled sentences, one per line, in a .txt file: no tab, so each line is one text.
        lines = not labelled and file.suffix.lower() == ".txt" and options.delimiter is None
        if lines and options.header is not True and options.columns is None and "\t" not in text:
            return _read_lines(text, str(file))
        rows = read_delimited(text, delimiter, options.quoting, file)
        if not rows:
            return []
        first = rows[0][1]
        wanted = (options.text_column, options.label_column) if labelled else (options.text_column,)
        named = [c for c in wanted if isinstance(c, str)]
        header = options.header
        if header is None:
            header = _names_a_column(first, options)
        if header:
            names = [h.strip() for h in first]
            rows = rows[1:]
            if labelled:
                options = _with_label_from_header(file, names, options)
        elif options.columns is not None:
            names = options.columns
        else:
            width = len(first)
            defaults = {2: ["text", "label"], 3: ["text", "text_pair", "label"]}
            if not labelled:
                defaults[1] = ["text"]
            if width not in defaults:
                raise ConfigError(
                    f"{file}: no header row naming {named or 'the columns'} (first row: "
                    f"{first[:6]}); set header: true, or columns: [...] to name the {width} columns"
                )
            names = defaults[width]
        positions = self._positions(file, names, options, labelled)
        text_at, pair_at, label_at, group_at = positions
        records: list[_Record] = []
        for line, fields in rows:
            if len(fields) != len(names):
                bad_records.add(
                    str(file), line, f"has {len(fields)} columns, expected {len(names)} ({names})"
                )
                continue
            label: Label | None = None
            if label_at is not None:
                cell = fields[label_at]
                if options.label_separator:
                    parts = [p.strip() for p in cell.split(options.label_separator)]
                    label = [p for p in parts if p] if cell.strip() else None
                else:
                    label = _label_text(cell)
                if label is None:
                    bad_records.add(str(file), line, f"missing label in column {names[label_at]!r}")
                    continue
            records.append(
                _Record(
                    fields[text_at],
                    None if pair_at is None else fields[pair_at],
                    label,
                    None if group_at is None else fields[group_at].strip(),
                    str(file),
                    line,
                )
            )
        return records

    @staticmethod
    def _positions(
        file: Path, names: list[str], options: _Options, labelled: bool
    ) -> tuple[int, int | None, int | None, int | None]:
        """Where the text, pair, label and group columns are; unlabelled, the label and
        group are not looked for (``None``)."""

        def find(column: Column | None, what: str, required: bool) -> int | None:
            if column is None:
                return None
            if isinstance(column, int):
                if not 0 <= column < len(names):
                    raise ConfigError(
                        f"{file}: {what} {column} is out of range (0-{len(names) - 1})"
                    )
                return column
            if column in names:
                return names.index(column)
            if not required:
                return None
            raise DataError(
                f"{file}: no {what} {column!r} among the columns {names}; set {what} in the source"
            )

        text_at = find(options.text_column, "text_column", True)
        pair_column = options.text_pair_column
        pair_at = (
            find(pair_column, "text_pair_column", True)
            if pair_column is not None
            else find("text_pair", "text_pair_column", False)
        )
        if not labelled:
            assert text_at is not None
            return text_at, pair_at, None, None
        label_at = find(options.label_column, "label_column", True)
        group_at = find(options.group_column, "group_column", True)
        assert text_at is not None and label_at is not None
        return text_at, pair_at, label_at, group_at

    # -- JSON, Parquet and datasets: records as mappings -------------------------------------

    def _read_json(
        self, file: Path, fmt: str, options: _Options, bad_records: BadRecords, labelled: bool
    ) -> list[_Record]:
        text = read_utf8(file)
        items: list[tuple[int, Any]] = []
        if fmt == "json" and text.lstrip().startswith("["):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{file}: not valid JSON at row {exc.lineno}, column {exc.colno} ({exc.msg})"
                ) from None
            items = list(enumerate(data))
        else:
            for line, raw in split_lines(text):
                if not raw.strip():
                    continue
                try:
                    items.append((line, json.loads(raw)))
                except json.JSONDecodeError as exc:
                    bad_records.add(
                        str(file), line, f"not valid JSON ({exc.msg}, column {exc.colno})"
                    )
        return self._from_mappings(str(file), items, None, options, bad_records, labelled=labelled)

    def _from_mappings(
        self,
        where: str,
        items: Iterable[tuple[int, Any]],
        column_names: Sequence[str] | None,
        options: _Options,
        bad_records: BadRecords,
        label_names: Sequence[str] | None = None,
        *,
        labelled: bool = True,
    ) -> list[_Record]:
        """Records from mappings (JSON objects, Parquet rows, dataset rows); unlabelled, the
        label and group are not read."""
        checked: list[tuple[Column | None, str]] = [
            (options.text_column, "text_column"),
            (options.label_column if labelled else None, "label_column"),
            (options.text_pair_column, "text_pair_column"),
            (options.group_column if labelled else None, "group_column"),
        ]
        for column, what in checked:
            if isinstance(column, int):
                raise ConfigError(f"{where}: {what} must be a name for JSON, Parquet and datasets")
            if column_names is not None and column is not None and column not in column_names:
                raise DataError(
                    f"{where}: no {what} {column!r} among the columns {list(column_names)}; "
                    f"set {what} in the source"
                )
        text_key = str(options.text_column)
        label_key = str(options.label_column)
        pair_key = options.text_pair_column
        if pair_key is None and (column_names is None or "text_pair" in column_names):
            pair_key = "text_pair"
        pair_optional = options.text_pair_column is None
        group_key = options.group_column if labelled else None
        records: list[_Record] = []
        for row, item in items:
            if not isinstance(item, Mapping):
                bad_records.add(where, row, f"expected an object, got {type(item).__name__}")
                continue
            text = item.get(text_key)
            if not isinstance(text, str):
                reason = "missing" if text is None else f"not a string ({type(text).__name__})"
                bad_records.add(where, row, f"text field {text_key!r} is {reason}")
                continue
            pair: str | None = None
            if pair_key is not None:
                value = item.get(str(pair_key))
                if isinstance(value, str):
                    pair = value
                elif value is not None or not pair_optional:
                    bad_records.add(where, row, f"text pair field {pair_key!r} is not a string")
                    continue
            label = self._mapping_label(item.get(label_key), label_names) if labelled else None
            if labelled and label is None:
                bad_records.add(where, row, f"missing label in field {label_key!r}")
                continue
            group = None if group_key is None else _label_text(item.get(str(group_key)))
            records.append(_Record(text, pair, label, group, where, row))
        return records

    @staticmethod
    def _mapping_label(value: Any, names: Sequence[str] | None) -> Label | None:
        def one(v: Any) -> str | None:
            if names is not None and isinstance(v, int) and not isinstance(v, bool):
                return names[v] if 0 <= v < len(names) else None
            return _label_text(v)

        if isinstance(value, list | tuple):
            out = [one(v) for v in value]
            return None if any(v is None for v in out) else [v for v in out if v is not None]
        return one(value)

    def _from_datasets(
        self,
        obj: datasets.Dataset | datasets.DatasetDict,
        where: str,
        source: Mapping[str, Any],
        options: _Options,
        bad_records: BadRecords,
        labelled: bool,
    ) -> datasets.Dataset | datasets.DatasetDict:
        split = source.get("split")
        if isinstance(obj, datasets.DatasetDict) and split is not None:
            if split not in obj:
                raise ConfigError(f"{where}: no split {split!r}; it has {sorted(obj)}")
            obj = obj[split]
        parts = obj if isinstance(obj, datasets.DatasetDict) else {"": obj}
        per_split: list[list[_Record]] = []
        for name, part in parts.items():
            feature = part.features.get(str(options.label_column))
            names: list[str] | None = None
            if isinstance(feature, datasets.ClassLabel):
                names = list(feature.names)
            elif isinstance(getattr(feature, "feature", None), datasets.ClassLabel):
                names = list(feature.feature.names)
            label = f"{where}[{name}]" if name else where
            records = self._from_mappings(
                label,
                enumerate(part),
                part.column_names,
                options,
                bad_records,
                names,
                labelled=labelled,
            )
            if not records:
                raise DataError(f"{label}: no readable records")
            _check_not_all_empty(records, label, options)
            per_split.append(records)
        built = self._build(per_split, where, source, options, labelled, bad_records)
        if isinstance(obj, datasets.DatasetDict):
            return datasets.DatasetDict(dict(zip(parts.keys(), built, strict=True)))
        return built[0]

    # -- building the standard schema --------------------------------------------------------

    def _build(
        self,
        parts: list[list[_Record]],
        where: str,
        source: Mapping[str, Any],
        options: _Options,
        labelled: bool,
        bad_records: BadRecords,
    ) -> list[datasets.Dataset]:
        """One dataset per part; unlabelled, the input columns only. A label outside the
        label space (the given ``label_names``, or the kind of labels the others are) is a bad
        record naming its file and row."""
        if labelled:
            given = source.get("label_names")
            strays = _stray_labels(
                [r for part in parts for r in part],
                None if given is None else [str(n) for n in given],
            )
            for record, reason in strays:
                bad_records.add(record.where or where, record.row, reason)
            if strays:
                dropped = {id(record) for record, _ in strays}
                parts = [[r for r in part if id(r) not in dropped] for part in parts]
                if not any(parts):
                    raise DataError(f"{where}: no readable records")
        everything = [r for part in parts for r in part]
        has_pair = any(r.pair is not None for r in everything)
        if has_pair:
            self.input_columns = ("text", "text_pair")
        if not labelled:
            spec: dict[str, Any] = {"text": datasets.Value("string")}
            if has_pair:
                spec["text_pair"] = datasets.Value("string")
            return [
                datasets.Dataset.from_dict(
                    {"text": [r.text for r in part]}
                    | ({"text_pair": [r.pair for r in part]} if has_pair else {}),
                    features=datasets.Features(spec),
                )
                for part in parts
            ]
        multi = any(isinstance(r.label, list) for r in everything)
        seen: set[str] = set()
        for r in everything:
            if r.label is not None:
                seen.update(r.label if isinstance(r.label, list) else [r.label])
        given = source.get("label_names")
        label_names = [str(n) for n in given] if given else sorted(seen, key=_sort_key)
        unknown = sorted(seen - set(label_names))
        if unknown:
            raise DataError(f"{where}: labels {unknown} are not among label_names {label_names}")
        index = {n: i for i, n in enumerate(label_names)}
        has_group = options.group_column is not None
        domain = source.get("domain")
        class_label = datasets.ClassLabel(names=label_names)
        spec = {"text": datasets.Value("string")}
        if has_pair:
            spec["text_pair"] = datasets.Value("string")
        spec["label"] = datasets.List(class_label) if multi else class_label
        if has_group:
            spec["group"] = datasets.Value("string")
        if domain is not None:
            spec["domain"] = datasets.Value("string")
        features = datasets.Features(spec)
        out: list[datasets.Dataset] = []
        for part in parts:
            data: dict[str, list[Any]] = {"text": [r.text for r in part]}
            if has_pair:
                data["text_pair"] = [r.pair for r in part]
            if multi:
                data["label"] = [
                    [index[n] for n in (r.label if isinstance(r.label, list) else [str(r.label)])]
                    for r in part
                ]
            else:
                data["label"] = [index[r.label] for r in part if isinstance(r.label, str)]
            if has_group:
                data["group"] = [r.group for r in part]
            if domain is not None:
                data["domain"] = [str(domain)] * len(part)
            out.append(datasets.Dataset.from_dict(data, features=features))
        return out

    # -- prediction inputs and examples ------------------------------------------------------

    def from_inputs(self, inputs: Sequence[Any]) -> datasets.Dataset:
        """Strings, ``(text, text_pair)`` pairs, or mappings with ``text`` (and ``text_pair``)."""
        texts: list[str] = []
        pairs: list[str | None] = []
        for i, item in enumerate(inputs):
            text: Any
            pair: Any = None
            if isinstance(item, str):
                text = item
            elif isinstance(item, Mapping):
                text, pair = item.get("text"), item.get("text_pair")
            elif isinstance(item, tuple | list) and len(item) == 2:
                text, pair = item
            else:
                raise DataError(
                    f"input {i}: expected a string, a (text, text_pair) pair or a mapping for the "
                    f"text domain, got {type(item).__name__}"
                )
            if not isinstance(text, str) or not (pair is None or isinstance(pair, str)):
                raise DataError(f"input {i}: text and text_pair must be strings")
            texts.append(text)
            pairs.append(pair)
        data: dict[str, list[Any]] = {"text": texts}
        spec: dict[str, Any] = {"text": datasets.Value("string")}
        if any(p is not None for p in pairs):
            if any(p is None for p in pairs):
                raise DataError("give a text_pair for every input or for none")
            data["text_pair"] = pairs
            spec["text_pair"] = datasets.Value("string")
        return datasets.Dataset.from_dict(data, features=datasets.Features(spec))

    def example_dataset(
        self, num_examples: int, label_names: Sequence[str], seed: int = 0
    ) -> datasets.Dataset:
        """Random short sentences of everyday review words, labels cycling through the names."""
        if num_examples < 1:
            raise ConfigError(f"num_examples must be at least 1, got {num_examples}")
        rng = random.Random(seed)
        names = [str(n) for n in label_names]
        texts = [
            " ".join(rng.choice(EXAMPLE_WORDS) for _ in range(rng.randint(2, 12))) + "."
            for _ in range(num_examples)
        ]
        labels = [i % len(names) for i in range(num_examples)]
        rng.shuffle(labels)
        features = datasets.Features(
            {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)}
        )
        return datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features)
