"""What every command shares: messages to stderr (silenced by ``--quiet``), results to stdout
(JSON with ``--json``), and the small parsers of comma lists and ``KEY=VALUE`` options."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from lepton_platform.errors import ConfigError

__all__ = ["Console", "csv_list", "key_values", "quiet_libraries", "script_flags", "yaml_scalar"]


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
