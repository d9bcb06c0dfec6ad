"""The strategy contract: a transfer strategy receives a :class:`TransferJob` (the model with
its pretrained backbone and a fresh head, the prepared data, the training configuration) and
returns a :class:`TransferOutcome`.

Strategies are registered through ``lepton_strategies`` like any plugin's; the built-in ones
live beside this module. A strategy checks its parameters when it is built and its fit to the
model in :meth:`Strategy.check`, both before any training starts.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lepton_platform.errors import ConfigError
from lepton_platform.models import LayerGroup, Preprocessor, TransferModel
from lepton_platform.tasks import Task

if TYPE_CHECKING:
    import datasets

    from lepton_platform.engine.finetune import Callback, FitResult, TrainConfig, Trainer

__all__ = ["Strategy", "TransferJob", "TransferOutcome"]


@dataclass
class TransferJob:
    """Everything a strategy may use. ``pretrained_state`` is the backbone's state before any
    training (theta_0), or ``None`` when the backbone was randomly initialised."""

    model: TransferModel
    task: Task
    preprocessor: Preprocessor
    train: datasets.Dataset
    validation: datasets.Dataset | None
    config: TrainConfig
    output_dir: Path | None = None
    pretrained_state: Mapping[str, torch.Tensor] | None = None
    backbone_key: str = ""
    unlabelled_target: datasets.Dataset | None = None
    metrics: Sequence[str] | None = None
    #: Continue every training stage from its newest checkpoint under ``output_dir``.
    resume: bool = False

    def trainer(
        self,
        *,
        model: TransferModel | None = None,
        config: TrainConfig | None = None,
        param_groups: Sequence[dict[str, Any]] | None = None,
        regularizer: Callable[[TransferModel], torch.Tensor] | None = None,
        callbacks: Iterable[Callback] = (),
        stage: str | None = None,
    ) -> Trainer:
        """A fine-tune engine trainer for this job (one per training stage)."""
        from lepton_platform.engine.finetune import Trainer

        output = self.output_dir / stage if (self.output_dir and stage) else self.output_dir
        trainer = Trainer(
            model or self.model,
            self.task,
            config or self.config,
            output_dir=output,
            param_groups=param_groups,
            regularizer=regularizer,
            callbacks=tuple(callbacks),
        )
        if self.resume and output is not None:
            trainer.fit = functools.partial(trainer.fit, resume=True)  # type: ignore[method-assign]
        return trainer

    def with_config(self, **changes: Any) -> TrainConfig:
        """A copy of the training configuration with some fields changed."""
        return dataclasses.replace(self.config, **changes)

    def score(self, model: TransferModel, dataset: datasets.Dataset | None = None) -> float:
        """The monitored validation score of ``model``, oriented so that higher is better
        (``loss`` is negated)."""
        from lepton_platform.engine.evaluate import compute_metrics, headline_key

        data = self.validation if dataset is None else dataset
        if data is None:
            raise ConfigError("this strategy chooses on the validation split, and there is none")
        logits, labels = self.trainer(model=model).predict(data, self.preprocessor)
        if labels is None:
            raise ConfigError("the validation split has no labels to choose on")
        monitor = self.config.monitor
        if monitor == "loss":
            return -float(self.task.loss(torch.as_tensor(logits), torch.as_tensor(labels)))
        values = compute_metrics(self.task, logits, labels, [monitor])
        score = float(values[headline_key(monitor)])
        return -score if self.config.mode == "min" else score


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

    def check(self, model: TransferModel, *, pretrained: bool) -> None:
        """Raise :class:`ConfigError` before training when the strategy cannot apply."""
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


def clone_model(model: TransferModel) -> TransferModel:
    return copy.deepcopy(model)


def check_range(strategy: str, name: str, value: float, low: float, high: float) -> float:
    value = float(value)
    if not low <= value <= high:
        raise ConfigError(f"strategy {strategy!r}: {name} must be in [{low}, {high}], got {value}")
    return value
