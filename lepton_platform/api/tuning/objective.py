"""One trial: train the sampled config and score it on the validation split only.

A trial is a job of the one composition root (:func:`lepton_platform.api.job.build_job`), the
same as :func:`lepton_platform.transfer` builds, except that it never touches the test split and
saves nothing. The data are loaded once per worker and shared by its trials. A
:class:`PruningCallback` reports each epoch's validation score to Optuna and stops a trial that
the pruner finds weak.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna

from lepton_platform.api.config import RunConfig
from lepton_platform.engine.callbacks import Callback
from lepton_platform.errors import ConfigError

if TYPE_CHECKING:
    from lepton_platform.data import DataBundle
    from lepton_platform.engine.evaluate import Monitor
    from lepton_platform.engine.finetune import Trainer

__all__ = ["PruningCallback", "TrialOutcome", "monitor_of", "run_trial"]


def monitor_of(config: RunConfig) -> Monitor:
    """What a trial is measured by (``train.monitor``): the direction comes from the metric's
    spec (or ``monitor_mode``), never from its name."""
    from lepton_platform.api.job import resolve_monitor, resolve_train

    return resolve_monitor(resolve_train(config.train.model_dump(exclude_unset=True)))


class PruningCallback(Callback):
    """Reports the monitored validation value after every epoch to ``trial.report`` (steps
    counted over all the training stages of the trial) and raises
    :class:`optuna.TrialPruned` when ``trial.should_prune()``."""

    def __init__(self, trial: optuna.trial.Trial, monitor: Monitor) -> None:
        self.trial = trial
        self.key = monitor.history_key
        self.step = 0
        self.reported: list[float] = []

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        value = logs.get(self.key)
        if value is None:
            return
        self.trial.report(float(value), self.step)
        self.reported.append(float(value))
        self.step += 1
        if self.trial.should_prune():
            raise optuna.TrialPruned(
                f"trial {self.trial.number} pruned after {self.step} epoch(s): "
                f"{self.key} {float(value):.4g}"
            )


@dataclass
class TrialOutcome:
    """What one trial measured: the validation value of the monitored metric, all validation
    metrics, and its duration."""

    value: float
    validation: dict[str, Any]
    seconds: float
    epochs_reported: int


def run_trial(
    config: RunConfig,
    bundle: DataBundle,
    *,
    callbacks: tuple[Callback, ...] = (),
) -> TrialOutcome:
    """Train ``config`` on ``bundle.train`` and measure it on ``bundle.validation``."""
    from lepton_platform.api.job import build_job
    from lepton_platform.engine.evaluate import compute_metrics

    started = time.perf_counter()
    if bundle.validation is None or len(bundle.validation) == 0:
        raise ConfigError("lepton tune measures trials on the validation split, and it is empty")
    kwargs: dict[str, Any] = config.to_transfer_kwargs()
    for key in ("bootstrap", "data", "split", "on_bad_record"):
        kwargs.pop(key, None)
    job = build_job(**kwargs, data=bundle, splits=("train", "validation"), callbacks=callbacks)
    outcome = job.strategy.run(job.transfer)
    logits, labels = job.transfer.predict(outcome.model, job.prepared["validation"])
    assert labels is not None
    values = compute_metrics(job.task, logits, labels, job.metrics)
    monitor = job.monitor
    value = monitor.value(job.task, logits, labels)
    values[monitor.history_key.removeprefix("val_")] = value
    reported = sum(len(getattr(c, "reported", [])) for c in callbacks)
    return TrialOutcome(value, _scalars(values), time.perf_counter() - started, reported)


def _scalars(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in ("per_class", "confusion_matrix")}
