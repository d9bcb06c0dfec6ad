"""One trial: train the sampled config and score it on the validation split only.

A trial runs the same steps as :func:`lepton_platform.recipe.transfer` (domain, backbone with
its weights, the task's head, the strategy), except that it never touches the test split and
saves nothing. The data are loaded once per worker and shared by its trials. A
:class:`PruningCallback` reports each epoch's validation score to Optuna and stops a trial that
the pruner finds weak.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna

from lepton_platform.config import RunConfig
from lepton_platform.engine.finetune import Callback, Trainer
from lepton_platform.errors import ConfigError
from lepton_platform.strategies.base import TransferJob

if TYPE_CHECKING:
    from lepton_platform.data import DataBundle

__all__ = ["PruningCallback", "TrialOutcome", "monitor_direction", "run_trial"]


def monitor_direction(config: RunConfig) -> tuple[str, str]:
    """The monitored metric (``train.monitor``) and whether Optuna minimises or maximises it."""
    monitor = str(getattr(config.train, "monitor", None) or "loss")
    mode = str(getattr(config.train, "monitor_mode", None) or "auto")
    if mode == "auto":
        mode = "min" if monitor == "loss" or monitor.endswith("loss") else "max"
    return monitor, "minimize" if mode == "min" else "maximize"


class PruningCallback(Callback):
    """Reports ``val_<monitor>`` after every epoch to ``trial.report`` (steps counted over all
    the training stages of the trial) and raises :class:`optuna.TrialPruned` when
    ``trial.should_prune()``."""

    def __init__(self, trial: optuna.trial.Trial, monitor: str) -> None:
        self.trial = trial
        self.key = f"val_{monitor}"
        self.step = 0
        self.reported: list[float] = []

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Mapping[str, float]) -> None:
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
class _ReportingJob(TransferJob):
    """A transfer job whose every trainer also carries the trial's callbacks."""

    extra_callbacks: tuple[Callback, ...] = field(default=())

    def trainer(self, *, callbacks: Any = (), **kwargs: Any) -> Trainer:
        return super().trainer(callbacks=(*tuple(callbacks), *self.extra_callbacks), **kwargs)


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
    import torch

    from lepton_platform.data import prepare
    from lepton_platform.engine.evaluate import compute_metrics
    from lepton_platform.models import TransferModel
    from lepton_platform.recipe import build_backbone, resolve_train_config
    from lepton_platform.registry import create_strategy, create_task
    from lepton_platform.strategies.base import snapshot

    started = time.perf_counter()
    kwargs = config.to_transfer_kwargs()
    train = resolve_train_config(kwargs["train"])
    strategy = create_strategy(kwargs["strategy"], **kwargs["strategy_params"])
    task = create_task(kwargs["task"], label_names=bundle.label_names, **kwargs["task_options"])
    torch.manual_seed(train.seed)
    backbone, _ = build_backbone(
        kwargs["backbone"], kwargs["pretrained"], kwargs["backbone_options"]
    )
    model = TransferModel(backbone, task.build_head(backbone.feature_dim))
    strategy.check(model, pretrained=kwargs["pretrained"] is not None)
    preprocessor = backbone.preprocessor()
    if bundle.validation is None or len(bundle.validation) == 0:
        raise ConfigError("lepton tune measures trials on the validation split, and it is empty")
    job = _ReportingJob(
        model=model,
        task=task,
        preprocessor=preprocessor,
        train=prepare(bundle.train, preprocessor, desc="preprocess (train)"),
        validation=prepare(bundle.validation, preprocessor, desc="preprocess (validation)"),
        config=train,
        pretrained_state=snapshot(backbone) if kwargs["pretrained"] is not None else None,
        metrics=kwargs["metrics"],
        extra_callbacks=callbacks,
    )
    outcome = strategy.run(job)
    assert job.validation is not None
    logits, labels = job.trainer(model=outcome.model).predict(job.validation, preprocessor)
    assert labels is not None
    values = compute_metrics(task, logits, labels, kwargs["metrics"])
    monitor, _ = monitor_direction(config)
    if monitor == "loss":
        value = float(task.loss(torch.as_tensor(logits), torch.as_tensor(labels)))
        values["loss"] = value
    else:
        from lepton_platform.engine.evaluate import headline_key

        key = headline_key(monitor)
        if key not in values:
            values.update(compute_metrics(task, logits, labels, [monitor]))
        value = float(values[key])
    reported = sum(len(getattr(c, "reported", [])) for c in callbacks)
    return TrialOutcome(value, values, time.perf_counter() - started, reported)
