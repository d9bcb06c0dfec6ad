"""A config run into a run folder: what ``lepton run`` and ``lepton compare`` do, as Python.

    >>> import lepton_platform as lp
    >>> outcome = lp.run("digits.yaml", overrides=["train.lr=0.01"])   # doctest: +SKIP
    >>> outcome.folder, outcome.result.metrics["test"]                 # doctest: +SKIP

The config is read and checked first (nothing is created for a bad one), then the run folder is
opened and locked (:class:`~lepton_platform.api.runs.RunFolder`), the job is built, trained,
evaluated and saved, and the report is written. Ctrl-C and SIGTERM (``kill``, ``docker stop``,
Slurm pre-emption) end a run as ``interrupted``, resumable from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from lepton_platform.api.config import RunConfig, load_config, parse_config
from lepton_platform.api.runs import RunFolder
from lepton_platform.errors import ConfigError

if TYPE_CHECKING:
    from lepton_platform.api.compare import Comparison
    from lepton_platform.api.transfer import TransferResult

__all__ = [
    "ComparisonOutcome",
    "RunOutcome",
    "headline_text",
    "read_config",
    "run",
    "run_comparison",
]

Say = Callable[[str], None]


@dataclass
class RunOutcome:
    """A finished run: its folder and result (``result.json`` holds the JSON part)."""

    folder: Path
    result: TransferResult
    data: dict[str, Any]

    @property
    def model_dir(self) -> Path:
        return self.folder / "model"


@dataclass
class ComparisonOutcome:
    """A finished comparison: its folder and table."""

    folder: Path
    comparison: Comparison


def read_config(
    config: RunConfig | str | os.PathLike[str] | Mapping[str, Any], overrides: Sequence[str] = ()
) -> RunConfig:
    """A checked :class:`RunConfig` from one, a YAML path (with ``--set`` overrides) or a
    mapping of config sections."""
    if isinstance(config, RunConfig):
        if overrides:
            raise ConfigError("overrides apply to a config file or mapping, not a RunConfig")
        return config
    if isinstance(config, str | os.PathLike):
        return load_config(Path(config), overrides)
    if isinstance(config, Mapping):
        from lepton_platform.api.config import apply_overrides

        return parse_config(apply_overrides(dict(config), overrides), where="config")
    raise ConfigError(f"expected a config file, a mapping or a RunConfig, got {type(config)}")


def headline_text(metrics: Mapping[str, Any]) -> str:
    """``test accuracy 0.9123 (95% interval 0.88 to 0.94)`` for a status line."""
    test = metrics.get("test") or {}
    ci = test.get("ci") or {}
    if ci:
        key = ci.get("key") or str(ci.get("metric", "")).replace("-", "_")
        return (
            f"test {key} {_fmt(test.get(key))} "
            f"(95% interval {_fmt(ci.get('low'))} to {_fmt(ci.get('high'))})"
        )
    scalars = [(k, v) for k, v in test.items() if isinstance(v, float)]
    return ", ".join(f"test {k} {_fmt(v)}" for k, v in scalars[:3]) or "no test metrics"


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM ends it like Ctrl-C (a ``KeyboardInterrupt``)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _quiet_train(kwargs: dict[str, Any], quiet: bool) -> dict[str, Any]:
    if quiet:
        kwargs["train"] = {**kwargs.get("train", {}), "progress": False}
    return kwargs


def run(
    config: RunConfig | str | os.PathLike[str] | Mapping[str, Any],
    *,
    overrides: Sequence[str] = (),
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    progress: Say | None = None,
) -> RunOutcome:
    """Run one transfer from a config into its run folder (``output.root/output.name``), with
    its report; ``resume`` continues a killed run, ``overwrite`` replaces a finished one."""
    from lepton_platform.api.job import build_job
    from lepton_platform.api.transfer import result_json, run_job

    cfg = read_config(config, overrides)
    folder = Path(cfg.output.root) / str(cfg.output.name or "run")
    run_folder = RunFolder.open(
        folder, cfg.snapshot(), command="run", resume=resume, overwrite=overwrite
    )
    say = _sayer(run_folder, progress)
    say(f"{'resuming' if run_folder.resumed else 'run'} {run_folder.path} ({cfg.strategy.name})")
    try:
        with terminate_as_interrupt(), run_folder.logging():
            kwargs = _quiet_train(cfg.to_transfer_kwargs(), quiet)
            bootstrap = kwargs.pop("bootstrap")
            job = build_job(**kwargs, output_dir=run_folder.path, resume=run_folder.resumed)
            result = run_job(
                job,
                output_dir=run_folder.path,
                bootstrap=bootstrap,
                on_training=lambda: run_folder.mark("running"),
            )
            say("writing the report")
            data = result_json(result)
            run_folder.collect_metrics()
            run_folder.report(
                f"Lepton run {run_folder.path.name}", config=cfg.snapshot(), result=data
            )
    except BaseException as exc:
        run_folder.collect_metrics()
        run_folder.fail(exc)
        raise
    headline = headline_text(data["metrics"])
    run_folder.finish(headline=headline)
    say(f"done in {result.seconds:.1f} s: {headline}")
    return RunOutcome(folder=run_folder.path, result=result, data=data)


def comparison_folder(cfg: RunConfig) -> Path:
    """Where ``lepton compare`` writes: ``<output.root>/<output.name>`` when the config names
    it, else ``<output.root>/<config file name>-compare`` (beside the run of that config)."""
    name = cfg.output.name or "run"
    return Path(cfg.output.root) / (f"{name}-compare" if cfg.output.named_after_file else name)


def run_comparison(
    config: RunConfig | str | os.PathLike[str] | Mapping[str, Any],
    *,
    overrides: Sequence[str] = (),
    strategies: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = False,
    progress: Say | None = None,
) -> ComparisonOutcome:
    """Compare strategies (the config's ``compare`` section, or ``strategies`` and ``seeds``)
    with baselines into its folder (:func:`comparison_folder`), with its report; ``resume``
    continues a killed comparison, keeping every finished row."""
    from lepton_platform.api.compare import compare

    cfg = read_config(config, overrides)
    kwargs = _quiet_train(cfg.compare_kwargs(strategies=strategies, seeds=seeds), quiet)
    run_folder = RunFolder.open(
        comparison_folder(cfg), cfg.snapshot(), command="compare", resume=resume,
        overwrite=overwrite,
    )  # fmt: skip
    say = _sayer(run_folder, progress)
    say(f"{'resuming' if run_folder.resumed else 'comparison'} {run_folder.path}")
    try:
        with terminate_as_interrupt(), run_folder.logging():
            run_folder.mark("running")
            comparison = compare(
                **kwargs, output_dir=run_folder.path, resume=run_folder.resumed, progress=say
            )
            run_folder.report(
                f"Lepton comparison {run_folder.path.name}",
                config=cfg.snapshot(),
                comparison=comparison.to_json(),
            )
    except BaseException as exc:
        run_folder.fail(exc)
        raise
    best = comparison.best()
    run_folder.finish(
        headline=(
            f"best {best.name}: {comparison.key} {best.mean(comparison.key):.4f}"
            if best is not None
            else "no strategy row"
        )
    )
    for warning in comparison.warnings:
        say(f"warning: {warning}")
    return ComparisonOutcome(folder=run_folder.path, comparison=comparison)


def _sayer(run_folder: RunFolder, progress: Say | None) -> Say:
    def say(message: str) -> None:
        if progress is not None and run_folder.main:
            progress(message)
        run_folder.log(message)

    return say
