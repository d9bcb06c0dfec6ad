"""What every command shares: messages to stderr (silenced by ``--quiet``), results to stdout
(JSON with ``--json``), and the small parsers of comma lists and ``KEY=VALUE`` options."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lepton_platform.errors import ConfigError

if TYPE_CHECKING:
    from lepton_platform.api.predictor import BatchPrediction

__all__ = [
    "Console",
    "csv_cell",
    "csv_list",
    "key_values",
    "prediction_table",
    "quiet_libraries",
    "script_flags",
    "write_predictions",
    "yaml_scalar",
]


def script_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars or messages (errors only)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the result as JSON on stdout (for scripts)"
    )


class Console:
    """Messages to stderr (silenced by ``--quiet``), results to stdout."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.quiet = bool(getattr(args, "quiet", False))
        self.json = bool(getattr(args, "json", False))

    def say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def result(self, text: str, data: Any) -> None:
        if self.json:
            json.dump(data, sys.stdout, indent=2, default=str)
            sys.stdout.write("\n")
        else:
            print(text)
        sys.stdout.flush()


def quiet_libraries(quiet: bool) -> None:
    """Progress bars on for long steps, off with ``--quiet`` (tqdm and datasets)."""
    if quiet:
        os.environ["TQDM_DISABLE"] = "1"
        os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
        with contextlib.suppress(Exception):
            import datasets

            datasets.disable_progress_bars()


def yaml_scalar(text: str) -> Any:
    """A command-line value read as YAML (``null``, ``true``, ``0.1``, ``[1, 2]``)."""
    from lepton_platform.api.config import yaml_value

    return yaml_value(text)


def csv_list(text: str | None, what: str) -> list[str]:
    """``a,b,c`` as a list (empty when ``text`` is ``None``)."""
    if text is None:
        return []
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"{what}: give a comma-separated list, got {text!r}")
    return items


def key_values(items: Sequence[str], flag: str, example: str) -> dict[str, Any]:
    """Repeated ``KEY=VALUE`` flags as a mapping (values read as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE, e.g. {example}")
        out[key.strip()] = yaml_scalar(value)
    return out


# ----------------------------------------------------------------------------- predictions

#: A cell starting with one of these is a formula to a spreadsheet (``=HYPERLINK(...)``).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell that a spreadsheet shows as text: a string that starts like a
    formula (``=``, ``+``, ``-``, ``@``, tab, carriage return) gets a leading ``'``; numbers
    stay numbers."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def write_predictions(
    path: Path, result: BatchPrediction, label_names: Sequence[str], *, multi_label: bool = False
) -> Path:
    """The predictions as CSV (``input``, ``label``, for multi-label models ``labels``, then a
    ``score_<label>`` column per label; formula-like text made inert) or as JSON lines
    (``.jsonl``), written atomically. Bad inputs are left out (they are reported)."""
    from lepton_platform._io import atomic_write_text

    rows = result.rows()
    if path.suffix.lower() == ".jsonl":
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        return atomic_write_text(path, text)
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    labels = ["labels"] if multi_label else []
    header = ["input", "label", *labels, *[f"score_{n}" for n in label_names]]
    writer.writerow([csv_cell(h) for h in header])
    for row in rows:
        chosen = [csv_cell(";".join(row["labels"]))] if multi_label else []
        writer.writerow(
            [
                csv_cell(row["input"]),
                csv_cell(row["label"]),
                *chosen,
                *[row["scores"].get(n) for n in label_names],
            ]
        )
    return atomic_write_text(path, buffer.getvalue())


def prediction_table(result: BatchPrediction) -> str:
    """One line per predicted input: the input, its label and that label's score."""
    lines = []
    for row in result.rows():
        score = row["scores"].get(row["label"], float("nan"))
        lines.append(f"{row['input']}\t{row['label']}\t{score:.4f}")
    return "\n".join(lines)
