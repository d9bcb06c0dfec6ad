"""What the unsupervised adaptation strategies share: checking the unlabelled target, a seeded
stream of target batches, a tap on the backbone's pooled source features, the template of
source training with a target (:class:`TargetAdaptation`: validator, AdaBN, details) and, on
it, the template that turns an alignment loss into a regularizer of the fine-tune engine
(:class:`AlignmentStrategy`: DANN, CORAL and MCC; MixStyle uses forward hooks instead).

Everything works on ``model.backbone(**batch) -> (batch, feature_dim)``, so it applies to any
modality whose backbone honours that contract.
"""

from __future__ import annotations

import math
import warnings
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from lepton_platform.errors import ConfigError, DataError
from lepton_platform.models import Preprocessor, TransferModel
from lepton_platform.strategies.base import (
    Strategy,
    TransferJob,
    TransferOutcome,
    check_range,
    set_requires_grad,
)
from lepton_platform.tasks import Task

if TYPE_CHECKING:
    import datasets

    from lepton_platform.engine.finetune import Trainer

__all__ = [
    "AdaptationModel",
    "AlignmentStrategy",
    "FeatureTap",
    "TargetAdaptation",
    "TargetLabelsIgnored",
    "TargetStream",
    "TargetTraining",
    "check_target",
    "load_source_head",
]


class TargetLabelsIgnored(UserWarning):
    """Target data passed as unlabelled carried a ``label`` column; it was dropped unread."""


def strip_labels(dataset: datasets.Dataset, where: str) -> datasets.Dataset:
    """``dataset`` without its ``label`` column, saying so when there was one."""
    if "label" not in dataset.column_names:
        return dataset
    warnings.warn(
        f"{where}: the unlabelled target data has a 'label' column; it is ignored (dropped "
        "before training, never read): unsupervised adaptation uses target inputs only",
        TargetLabelsIgnored,
        stacklevel=3,
    )
    return dataset.remove_columns(["label"])


def _first_batch(
    dataset: datasets.Dataset, preprocessor: Preprocessor, n: int
) -> dict[str, torch.Tensor]:
    from lepton_platform.engine.predict import batches

    return next(iter(batches(dataset.select(range(min(n, len(dataset)))), preprocessor, n)))


def check_target(
    job: TransferJob, strategy: str, target: datasets.Dataset | None = None
) -> datasets.Dataset:
    """The job's unlabelled target, checked before any training: present, not empty, labels
    dropped (with a warning), prepared like the source, and of the same input shapes."""
    data = job.unlabelled_target if target is None else target
    if data is None:
        raise ConfigError(
            f"strategy {strategy!r} adapts to an unlabelled target domain, but no target data "
            "was given: pass unlabelled_target (target-domain inputs, prepared with the same "
            "backbone's preprocessor)"
        )
    if len(data) == 0:
        raise DataError(f"strategy {strategy!r}: the unlabelled target data set is empty")
    data = strip_labels(data, f"strategy {strategy!r}")
    check_compatible(job.train, data, job.preprocessor, job.model, f"strategy {strategy!r}")
    return data


def check_compatible(
    source: datasets.Dataset,
    target: datasets.Dataset,
    preprocessor: Preprocessor,
    model: TransferModel,
    where: str,
) -> None:
    """Raise :class:`DataError` when ``target`` cannot go through the same backbone as
    ``source``: other input columns (another modality or preprocessing), other tensor kinds,
    other fixed dimensions (channels, image height, mel bins), or a backbone that rejects it."""
    wanted = [c for c in preprocessor.output_columns if c in source.column_names]
    missing = [c for c in wanted if c not in target.column_names]
    if missing:
        raise DataError(
            f"{where}: the target data lacks the input column(s) {missing} that the source has "
            f"(target columns: {target.column_names}); is it another modality, or not prepared "
            "with this backbone's preprocessor? Run lepton_platform.data.prepare(target, "
            "backbone.preprocessor()) on target data of the same kind as the source"
        )
    src = _first_batch(source, preprocessor, 2)
    try:
        tgt = _first_batch(target, preprocessor, 2)
    except Exception as exc:
        raise DataError(
            f"{where}: the target data cannot be batched like the source: {exc}"
        ) from None
    for key, s in src.items():
        t = tgt.get(key)
        if t is None or t.ndim != s.ndim or t.dtype != s.dtype or t.shape[1:-1] != s.shape[1:-1]:
            got = "missing" if t is None else f"{tuple(t.shape[1:])} {t.dtype}"
            raise DataError(
                f"{where}: input {key!r} of the target has shape/type {got}, the source has "
                f"{tuple(s.shape[1:])} {s.dtype}; source and target must have the same kind "
                "of input (same modality, channels and size)"
            )
    backbone = model.backbone
    was_training = backbone.training
    device = next(iter(model.parameters())).device
    backbone.eval()
    try:
        with torch.no_grad():
            out = backbone(**{k: v.to(device) for k, v in tgt.items()})
    except Exception as exc:
        raise DataError(
            f"{where}: the backbone {type(backbone).__name__} rejects the target inputs "
            f"({type(exc).__name__}: {exc}); source and target must have the same input shape"
        ) from None
    finally:
        backbone.train(was_training)
    if out.ndim != 2 or out.shape[1] != backbone.feature_dim:
        raise DataError(
            f"{where}: the backbone gives target features of shape {tuple(out.shape)}, "
            f"expected (batch, {backbone.feature_dim})"
        )


def load_source_head(job: TransferJob, strategy: str) -> None:
    """Put the source model's head (``job.source_head``, read by the job's builder for a
    strategy that ``needs_source_head``) on ``job.model``: source-free adaptation starts from
    the whole source model. Raises :class:`ConfigError` saying why when there is none."""
    if job.source_head is None:  # Strategy.check_job refused this job already, with advice
        raise ConfigError(f"strategy {strategy!r}: {job.source_head_note or 'no source head'}")
    try:
        job.model.head.load_state_dict(dict(job.source_head))
    except RuntimeError as exc:
        raise ConfigError(
            f"strategy {strategy!r}: the source model's head does not fit the job's head: {exc}"
        ) from None


class TargetStream:
    """Endless batches of the unlabelled target, reshuffled each pass; the order depends only
    on ``(seed, pass)`` and the number of batches drawn so far, never on a global RNG."""

    def __init__(
        self, dataset: datasets.Dataset, preprocessor: Preprocessor, batch_size: int, seed: int
    ) -> None:
        from lepton_platform.engine._loop_utils import DatasetView, make_collate

        self.columns = [c for c in preprocessor.output_columns if c in dataset.column_names]
        self.view = DatasetView(dataset, self.columns)
        self.collate = make_collate(preprocessor, train=True, with_labels=False)
        self.n = len(dataset)
        self.batch_size = max(1, min(batch_size, self.n))
        self.seed = seed
        self.drawn = 0

    @property
    def per_pass(self) -> int:
        return self.n // self.batch_size

    def batch(self, index: int) -> dict[str, torch.Tensor]:
        """The ``index``-th batch of the stream (deterministic)."""
        from lepton_platform.engine._loop_utils import derive_seed

        round_, slot = divmod(index, self.per_pass)
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "target", round_))
        order = torch.randperm(self.n, generator=generator).numpy()
        rows = order[slot * self.batch_size : (slot + 1) * self.batch_size]
        _, examples = self.view.__getitems__([(int(r), 0) for r in rows])
        return self.collate((derive_seed(self.seed, "target-augment", index), examples))

    def next(self, device: torch.device) -> dict[str, torch.Tensor]:
        batch = self.batch(self.drawn)
        self.drawn += 1
        return {k: v.to(device) for k, v in batch.items()}


class FeatureTap:
    """Keeps the pooled features of the backbone's latest training-mode forward pass (the
    source batch the engine just ran), so that a regularizer can align them to the target."""

    def __init__(self, backbone: nn.Module) -> None:
        self.features: torch.Tensor | None = None
        self.handle = backbone.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: Any, output: torch.Tensor) -> None:
        if module.training and torch.is_grad_enabled():
            self.features = output

    def take(self) -> torch.Tensor:
        if self.features is None:
            raise RuntimeError("no source features were captured before the regularizer ran")
        out, self.features = self.features, None
        return out

    def close(self) -> None:
        self.handle.remove()


class AdaptationModel(TransferModel):
    """The job's backbone and head (the same module objects) plus the adaptation's own
    trainable parts (``adapter``: the domain discriminator of DANN, empty for the others), so
    that the engine's optimiser, checkpoints and best-epoch restore cover all of them."""

    def __init__(self, model: TransferModel, adapter: nn.Module) -> None:
        super().__init__(model.backbone, model.head)
        self.adapter = adapter


def _steps_total(job: TransferJob) -> int:
    batches = math.ceil(len(job.train) / job.config.batch_size)
    return max(1, math.ceil(batches / job.config.grad_accum_steps) * job.config.epochs)


class _Progress:
    """Shares the trainer (its global step) with the regularizer; positions the target stream
    on resume."""

    def __init__(self, stream: TargetStream, accum: int) -> None:
        from lepton_platform.engine.callbacks import Callback

        outer = self

        class _Hook(Callback):
            def on_train_start(self, trainer: Trainer) -> None:
                outer.trainer = trainer
                stream.drawn = trainer.global_step * accum

        self.trainer: Trainer | None = None
        self.callback = _Hook()

    @property
    def step(self) -> int:
        return 0 if self.trainer is None else self.trainer.global_step


def _selection(validator: str, report: dict[str, Any]) -> dict[str, Any]:
    """What chose the returned epoch: the validator, the epoch, every validator's score per
    epoch (by validator name)."""
    return {
        "validator": validator,
        "chosen_epoch": report["chosen_epoch"],
        "scores_per_epoch": [
            {k.removeprefix("validator_"): v for k, v in scores.items()}
            for scores in report["scores_per_epoch"]
        ],
    }


def _nothing() -> None:
    return None


@dataclass
class TargetTraining:
    """What a strategy adds to the engine's source training (see
    :meth:`TargetAdaptation.prepare`): trainable parts besides backbone and head (``adapter``:
    DANN's discriminator; empty for the others), a loss added to each step's source loss
    (``regularizer``, or ``None``), what to undo once training ends (``close``: remove hooks)
    and the strategy's own details of the run (``details``, called after training)."""

    adapter: nn.Module = field(default_factory=nn.Module)
    regularizer: Callable[[TransferModel], torch.Tensor] | None = None
    close: Callable[[], None] = _nothing
    details: Callable[[], dict[str, Any]] = dict


class TargetAdaptation(Strategy):
    """The template of unsupervised domain adaptation with a labelled source and an
    unlabelled target: fine-tune on the source through the engine while :meth:`prepare` adds
    what uses the target (a loss, forward hooks) from a seeded stream of target batches;
    epochs are chosen by a label-free ``validator``; ``adabn`` re-estimates the batch-norm
    statistics on the target after training."""

    def __init__(self, adabn: bool, validator: str) -> None:
        from lepton_platform.adaptation.validators import check_validator

        self.adabn = bool(adabn)
        self.validator = check_validator(validator, self.name)

    def check(self, model: TransferModel, *, pretrained: bool) -> None:
        super().check(model, pretrained=pretrained)
        if self.adabn and not model.backbone.batchnorm_layers():
            raise ConfigError(
                f"strategy {self.name!r}: adabn=True re-estimates batch-norm statistics, but "
                f"backbone {type(model.backbone).__name__} has no batch-norm layers; set "
                "adabn=False"
            )

    def config(self) -> dict[str, Any]:
        return {"adabn": self.adabn, "validator": self.validator}

    def check_task(self, task: Task) -> None:
        """Raise :class:`ConfigError` when the strategy cannot serve ``task`` (default: it
        serves any)."""

    def check_job(self, job: TransferJob) -> None:
        self.check_task(job.task)
        check_target(job, self.name)

    @abstractmethod
    def prepare(
        self, job: TransferJob, stream: TargetStream, progress: Callable[[], float]
    ) -> TargetTraining:
        """What this strategy adds to the source training of ``job``: target batches come
        from ``stream`` (``stream.next(device)``, or ``stream.batch(i)`` by index), and
        ``progress()`` is the training progress from 0 to 1. Called once per run, after the
        job was checked and the global RNG seeded, before the trainer is built."""

    def run(self, job: TransferJob) -> TransferOutcome:
        from lepton_platform.adaptation.validators import ValidationData, best_model
        from lepton_platform.strategies.regularized import adapt_batchnorm

        self.check(job.model, pretrained=job.pretrained_state is not None)
        self.check_task(job.task)
        target = check_target(job, self.name)
        torch.manual_seed(job.config.seed)
        stream = TargetStream(target, job.preprocessor, job.config.batch_size, job.config.seed)
        progress = _Progress(stream, job.config.grad_accum_steps)
        total = _steps_total(job)
        training = self.prepare(job, stream, lambda: min(progress.step / total, 1.0))
        adapter = training.adapter
        try:
            wrapped = AdaptationModel(job.model, adapter).to(next(job.model.parameters()).device)
            set_requires_grad(wrapped.parameters(), True)
            data = ValidationData(
                task=job.task,
                preprocessor=job.preprocessor,
                source=job.validation,
                target=target,
                batch_size=job.config.eval_batch_size or job.config.batch_size,
                seed=job.config.seed,
            )
            chooser = best_model(self.validator, data)
            groups: list[dict[str, Any]] = [
                {"params": list(job.model.backbone.parameters()), "name": "backbone"},
                {"params": list(job.model.head.parameters()), "name": "head"},
            ]
            adapter_params = list(adapter.parameters())
            if adapter_params:
                groups.append({"params": adapter_params, "name": "adapter", "weight_decay": 0.0})
            trainer = job.trainer(
                model=wrapped,
                param_groups=groups,
                regularizer=training.regularizer,
                callbacks=[progress.callback],
                best_model=chooser,
            )
            fit = trainer.fit(job.train, job.validation, job.preprocessor)
        finally:
            training.close()
        details: dict[str, Any] = {
            **self.config(),
            **training.details(),
            "selection": _selection(self.validator, chooser.report()),
            "target_examples": len(target),
        }
        if self.adabn:
            details["adabn_examples"] = adapt_batchnorm(job.model, job, target)
        history = [dict(h) for h in fit.history]  # validator_<name> scores included
        return TransferOutcome(model=job.model, history=history, fit=fit, details=details)


class AlignmentStrategy(TargetAdaptation):
    """Fine-tune on the labelled source while an alignment loss between the pooled features of
    source and target batches pulls the domains together. Subclasses give the loss (and any
    trainable adapter): :meth:`alignment_loss` on the pooled features through the adapter, or
    :meth:`step_loss` for a loss that needs more of the model (the head: a loss on the target's
    predictions)."""

    def __init__(self, weight: float, adabn: bool, validator: str) -> None:
        self.weight = check_range(self.name, "weight", weight, 0.0, 1e4)
        super().__init__(adabn, validator)

    def config(self) -> dict[str, Any]:
        return {"weight": self.weight, **super().config()}

    def control(self) -> dict[str, Any] | None:
        """The same source training with the alignment off (``weight=0``: no target batch is
        drawn), AdaBN as in the row."""
        return {**self.config(), "weight": 0.0} if self.weight > 0 else None

    @abstractmethod
    def build_adapter(self, feature_dim: int) -> nn.Module:
        """Trainable parts besides backbone and head (an empty module when none)."""

    def alignment_loss(
        self,
        adapter: nn.Module,
        source: torch.Tensor,
        target: torch.Tensor,
        progress: float,
    ) -> torch.Tensor:
        """The loss added to the task loss for one source and one target batch of pooled
        features. A subclass overrides this or :meth:`step_loss`."""
        raise NotImplementedError(
            f"{type(self).__name__} overrides neither alignment_loss nor step_loss"
        )

    def step_loss(
        self,
        model: AdaptationModel,
        source: torch.Tensor,
        target: torch.Tensor,
        progress: float,
    ) -> torch.Tensor:
        """The loss added to one step's source loss, given the whole model (backbone, head and
        adapter) and the pooled features of the step's source and target batches (both with
        gradients). Default: :meth:`alignment_loss` through the adapter."""
        return self.alignment_loss(model.adapter, source, target, progress)

    def extra_details(self) -> dict[str, Any]:
        return {}

    def prepare(
        self, job: TransferJob, stream: TargetStream, progress: Callable[[], float]
    ) -> TargetTraining:
        adapter = self.build_adapter(job.model.backbone.feature_dim)
        tap = FeatureTap(job.model.backbone)
        losses: list[float] = []

        def regularizer(model: TransferModel) -> torch.Tensor:
            source = tap.take()
            device = source.device
            if self.weight == 0:  # no alignment: source-only training, target never drawn
                return torch.zeros((), device=device)
            tgt = model.backbone(**stream.next(device))
            tap.features = None  # the target pass is not a source batch
            assert isinstance(model, AdaptationModel)
            loss = self.step_loss(model, source, tgt, progress())
            losses.append(float(loss.detach()))
            return loss

        def details() -> dict[str, Any]:
            return {
                **self.extra_details(),
                "alignment_loss_first": losses[0] if losses else None,
                "alignment_loss_last": float(np.mean(losses[-10:])) if losses else None,
            }

        return TargetTraining(adapter, regularizer, tap.close, details)
