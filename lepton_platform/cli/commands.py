"""The core's sub-commands: ``run``, ``compare``, ``evaluate``, ``predict``, ``export`` and
``runs``.

Each parses its arguments, calls the Python API (:func:`lepton_platform.run`,
:func:`lepton_platform.run_comparison`, :func:`lepton_platform.evaluate`,
:func:`lepton_platform.predict`, :func:`lepton_platform.export`,
:func:`lepton_platform.list_runs`) and prints. This module
imports nothing heavy: torch and friends load inside ``run`` when a command needs them.
Human-readable progress goes to stderr; results go to stdout (JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lepton_platform.cli.console import (
    Console,
    csv_list,
    key_values,
    quiet_libraries,
    script_flags,
)
from lepton_platform.errors import ConfigError, DataError

__all__ = ["COMMANDS"]


def _overrides_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.lr=0.01 (repeatable; YAML values)",
    )


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


# ----------------------------------------------------------------------------- lepton run


def configure_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG", help="the run's YAML config file")
    _overrides_flag(parser)
    parser.add_argument(
        "--trackers",
        metavar="NAME[,NAME]",
        help="experiment trackers to log to (tensorboard, mlflow): train.trackers; none unless "
        "asked for",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume", action="store_true", help="continue a killed run from its checkpoints"
    )
    mode.add_argument(
        "--overwrite", action="store_true", help="replace an existing run folder of that name"
    )
    script_flags(parser)


def run_run(args: argparse.Namespace) -> int:
    """``lepton run CONFIG``: one transfer into a run folder, with its report."""
    from lepton_platform.api.run import headline_text, read_config, run

    console = Console(args)
    overrides = list(args.overrides)
    if args.trackers:
        overrides.append(f"train.trackers=[{','.join(csv_list(args.trackers, '--trackers'))}]")
    config = read_config(args.config, overrides)  # a bad config creates nothing
    quiet_libraries(console.quiet)
    outcome = run(
        config,
        resume=args.resume,
        overwrite=args.overwrite,
        quiet=console.quiet,
        progress=console.say,
    )
    from lepton_platform.engine.distributed import is_main_process

    if not is_main_process():
        return 0
    headline = headline_text(outcome.data["metrics"])
    console.result(
        f"{headline}\nrun folder: {outcome.folder}\nreport: {outcome.folder / 'report.html'}",
        {"run": str(outcome.folder), "model": str(outcome.model_dir), **outcome.data},
    )
    return 0


# ----------------------------------------------------------------------------- lepton compare


def configure_compare(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG", help="the YAML config of the runs")
    parser.add_argument(
        "--strategies",
        metavar="A,B,C",
        help="strategies to compare, comma-separated (default: the config's compare section)",
    )
    parser.add_argument("--seeds", metavar="0,1,2", help="seeds, comma-separated")
    _overrides_flag(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume",
        action="store_true",
        help="continue a killed comparison (finished rows are kept as they are)",
    )
    mode.add_argument(
        "--overwrite", action="store_true", help="replace an existing comparison folder"
    )
    script_flags(parser)


def run_compare(args: argparse.Namespace) -> int:
    """``lepton compare CONFIG --strategies a,b``: the side-by-side table with baselines, in
    the folder ``<name>-compare``."""
    from lepton_platform.api.run import read_config, run_comparison

    console = Console(args)
    config = read_config(args.config, args.overrides)
    strategies = csv_list(args.strategies, "--strategies")
    if strategies:
        from lepton_platform.api.config import check_names

        check_names("compare.strategies", "strategy", strategies)
    try:
        seeds = [int(s) for s in csv_list(args.seeds, "--seeds")]
    except ValueError:
        raise ConfigError(f"--seeds: expected integers such as 0,1,2, got {args.seeds!r}") from None
    quiet_libraries(console.quiet)
    outcome = run_comparison(
        config,
        strategies=strategies or None,
        seeds=seeds or None,
        resume=args.resume,
        overwrite=args.overwrite,
        quiet=console.quiet,
        progress=console.say,
    )
    from lepton_platform.engine.distributed import is_main_process

    if not is_main_process():
        return 0
    comparison = outcome.comparison
    console.result(comparison.to_markdown(), {"run": str(outcome.folder), **comparison.to_json()})
    return 0


# ----------------------------------------------------------------------------- lepton evaluate


def configure_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a saved model folder (a run's model/)")
    parser.add_argument(
        "data",
        metavar="DATA",
        help="a file or folder the model's domain reads (as a config's data source 'path')",
    )
    parser.add_argument(
        "--source",
        dest="source_options",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a source option for the domain's reader, e.g. --source label_column=y (YAML value)",
    )
    parser.add_argument(
        "--split", default=None, help="the split to use when DATA holds several (default: test)"
    )
    parser.add_argument(
        "--metrics", metavar="A,B", help="metrics, comma-separated (default: the task's)"
    )
    parser.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples of the headline (0: off)"
    )
    parser.add_argument(
        "--on-bad-record",
        choices=("error", "skip"),
        default="error",
        help="stop on a bad record (default) or skip and count it",
    )
    parser.add_argument("--output", metavar="FILE.json", help="also write the result here")
    script_flags(parser)


def source_of(data: str, options: list[str]) -> dict[str, Any]:
    """A data source mapping from a path and ``--source KEY=VALUE`` flags."""
    if not Path(data).exists():
        raise DataError(f"DATA: {data!r} does not exist")
    return {"path": data, **key_values(options, "--source", "label_column=y")}


def run_evaluate(args: argparse.Namespace) -> int:
    """``lepton evaluate MODEL DATA``: metrics (with a bootstrap interval) of a saved model."""
    from lepton_platform.api.evaluate import evaluate

    console = Console(args)
    source = source_of(args.data, args.source_options)
    metrics = csv_list(args.metrics, "--metrics") or None
    if metrics:
        from lepton_platform.api.config import check_names

        check_names("--metrics", "metric", metrics)
    if args.bootstrap < 0:
        raise ConfigError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    quiet_libraries(console.quiet)
    console.say(f"evaluating {args.model} on {args.data}")
    evaluation = evaluate(
        args.model,
        source,
        metrics=metrics,
        split=args.split,
        bootstrap=args.bootstrap,
        on_bad_record=args.on_bad_record,
    )
    report = evaluation.report
    doc = {"model": str(args.model), "data": args.data, **evaluation.to_json()}
    if args.output:
        from lepton_platform._io import atomic_write_json

        atomic_write_json(args.output, doc)
    skipped = len(evaluation.bad_records)
    lines = [
        f"{evaluation.rows} rows of {args.data}" + (f" ({skipped} bad skipped)" if skipped else "")
    ]
    for key, value in report.metrics.items():
        if isinstance(value, int | float):
            lines.append(f"{key:24} {_fmt(float(value))}")
    if report.n_resamples and report.headline:
        lines.append(
            f"{report.headline}: {int(100 * (report.confidence or 0.95))}% interval "
            f"{_fmt(report.ci_low)} to {_fmt(report.ci_high)}"
        )
    console.result("\n".join(lines), doc)
    return 0


# ----------------------------------------------------------------------------- lepton predict


def configure_predict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a saved model folder (a run's model/)")
    parser.add_argument(
        "inputs",
        metavar="INPUT",
        nargs="+",
        help="files, folders (searched for the domain's file types), a .csv/.tsv/.jsonl table "
        "(with --column), - for one input per line of standard input, JSON lists of numbers "
        "('[0.5, 1.2]') for vectors, or strings with --text",
    )
    parser.add_argument(
        "--text",
        action="store_true",
        help="the INPUTs (and the lines of -) are strings to predict, not paths",
    )
    parser.add_argument(
        "--column",
        metavar="NAME[,NAME]",
        help="the table column(s) holding the inputs (several: a list per row, e.g. a vector "
        "or a text pair)",
    )
    parser.add_argument(
        "--output",
        metavar="PREDS.csv|PREDS.jsonl",
        help="also write the predictions as CSV (a score column per label) or JSON lines",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="inputs per batch")
    parser.add_argument(
        "--on-bad-input",
        choices=("skip", "error"),
        default="skip",
        help="report a bad input and predict the rest (default), or stop at the first",
    )
    script_flags(parser)


def run_predict(args: argparse.Namespace) -> int:
    """``lepton predict MODEL INPUT...``: the label and scores of each input, in input order;
    bad inputs are named on stderr."""
    from lepton_platform.cli.console import prediction_table, write_predictions

    console = Console(args)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    output = Path(args.output) if args.output else None
    if output is not None and output.suffix.lower() not in (".csv", ".jsonl"):
        raise ConfigError(f"--output {args.output}: give a .csv or .jsonl file")
    columns = csv_list(args.column, "--column")
    quiet_libraries(console.quiet)
    from lepton_platform.api.predictor import load, predict, process_device
    from lepton_platform.engine.distributed import is_main_process

    predictor = load(args.model, device=process_device())
    domain = predictor.manifest["domain"]["name"]
    try:
        result = predict(
            predictor,
            args.inputs,
            column=columns or None,
            strings=args.text,
            batch_size=args.batch_size,
            on_bad_input=args.on_bad_input,
            progress=not console.quiet,
        )
    except DataError as exc:
        raise DataError(f"the model reads {domain!r} inputs and cannot read these: {exc}") from None
    if not is_main_process():
        return 0
    for bad in result.bad:
        print(f"lepton: bad input {bad.name}: {bad.reason}", file=sys.stderr)
    if result.bad:
        console.say(
            f"predicted {len(result.predictions)} of {result.total} inputs; "
            f"{len(result.bad)} bad input(s) skipped"
        )
    if output is not None:
        write_predictions(
            output, result, predictor.label_names, multi_label=predictor.task.multi_label
        )
        console.say(f"wrote {len(result.predictions)} prediction(s) to {output}")
    console.result(prediction_table(result), result.records())
    return 0


# ----------------------------------------------------------------------------- lepton export


def configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a saved model folder (a run's model/)")
    parser.add_argument(
        "--format",
        required=True,
        choices=("onnx", "torchscript", "hf"),
        help="onnx (onnxruntime), torchscript (torch.jit), or hf: the backbone library's own "
        "(transformers for text and speech, a torchvision state dict for images)",
    )
    parser.add_argument(
        "--output", metavar="DIR", help="the export folder (default: export-FORMAT beside MODEL)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an earlier export in that folder"
    )
    parser.add_argument(
        "--atol",
        type=float,
        default=1e-4,
        help="largest difference from the Lepton model's logits the check allows (default 1e-4)",
    )
    script_flags(parser)


def run_export(args: argparse.Namespace) -> int:
    """``lepton export MODEL --format F``: the model in another format, checked against the
    Lepton model, with its model card (README.md)."""
    from lepton_platform.api.export import export

    console = Console(args)
    quiet_libraries(console.quiet)
    console.say(f"exporting {args.model} as {args.format}")
    result = export(
        args.model, args.output, format=args.format, overwrite=args.overwrite, atol=args.atol
    )
    from lepton_platform.engine.distributed import is_main_process

    if not is_main_process():
        return 0
    lines = [
        f"exported {args.model} as {result.format} to {result.folder}",
        f"checked with {result.checked_with}: logits within {result.max_abs_diff:.2g} of the "
        "Lepton model's",
        *(f"  {name}" for name in result.files),
    ]
    console.result("\n".join(lines), result.to_json())
    return 0


# ----------------------------------------------------------------------------- lepton runs


def configure_runs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "root", metavar="ROOT", nargs="?", default="runs", help="folder of runs (default: runs)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run_runs(args: argparse.Namespace) -> int:
    """``lepton runs [ROOT]``: past runs with their headline metrics and disk use, newest
    first."""
    from lepton_platform.api.runs import list_runs

    runs = list_runs(args.root)
    if args.json:
        json.dump([r.to_json() for r in runs], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not runs:
        print(f"no runs under {args.root}")
        return 0
    table = [("NAME", "STATE", "STARTED", "KIND", "STRATEGY", "METRIC", "VALUE", "DISK")]
    for r in runs:
        table.append(
            (
                r.name,
                r.state,
                r.started or "-",
                r.kind,
                r.strategy or "-",
                r.headline or "-",
                "-" if r.value is None else f"{r.value:.4f}",
                "-" if r.disk_mb is None else f"{r.disk_mb:.1f} MB",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


#: (name, description, configure, run) of each command; the CLI plugin registers them.
COMMANDS = (
    ("run", "Run a transfer from a YAML config into a run folder", configure_run, run_run),
    (
        "compare",
        "Compare transfer strategies side by side, with baselines",
        configure_compare,
        run_compare,
    ),
    ("evaluate", "Evaluate a saved model on labelled data", configure_evaluate, run_evaluate),
    (
        "predict",
        "Predict with a saved model on files, folders, tables or stdin",
        configure_predict,
        run_predict,
    ),
    (
        "export",
        "Export a saved model to ONNX, TorchScript or the Hugging Face format",
        configure_export,
        run_export,
    ),
    ("runs", "List past runs with their headline metrics", configure_runs, run_runs),
)
