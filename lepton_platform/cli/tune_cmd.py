"""``lepton tune CONFIG --trials N``: the hyper-parameter search over the Python API
:func:`lepton_platform.tune`. Nothing heavy is imported until ``run``."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG", help="the YAML config with a search section")
    parser.add_argument(
        "--trials", type=int, default=None, help="finished trials to reach (default: search.trials)"
    )
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="a SQLAlchemy 2 database URL, e.g. postgresql+psycopg2://user:pw@host/db for "
        "workers on many machines (default: sqlite:///<run folder>/study.db)",
    )
    parser.add_argument(
        "--worker",
        metavar="NAME",
        help="this worker's name, from which its sampler seed is derived with search.seed "
        "(default: host and process id, so that workers never share a seed)",
    )
    parser.add_argument("--study", metavar="NAME", help="study name (default: the run name)")
    parser.add_argument(
        "--resume", action="store_true", help="continue the study (also: join it as a worker)"
    )
    parser.add_argument(
        "--no-final",
        action="store_true",
        help="do not train the best config at the end (extra workers)",
    )
    parser.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set search.pruner=none (repeatable)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="errors only")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    """Run (or continue) the search, then print the best trial and the final test result."""
    from lepton_platform.api.config import load_config
    from lepton_platform.cli.console import Console, quiet_libraries
    from lepton_platform.errors import ConfigError

    console = Console(args)
    if args.trials is not None and args.trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {args.trials}")
    config = load_config(args.config, overrides=args.overrides)
    if console.quiet:
        config.train.progress = False  # type: ignore[attr-defined]
    quiet_libraries(console.quiet)
    from lepton_platform.api.tuning.search import tune

    result = tune(
        config,
        n_trials=args.trials,
        storage=args.storage,
        study_name=args.study,
        resume=args.resume,
        final=False if args.no_final else None,
        timeout=args.timeout,
        progress=console.say,
        worker=args.worker,
    )
    lines = [
        f"study {result.study_name}: "
        + ", ".join(f"{n} {s.lower()}" for s, n in sorted(result.counts.items())),
    ]
    if result.best_number is not None:
        lines.append(
            f"best trial {result.best_number}: validation {result.metric} {result.best_value:.4f}"
        )
        lines.extend(f"  {k} = {v}" for k, v in result.best_params.items())
        lines.append(f"best config: {result.best_config}")
    final: Any = result.final
    if final:
        test = final["metrics"].get("test") or {}
        shown = ", ".join(f"{k} {v:.4f}" for k, v in test.items() if isinstance(v, float))
        lines.append(f"final model (test, evaluated once): {shown}")
    lines.append(f"report: {result.report}")
    console.result("\n".join(lines), result.to_json())
    return 0
