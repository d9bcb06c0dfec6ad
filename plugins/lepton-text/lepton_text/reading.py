"""Robust readers for text files: strict UTF-8, CRLF, byte-order marks, quoting on or off.

Records end at ``\\n`` or ``\\r\\n`` only. ``str.splitlines`` would also split at U+0085,
U+2028, U+2029, form feeds and other separators that occur inside real sentences, so it is never
used here. Row numbers are physical line numbers, from 1 (a header is line 1).
"""

from __future__ import annotations

import codecs
import csv
import io
from collections import Counter
from pathlib import Path
from typing import Literal

from lepton_platform.errors import ConfigError, DataError

__all__ = ["Quoting", "read_delimited", "read_utf8", "split_lines"]

Quoting = Literal["auto", "none", "csv"]
#: A parsed row: its first physical line number and its fields.
Row = tuple[int, list[str]]


def read_utf8(path: Path) -> str:
    """The file's text, decoded strictly as UTF-8 (a leading byte-order mark is dropped).

    A file that is not UTF-8 raises :class:`DataError` naming the row and byte offset of the
    first bad byte.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and not data.startswith(
        codecs.BOM_UTF8
    ):
        raise DataError(
            f"{path}: the file is UTF-16 (byte-order mark {data[:2].hex()}); Lepton reads "
            "UTF-8 text: re-save it as UTF-8"
        )
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = skip + exc.start
        row = data.count(b"\n", 0, offset) + 1
        bad = data[offset : offset + 4].hex(" ")
        raise DataError(
            f"{path}: not valid UTF-8 at row {row}, byte offset {offset} (bytes {bad}: "
            f"{exc.reason}); re-save the file as UTF-8, e.g. "
            f"`iconv -f latin1 -t utf-8 {path.name} > fixed.txt`"
        ) from None


def split_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, line)`` for each line; ends are ``\\n`` or ``\\r\\n`` only."""
    parts = text.split("\n")
    if parts and parts[-1] == "":
        parts.pop()  # the newline after the last line
    return [(i, part[:-1] if part.endswith("\r") else part) for i, part in enumerate(parts, 1)]


def _plain(text: str, delimiter: str) -> list[Row]:
    return [(n, line.split(delimiter)) for n, line in split_lines(text) if line != ""]


def _quoted(text: str, delimiter: str, path: Path) -> list[Row]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[Row] = []
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DataError(
                f"{path}: malformed quoting at row {reader.line_num} ({exc}); fix the quotes or "
                "read the file with quoting: none"
            ) from None
        if fields:
            rows.append((start, fields))
        start = reader.line_num + 1
    return rows


def _score(rows: list[Row]) -> int:
    """How many rows have the most common number of fields."""
    if not rows:
        return 0
    return Counter(len(fields) for _, fields in rows).most_common(1)[0][1]


def read_delimited(text: str, delimiter: str, quoting: Quoting, path: Path) -> list[Row]:
    """Rows of a delimited file (CSV, TSV), skipping blank lines.

    ``quoting="csv"`` reads fields as the ``csv`` module does (double quotes around fields that
    hold delimiters, line breaks or quotes); ``"none"`` splits each line at every delimiter and
    keeps quote characters as text; ``"auto"`` chooses quoting only when it reads the file
    consistently, which a tab-separated file of sentences with stray quotes does not.
    """
    if len(delimiter) != 1:
        raise ConfigError(f"delimiter must be one character, got {delimiter!r}")
    if quoting == "none":
        return _plain(text, delimiter)
    if quoting == "csv":
        return _quoted(text, delimiter, path)
    if quoting != "auto":
        raise ConfigError(f"quoting must be 'auto', 'none' or 'csv', got {quoting!r}")
    plain = _plain(text, delimiter)
    if '"' not in text:
        return plain
    try:
        quoted = _quoted(text, delimiter, path)
    except DataError:
        return plain
    if quoted == plain:
        return plain
    return quoted if _score(quoted) >= _score(plain) and len(quoted) >= _score(plain) else plain
