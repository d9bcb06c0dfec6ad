"""The core's sub-commands: ``run``, ``compare``, ``evaluate``, ``predict`` and ``runs``.

Each is a thin layer over the Python API (:func:`lepton_platform.recipe.transfer`,
:func:`lepton_platform.comparison.compare`, :func:`lepton_platform.artifacts.load`). This module
imports nothing heavy: torch and friends load inside ``run`` when a command needs them.
Human-readable progress goes to stderr; results go to stdout (JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from lepton_platform.errors import ConfigError, DataError

__all__ = ["COMMANDS"]

#: Config keys a resumed run may change (they do not change the result).
RESUME_IGNORED = (
    "output",
    "compare",
    "train.progress",
    "train.log_every_steps",
    "train.num_workers",
    "train.keep_checkpoints",
    "train.checkpoint_every_steps",
    "train.trackers",
    "search",
)


# ----------------------------------------------------------------------------- helpers


def _script_flags(parser: argparse.ArgumentParser) -> None:
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
        self.log_file: Path | None = None

    def say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)
        if self.log_file is not None:
            from lepton_platform.runs import _now

            with self.log_file.open("a", encoding="utf-8") as handle:
                handle.write(f"{_now()} {message}\n")

    def result(self, text: str, data: Any) -> None:
        if self.json:
            json.dump(data, sys.stdout, indent=2, default=str)
            sys.stdout.write("\n")
        else:
            print(text)
        sys.stdout.flush()


def _quiet_libraries(quiet: bool) -> None:
    """Progress bars on for long steps, off with ``--quiet`` (tqdm and datasets)."""
    if quiet:
        os.environ["TQDM_DISABLE"] = "1"
        os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
        with contextlib.suppress(Exception):
            import datasets

            datasets.disable_progress_bars()


@contextlib.contextmanager
def _logging_to(path: Path) -> Iterator[None]:
    """Send Lepton's log records and Python warnings to the run's ``run.log``."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger("lepton_platform"), logging.getLogger("py.warnings")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
        handler.close()


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _headline_text(metrics: Mapping[str, Any]) -> str:
    test = metrics.get("test") or {}
    ci = test.get("ci") or {}
    if ci:
        key = str(ci["metric"]).replace("-", "_")
        return (
            f"test {key} {_fmt(test.get(key))} "
            f"(95% interval {_fmt(ci.get('low'))} to {_fmt(ci.get('high'))})"
        )
    scalars = [(k, v) for k, v in test.items() if isinstance(v, float)]
    return ", ".join(f"test {k} {_fmt(v)}" for k, v in scalars[:3]) or "no test metrics"


def _run_folder(config: Any) -> Path:
    return Path(config.output.root) / str(config.output.name or "run")


def _transfer_kwargs(config: Any, console: Console) -> dict[str, Any]:
    kwargs: dict[str, Any] = config.to_transfer_kwargs()
    if console.quiet and "progress" in type(config.train).model_fields:
        kwargs["train"] = {**kwargs["train"], "progress": False}
    return kwargs


def _augment(result_json: dict[str, Any], predictions: Mapping[str, Any]) -> dict[str, Any]:
    """Add the confusion matrix and per-class metrics of the test split when the task's
    metrics did not produce them (the report shows both)."""
    from lepton_platform.reports import confusion_from_predictions

    test = (result_json.get("metrics") or {}).get("test")
    pred = predictions.get("test")
    names = (result_json.get("data") or {}).get("label_names") or []
    if test is None or not pred or not names:
        return result_json
    extra = confusion_from_predictions(pred["logits"], pred["labels"], names)
    if "confusion_matrix" in extra:
        test.setdefault("confusion_matrix", extra["confusion_matrix"])
    per_class = test.setdefault("per_class", {})
    for name, stats in (extra.get("per_class") or {}).items():
        for stat, value in stats.items():
            per_class.setdefault(name, {}).setdefault(stat, value)
    return result_json


# ----------------------------------------------------------------------------- lepton run


def configure_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG", help="the run's YAML config file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.lr=0.01 (repeatable; YAML values)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume", action="store_true", help="continue a killed run from its checkpoints"
    )
    mode.add_argument(
        "--overwrite", action="store_true", help="replace an existing run folder of that name"
    )
    _script_flags(parser)


def run_run(args: argparse.Namespace) -> int:
    """``lepton run CONFIG``: one transfer into a run folder, with its report."""
    from lepton_platform.config import load_config
    from lepton_platform.runs import atomic_write_json, open_run_folder

    console = Console(args)
    config = load_config(args.config, overrides=args.overrides)
    folder = _run_folder(config)
    run = open_run_folder(
        folder,
        config.snapshot(),
        resume=args.resume,
        overwrite=args.overwrite,
        ignore=RESUME_IGNORED,
    )
    console.log_file = run.file("run.log")
    run.set_status("running", command="run")
    console.say(f"{'resuming' if run.resumed else 'run'} {run.path} ({config.strategy.name})")
    _quiet_libraries(console.quiet)
    try:
        with _logging_to(run.file("run.log")):
            from lepton_platform.recipe import summary_json, transfer

            result = transfer(
                **_transfer_kwargs(config, console), output_dir=run.path, resume=run.resumed
            )
            console.say("writing the report")
            data = _augment(summary_json(result), result.predictions)
            atomic_write_json(run.file("result.json"), data)
            run.collect_metrics()
            from lepton_platform.reports import write_report

            write_report(
                run.path,
                title=f"Lepton run {run.path.name}",
                config=config.snapshot(),
                result=data,
            )
    except KeyboardInterrupt:
        run.set_status("interrupted", error="interrupted; continue with --resume")
        raise
    except BaseException as exc:
        run.set_status("failed", error=f"{type(exc).__name__}: {exc}")
        run.collect_metrics()
        if run.previous is not None:
            console.say(f"the run it was to replace is kept at {run.previous}")
        raise
    run.set_status("done", headline=_headline_text(data["metrics"]))
    run.finish()
    console.say(f"done in {result.seconds:.1f} s: {_headline_text(data['metrics'])}")
    summary = {"run": str(run.path), "model": str(run.model_dir), **data}
    console.result(
        f"{_headline_text(data['metrics'])}\nrun folder: {run.path}\n"
        f"report: {run.file('report.html')}",
        summary,
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
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (repeatable)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing run folder of that name"
    )
    _script_flags(parser)


def _csv(text: str | None, what: str) -> list[str]:
    if text is None:
        return []
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(f"{what}: give a comma-separated list, got {text!r}")
    return items


def run_compare(args: argparse.Namespace) -> int:
    """``lepton compare CONFIG --strategies a,b``: the side-by-side table with baselines."""
    from lepton_platform.config import load_config
    from lepton_platform.runs import open_run_folder

    console = Console(args)
    config = load_config(args.config, overrides=args.overrides)
    strategies = _csv(args.strategies, "--strategies")
    try:
        seeds = [int(s) for s in _csv(args.seeds, "--seeds")]
    except ValueError:
        raise ConfigError(f"--seeds: expected integers such as 0,1,2, got {args.seeds!r}") from None
    kwargs = config.compare_kwargs(strategies=strategies, seeds=seeds)
    if console.quiet and "progress" in type(config.train).model_fields:
        kwargs["train"] = {**kwargs["train"], "progress": False}
    run = open_run_folder(_run_folder(config), config.snapshot(), overwrite=args.overwrite)
    console.log_file = run.file("run.log")
    run.set_status("running", command="compare")
    _quiet_libraries(console.quiet)
    try:
        with _logging_to(run.file("run.log")):
            from lepton_platform.comparison import compare

            comparison = compare(**kwargs, output_dir=run.path, progress=console.say)
            doc = comparison.to_json()
            from lepton_platform.reports import write_report

            write_report(
                run.path,
                title=f"Lepton comparison {run.path.name}",
                config=config.snapshot(),
                comparison=doc,
            )
    except BaseException as exc:
        run.set_status("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    best = max(
        (r for r in comparison.rows if r.kind == "strategy"),
        key=lambda r: r.mean(comparison.metric),
    )
    run.set_status(
        "done", headline=f"best {best.name}: {comparison.metric} {best.mean(comparison.metric):.4f}"
    )
    run.finish()
    for warning in comparison.warnings:
        console.say(f"warning: {warning}")
    console.result(comparison.to_markdown(), {"run": str(run.path), **doc})
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
    _script_flags(parser)


def _source(data: str, options: Sequence[str]) -> dict[str, Any]:
    from lepton_platform.config import _scalar

    source: dict[str, Any] = {"path": data}
    for item in options:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--source {item!r}: expected KEY=VALUE, e.g. label_column=y")
        source[key.strip()] = _scalar(value)
    if not Path(data).exists():
        raise DataError(f"DATA: {data!r} does not exist")
    return source


def run_evaluate(args: argparse.Namespace) -> int:
    """``lepton evaluate MODEL DATA``: metrics (with a bootstrap interval) of a saved model."""
    console = Console(args)
    source = _source(args.data, args.source_options)
    metrics = _csv(args.metrics, "--metrics") or None
    if metrics:
        from lepton_platform.config import check_names

        check_names("--metrics", "metric", metrics)
    if args.bootstrap < 0:
        raise ConfigError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    _quiet_libraries(console.quiet)
    import datasets
    import numpy as np

    from lepton_platform.artifacts import load
    from lepton_platform.data.combine import relabel
    from lepton_platform.data.records import BadRecords
    from lepton_platform.engine.evaluate import evaluate_predictions

    console.say(f"loading {args.model}")
    predictor = load(args.model)
    bad = BadRecords(args.on_bad_record)
    domain_name = predictor.manifest["domain"]["name"]
    console.say(f"reading {args.data} as {domain_name!r} data")
    loaded = predictor.domain.load(source, bad_records=bad)
    if isinstance(loaded, datasets.DatasetDict):
        wanted = args.split or ("test" if "test" in loaded else None)
        if wanted is None or wanted not in loaded:
            raise DataError(
                f"{args.data} holds the splits {sorted(loaded)}; choose one with --split"
            )
        loaded = loaded[wanted]
    if "label" not in loaded.column_names:
        raise DataError(f"{args.data}: no labels to evaluate against (no 'label' column)")
    ds = relabel(loaded, predictor.label_names, source=args.data, bad_records=bad)
    if len(ds) == 0:
        raise DataError(f"{args.data}: no rows to evaluate")
    console.say(f"predicting {len(ds)} rows")
    logits = predictor.logits(ds)
    labels = np.asarray(ds["label"])
    report = evaluate_predictions(
        predictor.task, logits, labels, metrics, n_resamples=args.bootstrap
    )
    doc = {"model": str(args.model), "data": args.data, **report.to_json()}
    doc["bad_records"] = {"skipped": len(bad), "records": bad.to_json()}
    if args.output:
        from lepton_platform.runs import atomic_write_json

        atomic_write_json(args.output, doc)
    lines = [f"{len(ds)} rows of {args.data}" + (f" ({len(bad)} bad skipped)" if len(bad) else "")]
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
        help="inputs as the model's domain reads them: file paths (images, audio), texts, or "
        "JSON lists of numbers ('[0.5, 1.2]') for vectors",
    )
    parser.add_argument("--output", metavar="PREDS.csv", help="write the predictions as CSV")
    parser.add_argument("--batch-size", type=int, default=32, help="inputs per batch")
    _script_flags(parser)


def _parse_input(text: str) -> Any:
    stripped = text.strip()
    if stripped.startswith("[") and stripped.endswith("]") and not Path(text).exists():
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return text
    return text


def run_predict(args: argparse.Namespace) -> int:
    """``lepton predict MODEL INPUT...``: the label and scores of each input."""
    console = Console(args)
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    _quiet_libraries(console.quiet)
    from lepton_platform.artifacts import load

    predictor = load(args.model)
    domain = predictor.manifest["domain"]["name"]
    inputs = [_parse_input(t) for t in args.inputs]
    try:
        predictions = predictor.predict(inputs, batch_size=args.batch_size)
    except DataError as exc:
        raise DataError(f"the model reads {domain!r} inputs and cannot read these: {exc}") from None
    names = predictor.label_names
    rows = [
        {"input": raw, "label": p.label, "labels": list(p.labels), "scores": p.scores}
        for raw, p in zip(args.inputs, predictions, strict=True)
    ]
    if args.output:
        import csv
        import io

        from lepton_platform.runs import atomic_write_text

        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["input", "label", *[f"score_{n}" for n in names]])
        for row in rows:
            writer.writerow([row["input"], row["label"], *[row["scores"].get(n) for n in names]])
        atomic_write_text(args.output, buffer.getvalue())
        console.say(f"wrote {len(rows)} prediction(s) to {args.output}")
    text = "\n".join(
        f"{r['input']}\t{r['label']}\t{max(r['scores'].values(), default=float('nan')):.4f}"
        for r in rows
    )
    console.result(text, rows)
    return 0


# ----------------------------------------------------------------------------- lepton runs


def configure_runs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "root", metavar="ROOT", nargs="?", default="runs", help="folder of runs (default: runs)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run_runs(args: argparse.Namespace) -> int:
    """``lepton runs [ROOT]``: past runs with their headline metrics, newest first."""
    from lepton_platform.runs import list_runs

    runs = list_runs(args.root)
    if args.json:
        json.dump([r.to_json() for r in runs], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not runs:
        print(f"no runs under {args.root}")
        return 0
    table = [("NAME", "STATE", "STARTED", "KIND", "STRATEGY", "METRIC", "VALUE")]
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
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


#: (name, description, configure, run) of each command; ``_builtin`` registers them.
COMMANDS = (
    ("run", "Run a transfer from a YAML config into a run folder", configure_run, run_run),
    (
        "compare",
        "Compare transfer strategies side by side, with baselines",
        configure_compare,
        run_compare,
    ),
    ("evaluate", "Evaluate a saved model on labelled data", configure_evaluate, run_evaluate),
    ("predict", "Predict with a saved model on raw inputs", configure_predict, run_predict),
    ("runs", "List past runs with their headline metrics", configure_runs, run_runs),
)
