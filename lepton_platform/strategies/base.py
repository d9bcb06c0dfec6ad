"""The strategy contract: a transfer strategy receives a :class:`TransferJob` (the model with
its pretrained backbone and a fresh head, the prepared data, the training configuration) and
returns a :class:`TransferOutcome`.

Strategies are registered through ``lepton_strategies`` like any plugin's; the built-in ones
live beside this module. A strategy checks its parameters when it is built and its fit to the
model in :meth:`Strategy.check`, both before any training starts.

The job reaches the engines through its ``engine`` (:class:`JobEngine`): ``job.trainer()``
builds a fine-tune engine trainer, ``job.predict()`` runs the one prediction function and
``job.score()`` measures the monitored value on validation. The application layer (or the
testing kit) gives every job its engine, so this contract depends on no engine.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from lepton_platform.errors import ConfigError
from lepton_platform.models import LayerGroup, Preprocessor, TransferModel
from lepton_platform.settings import TrainConfig
from lepton_platform.tasks import Task

if TYPE_CHECKING:
    import datasets
    import numpy as np

    from lepton_platform.engine.callbacks import BestModel, Callback
    from lepton_platform.engine.evaluate import Metric, Monitor
    from lepton_platform.engine.finetune import FitResult, Trainer

__all__ = ["JobEngine", "Strategy", "TransferJob", "TransferOutcome"]


class JobEngine(Protocol):
    """What a job's strategy may ask of the engines (implemented by
    :class:`lepton_platform.strategies.jobs.Engine`)."""

    def trainer(
        self,
        job: TransferJob,
        *,
        model: TransferModel | None = None,
        config: TrainConfig | None = None,
        param_groups: Sequence[Mapping[str, Any]] | None = None,
        regularizer: Callable[[TransferModel], torch.Tensor] | None = None,
        callbacks: Iterable[Callback] = (),
        stage: str | None = None,
        best_model: BestModel | None = None,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> Trainer: ...

    def predict(
        self, job: TransferJob, model: torch.nn.Module, dataset: datasets.Dataset
    ) -> tuple[np.ndarray, np.ndarray | None]: ...

    def score(
        self, job: TransferJob, model: TransferModel, dataset: datasets.Dataset | None = None
    ) -> float: ...


@dataclass
class TransferJob:
    """Everything a strategy may use. ``pretrained_state`` is the backbone's state before any
    training (theta_0), or ``None`` when the backbone was randomly initialised. ``metrics`` are
    the resolved metrics of the run and ``monitor`` what chooses on validation."""

    model: TransferModel
    task: Task
    preprocessor: Preprocessor
    train: datasets.Dataset
    validation: datasets.Dataset | None
    config: TrainConfig
    output_dir: Path | None = None
    pretrained_state: Mapping[str, torch.Tensor] | None = None
    unlabelled_target: datasets.Dataset | None = None
    metrics: Sequence[Metric] | None = None
    monitor: Monitor | None = None
    #: Continue every training stage from its newest checkpoint under ``output_dir``.
    resume: bool = False
    #: The Lepton model folder the backbone's weights came from (``None``: another kind of
    #: weights, or none).
    source_model: Path | None = None
    #: That source model's head (its state dict) when the strategy ``needs_source_head`` and
    #: the source was trained for the same task on the same labels; else ``None``, and
    #: ``source_head_note`` says why.
    source_head: Mapping[str, torch.Tensor] | None = None
    source_head_note: str = ""
    #: The engines' services (set by whoever builds the job).
    engine: JobEngine | None = field(default=None, repr=False)

    def _engine(self) -> JobEngine:
        if self.engine is None:
            raise ConfigError(
                "this TransferJob has no engine: build jobs with lepton_platform.api.job "
                "(or lepton_platform.testing.tiny.tiny_job), or set job.engine = "
                "lepton_platform.strategies.jobs.Engine()"
            )
        return self.engine

    def trainer(
        self,
        *,
        model: TransferModel | None = None,
        config: TrainConfig | None = None,
        param_groups: Sequence[Mapping[str, Any]] | None = None,
        regularizer: Callable[[TransferModel], torch.Tensor] | None = None,
        callbacks: Iterable[Callback] = (),
        stage: str | None = None,
        best_model: BestModel | None = None,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> Trainer:
        """A fine-tune engine trainer for this job (one per training stage); ``best_model``
        replaces the default choice of the best epoch, ``loss(logits, labels)`` the task's loss
        as the training objective of a batch."""
        return self._engine().trainer(
            self,
            model=model,
            config=config,
            param_groups=param_groups,
            regularizer=regularizer,
            callbacks=callbacks,
            stage=stage,
            best_model=best_model,
            loss=loss,
        )

    def predict(
        self, model: torch.nn.Module, dataset: datasets.Dataset
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``model``'s outputs on a prepared dataset (and its labels), no optimiser built."""
        return self._engine().predict(self, model, dataset)

    def score(self, model: TransferModel, dataset: datasets.Dataset | None = None) -> float:
        """The monitored validation value of ``model``, oriented so that higher is better
        (a loss or a lower-is-better metric is negated)."""
        return self._engine().score(self, model, dataset)

    def with_config(self, **changes: Any) -> TrainConfig:
        """A copy of the training configuration with some fields changed."""
        return dataclasses.replace(self.config, **changes)


@dataclass
class TransferOutcome:
    """What a strategy returns: the trained model, the per-epoch history and its own details
    (for instance the WiSE-FT alpha sweep)."""

    model: TransferModel
    history: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    fit: FitResult | None = None


class Strategy(ABC):
    """A way to move a pretrained backbone to the target task."""

    name: str = "strategy"
    needs_pretrained: bool = False
    needs_batchnorm: bool = False
    #: It starts from the whole source model (backbone and head): the job's builder reads the
    #: head of the Lepton model folder the backbone came from into ``job.source_head``.
    needs_source_head: bool = False

    def check(self, model: TransferModel, *, pretrained: bool) -> None:
        """Raise :class:`ConfigError` before training when the strategy cannot apply to the
        model (called as soon as the model is built, before the data are prepared)."""
        if self.needs_pretrained and not pretrained:
            raise ConfigError(
                f"strategy {self.name!r} needs pretrained weights (theta_0), but the backbone "
                "was randomly initialised: set `pretrained`"
            )
        if self.needs_batchnorm and not model.backbone.batchnorm_layers():
            raise ConfigError(
                f"strategy {self.name!r} re-estimates batch-norm statistics, but backbone "
                f"{type(model.backbone).__name__} has no batch-norm layers"
            )

    def check_job(self, job: TransferJob) -> None:
        """Raise before training when the strategy cannot run this job: what it needs besides
        the model (an unlabelled target, a source model's head). Called once the job is built,
        data prepared, so that ``compare`` can build every row before training any. The base
        class checks ``needs_source_head``."""
        if self.needs_source_head and job.source_head is None:
            raise ConfigError(
                f"strategy {self.name!r} starts from the whole source model, head included, but "
                f"{job.source_head_note or 'the job has no source head'}: give the backbone's "
                "pretrained as a Lepton model folder trained for the same task and labels"
            )

    def control(self) -> dict[str, Any] | None:
        """The parameters of this strategy's *control*: the same training with the part under
        test switched off (an adaptation's alignment term), so that a gain can be credited to
        that part and not to the extra training; ``None`` when it has none. ``compare`` adds
        the control beside the row."""
        return None

    @abstractmethod
    def run(self, job: TransferJob) -> TransferOutcome:
        """Train (or adapt) ``job.model`` and return the outcome."""

    def config(self) -> dict[str, Any]:
        """JSON-ready parameters, recorded in the run's manifest."""
        return {}


# -- helpers shared by the built-in strategies ------------------------------------------------


def set_requires_grad(params: Iterable[torch.nn.Parameter], flag: bool) -> None:
    for p in params:
        p.requires_grad_(flag)


def groups_by_name(model: TransferModel, names: Sequence[str], strategy: str) -> list[LayerGroup]:
    """The backbone's layer groups called ``names``; an unknown name is a ConfigError."""
    groups = {g.name: g for g in model.backbone.layer_groups()}
    missing = [n for n in names if n not in groups]
    if missing:
        raise ConfigError(
            f"strategy {strategy!r}: layer group(s) {missing} do not exist in backbone "
            f"{type(model.backbone).__name__}; it has {list(groups)}"
        )
    return [groups[n] for n in names]


def layerwise_param_groups(
    model: TransferModel, lr: float, decay: float, weight_decay: float
) -> list[dict[str, Any]]:
    """Layer-wise learning-rate decay: the head trains at ``lr``, the backbone group ``k``
    steps below the output at ``lr * decay**k`` (input side smallest). Only trainable
    parameters are included; biases and norm weights get no weight decay."""
    groups = model.backbone.layer_groups()
    out: list[dict[str, Any]] = []
    depth = len(groups)
    for index, group in enumerate(groups):
        scale = decay ** (depth - index)
        out.extend(_split_decay(list(group.parameters()), lr * scale, weight_decay, group.name))
    out.extend(_split_decay(list(model.head.parameters()), lr, weight_decay, "head"))
    return [g for g in out if g["params"]]


def _split_decay(
    params: list[torch.nn.Parameter], lr: float, weight_decay: float, name: str
) -> list[dict[str, Any]]:
    trainable = [p for p in params if p.requires_grad]
    decay = [p for p in trainable if p.ndim > 1]
    no_decay = [p for p in trainable if p.ndim <= 1]
    return [
        {"params": decay, "lr": lr, "weight_decay": weight_decay, "name": name},
        {"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": f"{name}.no_decay"},
    ]


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of a state dict (theta_0 for WiSE-FT and L2-SP)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def check_range(strategy: str, name: str, value: float, low: float, high: float) -> float:
    value = float(value)
    if not low <= value <= high:
        raise ConfigError(f"strategy {strategy!r}: {name} must be in [{low}, {high}], got {value}")
    return value
