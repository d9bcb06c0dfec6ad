"""Fine-tuning strategies in the vocabulary users know (lightning-flash's): ``finetune``,
``freeze``, ``freeze-unfreeze`` and ``unfreeze-milestones``; each takes ``layer_decay`` for
layer-wise learning-rate decay across the backbone's layer groups.

How freezing stays correct under several processes (DDP): a frozen parameter has
``requires_grad=False`` *and* is left out of the optimiser, and its batch-norm layers are kept in
evaluation mode (their running statistics do not move). When a schedule unfreezes groups between
epochs, the engine's :meth:`Trainer.set_trainable` re-wraps the model so that DDP registers the
newly trainable parameters for gradient synchronisation on every process alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from torch import nn

from lepton_platform.engine.callbacks import Callback, KeepFrozenBatchNormInEval
from lepton_platform.errors import ConfigError
from lepton_platform.models import LayerGroup, TransferModel
from lepton_platform.strategies.base import (
    Strategy,
    TransferJob,
    TransferOutcome,
    check_range,
    groups_by_name,
    layerwise_param_groups,
    set_requires_grad,
)

if TYPE_CHECKING:
    from lepton_platform.engine.finetune import Trainer


class _LayerDecayMixin:
    name: str
    layer_decay: float

    def _init_decay(self, layer_decay: float) -> None:
        self.layer_decay = check_range(self.name, "layer_decay", layer_decay, 1e-6, 1.0)

    def param_groups(self, job: TransferJob) -> list[dict[str, Any]]:
        """One optimiser group per layer group (and the head), holding every parameter that
        is trainable now; schedules call it with everything trainable, then freeze."""
        return layerwise_param_groups(
            job.model, job.config.lr, self.layer_decay, job.config.weight_decay
        )


class FineTune(_LayerDecayMixin, Strategy):
    """Every layer trains (the standard baseline of transfer learning). With ``layer_decay``
    below 1, layers near the input learn more slowly (Howard and Ruder 2018, ULMFiT), which
    helps when the target data are few and close to the source."""

    name = "finetune"

    def __init__(self, layer_decay: float = 1.0) -> None:
        self._init_decay(layer_decay)

    def run(self, job: TransferJob) -> TransferOutcome:
        set_requires_grad(job.model.parameters(), True)
        trainer = job.trainer(param_groups=self.param_groups(job))
        fit = trainer.fit(job.train, job.validation, job.preprocessor)
        return TransferOutcome(model=job.model, history=list(fit.history), fit=fit)

    def config(self) -> dict[str, Any]:
        return {"layer_decay": self.layer_decay}


class Freeze(Strategy):
    """The backbone is frozen (its batch-norm statistics too); only the head trains. Cheap and
    robust when the target data are very few; the cached ``linear-probe`` is faster still when
    no augmentation is needed."""

    name = "freeze"

    def run(self, job: TransferJob) -> TransferOutcome:
        set_requires_grad(job.model.backbone.parameters(), False)
        set_requires_grad(job.model.head.parameters(), True)
        trainer = job.trainer(callbacks=[KeepFrozenBatchNormInEval()])
        fit = trainer.fit(job.train, job.validation, job.preprocessor)
        return TransferOutcome(model=job.model, history=list(fit.history), fit=fit)


class _Unfreeze(Callback):
    def __init__(self, schedule: dict[int, list[nn.Parameter]]) -> None:
        self.schedule = schedule

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        params = self.schedule.get(epoch)
        if params:
            set_requires_grad(params, True)
            trainer.set_trainable(lambda name, param: param.requires_grad)


class FreezeUnfreeze(_LayerDecayMixin, Strategy):
    """The backbone is frozen for the first ``unfreeze_epoch`` epochs (the head settles on
    fixed features), then everything trains. Avoids wrecking pretrained features with the
    large gradients of a random head."""

    name = "freeze-unfreeze"

    def __init__(self, unfreeze_epoch: int = 1, layer_decay: float = 1.0) -> None:
        if int(unfreeze_epoch) < 1:
            raise ConfigError(
                f"strategy 'freeze-unfreeze': unfreeze_epoch must be >= 1, got {unfreeze_epoch}"
            )
        self.unfreeze_epoch = int(unfreeze_epoch)
        self._init_decay(layer_decay)

    def run(self, job: TransferJob) -> TransferOutcome:
        if self.unfreeze_epoch >= job.config.epochs:
            raise ConfigError(
                f"strategy 'freeze-unfreeze': unfreeze_epoch {self.unfreeze_epoch} is past the "
                f"last epoch ({job.config.epochs} epochs, numbered from 0)"
            )
        backbone = list(job.model.backbone.parameters())
        set_requires_grad(job.model.head.parameters(), True)
        set_requires_grad(backbone, True)
        groups = self.param_groups(job)  # every parameter has its group from the start
        set_requires_grad(backbone, False)
        callbacks = [_Unfreeze({self.unfreeze_epoch: backbone}), KeepFrozenBatchNormInEval()]
        trainer = job.trainer(param_groups=groups, callbacks=callbacks)
        fit = trainer.fit(job.train, job.validation, job.preprocessor)
        return TransferOutcome(model=job.model, history=list(fit.history), fit=fit)

    def config(self) -> dict[str, Any]:
        return {"unfreeze_epoch": self.unfreeze_epoch, "layer_decay": self.layer_decay}


class UnfreezeMilestones(_LayerDecayMixin, Strategy):
    """Layer groups are unfrozen one after another from the output side: at each epoch in
    ``milestones`` the next ``groups_per_milestone`` groups start training (gradual unfreezing,
    Howard and Ruder 2018)."""

    name = "unfreeze-milestones"

    def __init__(
        self,
        milestones: Sequence[int] = (1, 2),
        groups_per_milestone: int = 1,
        groups: Sequence[str] | None = None,
        layer_decay: float = 1.0,
    ) -> None:
        steps = [int(m) for m in milestones]
        if not steps or steps != sorted(set(steps)) or steps[0] < 1:
            raise ConfigError(
                "strategy 'unfreeze-milestones': milestones must be increasing epochs >= 1, "
                f"got {list(milestones)}"
            )
        if int(groups_per_milestone) < 1:
            raise ConfigError("strategy 'unfreeze-milestones': groups_per_milestone must be >= 1")
        self.milestones = steps
        self.groups_per_milestone = int(groups_per_milestone)
        self.groups = None if groups is None else [str(g) for g in groups]
        self._init_decay(layer_decay)

    def check(self, model: TransferModel, *, pretrained: bool) -> None:
        super().check(model, pretrained=pretrained)
        self._order(model)

    def _order(self, model: TransferModel) -> list[LayerGroup]:
        """The groups in unfreezing order: ``groups`` as given, else from the output side."""
        if self.groups is not None:
            return groups_by_name(model, self.groups, self.name)
        return list(reversed(model.backbone.layer_groups()))

    def run(self, job: TransferJob) -> TransferOutcome:
        if self.milestones[-1] >= job.config.epochs:
            raise ConfigError(
                f"strategy 'unfreeze-milestones': milestone {self.milestones[-1]} is past the "
                f"last epoch ({job.config.epochs} epochs, numbered from 0)"
            )
        model: TransferModel = job.model
        groups = self._order(model)
        set_requires_grad(model.parameters(), True)
        param_groups = self.param_groups(job)
        set_requires_grad(model.backbone.parameters(), False)
        schedule: dict[int, list[nn.Parameter]] = {}
        for index, epoch in enumerate(self.milestones):
            chosen = groups[
                index * self.groups_per_milestone : (index + 1) * self.groups_per_milestone
            ]
            schedule[epoch] = [p for g in chosen for p in g.parameters()]
        callbacks = [_Unfreeze(schedule), KeepFrozenBatchNormInEval()]
        trainer = job.trainer(param_groups=param_groups, callbacks=callbacks)
        fit = trainer.fit(job.train, job.validation, job.preprocessor)
        return TransferOutcome(
            model=model,
            history=list(fit.history),
            fit=fit,
            details={"unfrozen_at": {e: len(p) for e, p in schedule.items()}},
        )

    def config(self) -> dict[str, Any]:
        return {
            "milestones": self.milestones,
            "groups_per_milestone": self.groups_per_milestone,
            "groups": self.groups,
            "layer_decay": self.layer_decay,
        }
