"""The fine-tune engine: one training loop on Hugging Face Accelerate for every domain.

It runs on CPU, one GPU, or several processes and machines through ``accelerate launch``, with
mixed precision where the device has it, gradient accumulation and clipping, AdamW or SGD,
constant, linear or cosine schedules with warm-up, parameter groups with their own learning
rates, atomic checkpoints and exact resume. Its own behaviours (best model, early stopping, the
metrics log, the checkpoint cadence) are callbacks (:mod:`lepton_platform.engine.callbacks`)
that a strategy may replace. Example::

    from lepton_platform.engine.finetune import TrainConfig, Trainer

    config = TrainConfig(epochs=5, batch_size=32, lr=3e-4, early_stopping_patience=2)
    trainer = Trainer(model, task, config, output_dir="runs/exp1")
    result = trainer.fit(train_ds, validation_ds, preprocessor)
    logits, labels = trainer.predict(test_ds, preprocessor)

The data order of an epoch depends only on ``(seed, epoch)``; augmentation is seeded per batch;
checkpoints hold the RNG states, the position in the data and every callback's state. So two
runs with one seed agree exactly on CPU, and a run killed at any moment and resumed ends with
the same weights as one that was never interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from lepton_platform.engine import checkpoint as ckpt
from lepton_platform.engine import hardware
from lepton_platform.engine._loop_utils import (
    BatchPlan,
    DatasetView,
    _LocalBatches,
    balanced_weights,
    capture_rng,
    default_param_groups,
    derive_seed,
    lr_lambda,
    make_collate,
    restore_rng,
)
from lepton_platform.engine.callbacks import (
    BestModel,
    Callback,
    Checkpointing,
    EarlyStopping,
    MetricsLog,
)
from lepton_platform.engine.distributed import leave_process_group_at_exit
from lepton_platform.engine.evaluate import Monitor
from lepton_platform.engine.hardware import SpeedChoice
from lepton_platform.engine.predict import check_prepared, multi_hot_width, predict, to_device
from lepton_platform.errors import ArtifactError, ConfigError, DataError, TrainingError
from lepton_platform.models import Preprocessor, TransferModel, config_fingerprint
from lepton_platform.settings import TrainConfig
from lepton_platform.tasks import Task

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = ["Callback", "FitResult", "TrainConfig", "Trainer"]

ParamPredicate = Callable[[str, nn.Parameter], bool]


# ============================================================================ result


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` did. ``history`` has one entry per epoch: ``epoch``,
    ``train_loss``, ``lr`` and, with a validation split, ``val_loss`` and the monitored
    metric's ``val_<key>``. ``selection`` says what chose ``best_epoch``."""

    history: list[dict[str, float]]
    best_epoch: int | None
    best_score: float | None
    monitor: str
    stopped_early: bool
    global_step: int
    checkpoint_dir: Path | None = None
    resumed_from: Path | None = None
    elapsed_s: float = 0.0
    train_examples_per_s: float = 0.0
    selection: dict[str, Any] = field(default_factory=dict)
    #: The speed defaults this run trained with (matmul precision, memory layout, compile):
    #: each one's value, what chose it and the measurements (:mod:`.hardware`).
    speed: dict[str, Any] = field(default_factory=dict)
    #: Seconds checkpoints cost the training thread during training (copying tensors, the
    #: small files, waiting for an earlier write still running); seconds their files took to
    #: write in the background; seconds the end of training waited for the last write.
    checkpoint_s: float = 0.0
    checkpoint_write_s: float = 0.0
    checkpoint_wait_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["checkpoint_dir"] = None if self.checkpoint_dir is None else str(self.checkpoint_dir)
        data["resumed_from"] = None if self.resumed_from is None else str(self.resumed_from)
        return data


@dataclass
class _RunState:
    """Everything besides tensors and callback states that a checkpoint must hold to continue
    exactly."""

    epoch: int = 0
    batch: int = 0
    global_step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False
    loss_sum: float = 0.0
    loss_count: float = 0.0


# ============================================================================ trainer


class Trainer:
    """Trains a :class:`TransferModel` for a :class:`Task`.

    ``param_groups``: torch-style dicts with ``params`` and optional ``lr``, ``weight_decay``
    and ``name`` (default: every parameter, no weight decay on biases and normalisation
    weights). ``regularizer(model)`` returns a scalar added to each step's loss (L2-SP).
    ``loss(logits, labels)`` replaces the task's loss as the training objective of a batch (the
    mean over its examples, like the task's: SHOT's information maximisation); validation, the
    monitor and the best-epoch choice keep the task's. :meth:`relabel` replaces the training
    labels between epochs (self-training on pseudo-labels recomputed every epoch).
    ``monitor`` resolves ``config.monitor`` (a metric's spec gives its direction; needed when
    it names a metric). ``best_model`` replaces the default choice of the best epoch (the
    monitored validation value) by another :class:`BestModel` (a label-free validator's).
    ``output_dir`` receives ``checkpoints/`` and ``metrics.jsonl``; without it nothing is
    written and the best weights are kept in memory.
    """

    def __init__(
        self,
        model: TransferModel,
        task: Task,
        config: TrainConfig,
        *,
        output_dir: str | os.PathLike[str] | None = None,
        param_groups: Sequence[Mapping[str, Any]] | None = None,
        regularizer: Callable[[TransferModel], torch.Tensor] | None = None,
        callbacks: Iterable[Callback] = (),
        monitor: Monitor | None = None,
        best_model: BestModel | None = None,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise ConfigError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config = config
        self.task = task
        self.monitor = _check_monitor(config, monitor)
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.regularizer = regularizer
        self.loss = loss if loss is not None else task.loss
        self.should_stop = False
        self.accelerator = _make_accelerator(config, self.output_dir)
        if config.batch_size % self.accelerator.num_processes:
            raise ConfigError(
                f"TrainConfig.batch_size ({config.batch_size}) is the global batch; it must be "
                f"divisible by the number of processes ({self.accelerator.num_processes})"
            )
        model.to(self.accelerator.device)
        self.speed = self._speed_defaults(model, config)
        self.channels_last = bool(self.speed["channels_last"].value)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        groups = self._param_groups(param_groups)
        raw_optimizer = _build_optimizer(config, groups)
        self._wrapped: nn.Module = self.accelerator.prepare_model(model)
        self._compiled: tuple[nn.Module, nn.Module] | None = None
        self.optimizer = self.accelerator.prepare_optimizer(raw_optimizer)
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.global_step = 0
        self.epoch = 0
        self.trackers_on = False
        self.best_model = best_model or BestModel.for_monitor(self.monitor)
        self.metrics_log = MetricsLog(
            None if self.output_dir is None else self.output_dir / "metrics.jsonl",
            config.log_every_steps,
        )
        builtin: list[Callback] = [self.best_model]
        if config.early_stopping_patience is not None:
            builtin.append(EarlyStopping(self.best_model, config.early_stopping_patience))
        builtin.append(self.metrics_log)
        self.callbacks: list[Callback] = [*builtin, *callbacks]
        if self.output_dir is not None:
            self.callbacks.append(Checkpointing(config.checkpoint_every_steps))
        self._state = _RunState()
        self._writes = ckpt.BackgroundWrites()
        self.checkpoint_seconds = 0.0
        self.checkpoint_wait_seconds = 0.0
        self._fingerprints: dict[str, Any] = {}
        self._batches_per_epoch = 0
        self._view: DatasetView | None = None
        self._in_epoch = False

    def _speed_defaults(self, model: nn.Module, config: TrainConfig) -> dict[str, SpeedChoice]:
        """The matmul precision and memory layout to train with (the ``auto`` settings probed,
        :mod:`.hardware`); with several processes the main process decides for all."""
        device = torch.device(self.accelerator.device)
        backbone = getattr(model, "backbone", None)
        example = None
        if backbone is not None and hasattr(backbone, "example_batch"):
            # probed on the global batch's shape (at most 8 rows), not the per-process one, so
            # that one process and several choose alike for the same run
            example = functools.partial(backbone.example_batch, min(config.batch_size, 8))

        def forward(m: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
            return cast(torch.Tensor, m(**batch)).float().mean()

        choices: dict[str, SpeedChoice] = {}
        if self.accelerator.is_main_process:
            choices = {
                "matmul_precision": hardware.matmul_precision(config.matmul_precision, device),
                "channels_last": hardware.channels_last(
                    config.channels_last, model, example, forward, device
                ),
            }
        if self.accelerator.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            shared = broadcast_object_list([choices])
            choices = cast(dict[str, SpeedChoice], shared[0])
        choices["compile"] = SpeedChoice(
            "compile", config.compile, "given", "train.compile (off unless asked)"
        )
        return choices

    @property
    def _step_model(self) -> nn.Module:
        """What a training step calls: the wrapped model, compiled when ``train.compile``
        (compiled again when the model is wrapped anew)."""
        if not self.config.compile:
            return self._wrapped
        if self._compiled is None or self._compiled[0] is not self._wrapped:
            self._compiled = (self._wrapped, cast(nn.Module, torch.compile(self._wrapped)))
        return self._compiled[1]

    # ------------------------------------------------------------------ public helpers

    @property
    def device(self) -> torch.device:
        return torch.device(self.accelerator.device)

    @property
    def is_main_process(self) -> bool:
        return bool(self.accelerator.is_main_process)

    @property
    def checkpoint_dir(self) -> Path | None:
        return None if self.output_dir is None else self.output_dir / "checkpoints"

    @property
    def at_epoch_end(self) -> bool:
        """Whether the current epoch has run all its batches."""
        return self._state.batch >= self._batches_per_epoch

    def relabel(self, labels: Sequence[int] | np.ndarray) -> None:
        """Train on ``labels`` (one class index per row of the training data, in its order)
        instead of its ``label`` column, from the coming epoch on: for self-training whose
        pseudo-labels are recomputed every epoch. Call it from a callback's ``on_epoch_start``
        (or ``on_train_start``); on a resume mid-epoch ``on_epoch_start`` runs again and must
        give that epoch's labels again (keep them in the callback's state). Single-label
        tasks only; refused outside :meth:`fit` and during an epoch."""
        if self._view is None or self._in_epoch:
            raise ConfigError(
                "Trainer.relabel is for the time between epochs of fit(): call it from a "
                "callback's on_train_start or on_epoch_start"
            )
        if self.task.multi_label:
            raise ConfigError("Trainer.relabel takes one class index per row: single-label only")
        values = np.asarray(labels)
        if values.shape != (len(self._view),) or values.dtype.kind not in "iu":
            raise DataError(
                f"Trainer.relabel needs one integer label per training row ({len(self._view)}), "
                f"got an array of shape {values.shape} and dtype {values.dtype}"
            )
        bad = values[(values < 0) | (values >= self.task.num_labels)]
        if bad.size:
            raise DataError(
                f"Trainer.relabel: label {int(bad[0])} is outside the label space "
                f"0..{self.task.num_labels - 1}"
            )
        self._view.labels = values.astype(np.int64)

    def trainable_names(self) -> list[str]:
        return [n for n, p in self.model.named_parameters() if p.requires_grad]

    def set_trainable(self, params_or_predicate: Iterable[nn.Parameter] | ParamPredicate) -> None:
        """Make exactly the given parameters (or those where ``predicate(name, param)`` is true)
        trainable and freeze the rest; call it between epochs (freeze schedules).

        Under several processes, DistributedDataParallel only synchronises the gradients of
        parameters that required grad when it was built, so when the trainable set changes the
        model is wrapped again in a new DDP (the parameters are the same objects, so the
        optimiser and its state are unaffected). Frozen parameters have their gradients cleared:
        the optimisers skip them, so their weights and optimiser state stay as they are."""
        if callable(params_or_predicate):
            predicate = params_or_predicate
            wanted = {n for n, p in self.model.named_parameters() if predicate(n, p)}
        else:
            ids = {id(p) for p in params_or_predicate}
            wanted = {n for n, p in self.model.named_parameters() if id(p) in ids}
        self._apply_trainable(wanted)

    def _apply_trainable(self, wanted: set[str]) -> None:
        before = set(self.trainable_names())
        for name, param in self.model.named_parameters():
            param.requires_grad_(name in wanted)
            if name not in wanted:
                param.grad = None
        if before != wanted and isinstance(
            self._wrapped, torch.nn.parallel.DistributedDataParallel
        ):
            self._rewrap_ddp()

    def _rewrap_ddp(self) -> None:
        if not any(p.requires_grad for p in self.model.parameters()):
            raise ConfigError("set_trainable: no parameter is left trainable")
        device = self.accelerator.device
        ids = [device.index] if device.type == "cuda" else None
        self._wrapped = torch.nn.parallel.DistributedDataParallel(
            self.model, device_ids=ids, output_device=ids[0] if ids else None
        )

    # ------------------------------------------------------------------ fit

    def fit(
        self,
        train: Any,
        validation: Any | None,
        preprocessor: Preprocessor,
        *,
        resume: bool = False,
    ) -> FitResult:
        """Train on ``train``; choose the best epoch and stop early on ``validation`` only.

        ``resume=True`` continues from the newest checkpoint in ``output_dir`` (starting fresh
        when there is none). The model holds the best weights when this returns."""
        cfg = self.config
        start_time = time.perf_counter()
        self._check_dataset(train, preprocessor, "training")
        if validation is not None:
            self._check_dataset(validation, preprocessor, "validation")
        elif cfg.early_stopping_patience is not None:
            raise ConfigError(
                "TrainConfig.early_stopping_patience needs a validation split (got none); "
                "stopping on training data would choose on the data that is reported"
            )
        if resume and self.output_dir is None:
            raise ConfigError("fit(resume=True) needs an output_dir holding checkpoints")
        self._prepare_output(resume)

        acc = self.accelerator
        num_processes, rank = acc.num_processes, acc.process_index
        plan = BatchPlan(
            len(train),
            cfg.batch_size,
            seed=cfg.seed,
            shuffle=True,
            num_processes=num_processes,
            weights=self._sample_weights(train),
            lengths=self._lengths(train, preprocessor),
        )
        self._batches_per_epoch = len(plan)
        if self._batches_per_epoch == 0:
            raise DataError(
                f"the training dataset has {len(train)} examples, fewer than two for each of "
                f"the {num_processes} process(es): nothing to train on"
            )
        steps_per_epoch = math.ceil(self._batches_per_epoch / cfg.grad_accum_steps)
        total_steps = steps_per_epoch * cfg.epochs
        warmup = (
            cfg.warmup_steps
            if cfg.warmup_steps is not None
            else round(cfg.warmup_ratio * total_steps)
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer.optimizer, lr_lambda(cfg.scheduler, total_steps, warmup)
        )
        self._fingerprints = self._fingerprints_of(train, preprocessor, num_processes)

        from accelerate.utils import set_seed

        set_seed(cfg.seed)
        state = self._state = _RunState()
        resumed_from: Path | None = None
        if resume:
            resumed_from = self._resume(state)
        self.global_step, self.epoch = state.global_step, state.epoch

        previous_precision = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision(str(self.speed["matmul_precision"].value))
        self.metrics_log.open(self, resumed_from is not None)
        self._init_trackers()
        try:
            view = self._view = DatasetView(train, [*preprocessor.output_columns, "label"])
            for callback in self.callbacks:
                callback.on_train_start(self)
            collate = make_collate(
                preprocessor,
                train=True,
                with_labels=True,
                multi_hot=multi_hot_width(train, self._num_labels_if_multi()),
            )
            augment_seed = derive_seed(cfg.seed, "augment")
            while state.epoch < cfg.epochs and not state.stopped_early:
                epoch = state.epoch
                self.epoch = epoch
                if state.batch == 0:
                    state.loss_sum, state.loss_count = 0.0, 0.0
                # training mode first, so that a callback may put parts back in eval mode
                # (frozen batch-norm layers keep their statistics)
                self._wrapped.train()
                for callback in self.callbacks:
                    callback.on_epoch_start(self, epoch)
                self._in_epoch = True
                self._train_epoch(state, plan, view, collate, augment_seed, rank, num_processes)
                self._in_epoch = False
                self._end_epoch(state, validation, preprocessor)
            self.wait_for_checkpoints()
        finally:
            if self._writes.pending:  # interrupted or failed: finish (or clean) the write
                with contextlib.suppress(Exception):
                    self.wait_for_checkpoints()
            self._view, self._in_epoch = None, False
            torch.set_float32_matmul_precision(previous_precision)
            self.metrics_log.close()
            if self.trackers_on:
                acc.end_training()

        elapsed = time.perf_counter() - start_time
        best = self.best_model
        result = FitResult(
            history=state.history,
            best_epoch=best.best_epoch,
            best_score=best.best_score,
            monitor=self.monitor.name,
            stopped_early=state.stopped_early,
            global_step=state.global_step,
            checkpoint_dir=self.checkpoint_dir,
            resumed_from=resumed_from,
            elapsed_s=elapsed,
            train_examples_per_s=(
                len(train) * len(state.history) / elapsed if elapsed > 0 else 0.0
            ),
            selection=best.report(),
            speed={name: choice.to_json() for name, choice in self.speed.items()},
            checkpoint_s=self.checkpoint_seconds,
            checkpoint_write_s=self._writes.seconds,
            checkpoint_wait_s=self.checkpoint_wait_seconds,
        )
        for callback in self.callbacks:
            callback.on_train_end(self, result)
        return result

    def _num_labels_if_multi(self) -> int | None:
        return self.task.num_labels if self.task.multi_label else None

    def _train_epoch(
        self,
        state: _RunState,
        plan: BatchPlan,
        view: DatasetView,
        collate: Callable[[Any], dict[str, torch.Tensor]],
        augment_seed: int,
        rank: int,
        num_processes: int,
    ) -> None:
        cfg, acc = self.config, self.accelerator
        epoch = state.epoch
        global_batches = plan.global_batches(epoch)
        n_batches = len(global_batches)
        sampler = _LocalBatches(plan, epoch, state.batch, rank, augment_seed)
        loader = torch.utils.data.DataLoader(
            view,
            batch_sampler=sampler,
            collate_fn=cast(Any, collate),
            num_workers=cfg.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator(),  # keeps the global RNG untouched (exact resume)
        )
        accum = cfg.grad_accum_steps
        window_sum = torch.zeros((), dtype=torch.float64)
        window_count = 0
        nonfinite = False
        progress = _progress(
            total=n_batches,
            initial=state.batch,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            enabled=cfg.progress and self.is_main_process,
        )
        try:
            for b, batch in enumerate(loader, start=state.batch):
                window = b // accum
                first, last = window * accum, min((window + 1) * accum, n_batches)
                window_examples = sum(len(global_batches[i]) for i in range(first, last))
                closes_window = b + 1 == last
                batch = to_device(batch, self.device, self.channels_last)
                labels = batch.pop("labels")
                sync = contextlib.nullcontext() if closes_window else acc.no_sync(self._wrapped)
                with sync:
                    logits = self._step_model(**batch)
                    data_loss = self.loss(logits, labels)
                    n_local = int(labels.shape[0])
                    loss = data_loss * (n_local * num_processes / window_examples)
                    if self.regularizer is not None:
                        loss = loss + self.regularizer(self.model) / (last - first)
                    local = data_loss.detach().double().cpu()
                    if num_processes == 1 and not torch.isfinite(local):
                        self._fail_nonfinite(state, b, float(local))
                    acc.backward(loss)
                window_sum += local * n_local
                window_count += n_local
                nonfinite = nonfinite or not bool(torch.isfinite(local))
                progress.update(1)
                if not closes_window:
                    continue
                stats = torch.stack(
                    [
                        window_sum,
                        torch.tensor(float(window_count), dtype=torch.float64),
                        torch.tensor(float(nonfinite), dtype=torch.float64),
                    ]
                )
                if num_processes > 1:
                    stats = acc.reduce(stats.to(self.device), reduction="sum").cpu()
                if stats[2] > 0:
                    self._fail_nonfinite(state, b, float("nan"))
                if cfg.max_grad_norm is not None:
                    acc.clip_grad_norm_(
                        [p for p in self.model.parameters() if p.requires_grad], cfg.max_grad_norm
                    )
                lr = self.optimizer.optimizer.param_groups[0]["lr"]
                self.optimizer.step()
                if self.scheduler is not None and not acc.optimizer_step_was_skipped:
                    self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                step_loss = float(stats[0] / stats[1])
                state.loss_sum += float(stats[0])
                state.loss_count += float(stats[1])
                state.global_step += 1
                state.batch = b + 1
                self.global_step = state.global_step
                window_sum = torch.zeros((), dtype=torch.float64)
                window_count, nonfinite = 0, False
                logs = {"epoch": epoch, "step": state.global_step, "loss": step_loss, "lr": lr}
                progress.set_postfix(loss=f"{step_loss:.4f}", refresh=False)
                for callback in self.callbacks:
                    callback.on_step_end(self, state.global_step, logs)
                if self.should_stop:
                    break
        finally:
            progress.close()

    def _end_epoch(
        self, state: _RunState, validation: Any | None, preprocessor: Preprocessor
    ) -> None:
        epoch = state.epoch
        entry: dict[str, float] = {
            "epoch": float(epoch),
            "train_loss": state.loss_sum / max(state.loss_count, 1.0),
            "lr": float(self.optimizer.optimizer.param_groups[0]["lr"]),
        }
        if validation is not None:
            logits, labels = self._predict(validation, preprocessor, desc="validation")
            assert labels is not None
            entry["val_loss"] = Monitor().value(self.task, logits, labels)
            if self.monitor.metric is not None:
                entry[self.monitor.history_key] = self.monitor.value(self.task, logits, labels)
        state.history.append(entry)
        state.epoch, state.batch = epoch + 1, 0  # the epoch is done: a resume starts the next
        for callback in self.callbacks:
            if isinstance(callback, Checkpointing):  # always last: it saves what came before
                state.stopped_early = self.should_stop and state.epoch < self.config.epochs
            callback.on_epoch_end(self, epoch, entry)
        state.stopped_early = self.should_stop and state.epoch < self.config.epochs

    def _multi_hot(self, dataset: Any) -> int | None:
        return multi_hot_width(dataset, self._num_labels_if_multi())

    def _sample_weights(self, train: Any) -> np.ndarray | None:
        if self.config.sampler != "balanced":
            return None
        if self.task.multi_label:
            raise ConfigError(
                "TrainConfig.sampler 'balanced' draws each class equally often, which needs "
                "single-label data; this task is multi-label"
            )
        return balanced_weights(train["label"])

    def _lengths(self, train: Any, preprocessor: Preprocessor) -> np.ndarray | None:
        column = preprocessor.length_column
        if not self.config.group_by_length or column is None:
            return None
        if column not in train.column_names:
            raise DataError(
                f"the preprocessor groups batches by its {column!r} column, which the training "
                f"data lacks (it has {train.column_names}); was it prepared with this backbone?"
            )
        return np.asarray(train[column], dtype=np.int64)

    def _fail_nonfinite(self, state: _RunState, batch: int, value: float) -> None:
        self.wait_for_checkpoints()  # the last good checkpoint may still be being written
        last = ckpt.latest_checkpoint(self.checkpoint_dir) if self.checkpoint_dir else None
        kept = (
            f"the last good checkpoint {last} is kept (resume from it with a lower lr)"
            if last is not None
            else "no checkpoint was written yet"
        )
        raise TrainingError(
            f"the training loss became {value} at epoch {state.epoch}, step "
            f"{state.global_step + 1} (batch {batch} of the epoch); training stopped and {kept}. "
            "Lower the learning rate, set max_grad_norm, or check the data for NaN values"
        )

    # ------------------------------------------------------------------ predict

    def predict(
        self, dataset: Any, preprocessor: Preprocessor
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits for every row of ``dataset`` in order (and its labels when it has a ``label``
        column), through the one prediction function. Several processes each take a share;
        every process gets the whole result."""
        return self._predict(dataset, preprocessor, desc="predict")

    def _predict(
        self, dataset: Any, preprocessor: Preprocessor, *, desc: str
    ) -> tuple[np.ndarray, np.ndarray | None]:
        cfg = self.config
        out = predict(
            self.model,
            dataset,
            preprocessor,
            batch_size=cfg.eval_batch_size or cfg.batch_size,
            accelerator=self.accelerator,
            num_labels=self._num_labels_if_multi(),
            num_workers=cfg.num_workers,
            progress=cfg.progress,
            desc=desc,
        )
        return out.outputs, out.labels

    # ------------------------------------------------------------------ checks and setup

    def _check_dataset(
        self, dataset: Any, preprocessor: Preprocessor, what: str, *, need_labels: bool = True
    ) -> None:
        check_prepared(dataset, preprocessor, what, labels=need_labels)
        if need_labels and not self.task.multi_label:
            labels = np.asarray(dataset["label"])
            if labels.ndim == 1 and labels.dtype.kind in "iu":
                bad = labels[(labels < 0) | (labels >= self.task.num_labels)]
                if bad.size:
                    raise DataError(
                        f"the {what} dataset has label {int(bad[0])} outside the label space "
                        f"0..{self.task.num_labels - 1} ({self.task.label_names})"
                    )

    def _param_groups(
        self, param_groups: Sequence[Mapping[str, Any]] | None
    ) -> list[dict[str, Any]]:
        cfg = self.config
        if param_groups is None:
            return default_param_groups(self.model, cfg.weight_decay)
        known = {id(p): n for n, p in self.model.named_parameters()}
        seen: dict[int, str] = {}
        groups: list[dict[str, Any]] = []
        for i, group in enumerate(param_groups):
            name = str(group.get("name", f"group{i}"))
            extra = set(group) - {"params", "lr", "weight_decay", "name", "momentum"}
            if extra:
                raise ConfigError(f"param group {name!r}: unknown key(s) {sorted(extra)}")
            params = list(group.get("params", ()))
            if not params:
                raise ConfigError(f"param group {name!r} has no parameters")
            for p in params:
                if id(p) not in known:
                    raise ConfigError(f"param group {name!r} holds a parameter not in the model")
                if id(p) in seen:
                    raise ConfigError(
                        f"parameter {known[id(p)]!r} is in param groups {seen[id(p)]!r} and "
                        f"{name!r}; each parameter may be in one group only"
                    )
                seen[id(p)] = name
            out = {
                "name": name,
                "params": params,
                "lr": float(group.get("lr", cfg.lr)),
                "weight_decay": float(group.get("weight_decay", cfg.weight_decay)),
            }
            if "momentum" in group:
                out["momentum"] = float(group["momentum"])
            groups.append(out)
        return groups

    def _prepare_output(self, resume: bool) -> None:
        if self.output_dir is None:
            return
        directory = self.checkpoint_dir
        assert directory is not None
        try:
            directory.mkdir(parents=True, exist_ok=True)
            probe = directory / f".write-test-{os.getpid()}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise ArtifactError(
                f"the output folder {self.output_dir} is not writable ({exc}); choose another "
                "output_dir or fix its permissions (nothing was trained or changed)"
            ) from exc
        if not resume and ckpt.list_checkpoints(directory):
            raise ConfigError(
                f"{directory} already holds checkpoints of an earlier run; pass resume=True to "
                "continue it, or choose another output_dir (nothing was changed)"
            )
        if self.is_main_process:
            ckpt.remove_temporary(directory)  # left by a run killed while writing
        self.accelerator.wait_for_everyone()

    def _fingerprints_of(
        self, train: Any, preprocessor: Preprocessor, num_processes: int
    ) -> dict[str, Any]:
        shapes = {n: list(p.shape) for n, p in self.model.state_dict().items()}
        return {
            "model": config_fingerprint(shapes),
            "task": config_fingerprint(
                {"name": self.task.name, "labels": self.task.label_names, **self.task.config()}
            ),
            "preprocessor": preprocessor.fingerprint(),
            "train_data": config_fingerprint(
                {"rows": len(train), "fingerprint": getattr(train, "_fingerprint", None)}
            ),
            "num_processes": num_processes,
        }

    # ------------------------------------------------------------------ checkpoints

    def _callback_states(self) -> dict[str, Any]:
        states: dict[str, Any] = {}
        for callback in self.callbacks:
            key = getattr(callback, "state_key", None)  # duck-typed callbacks keep none
            if key is None:
                continue
            if key in states:
                raise ConfigError(
                    f"two callbacks keep their state under {key!r} "
                    f"({type(callback).__name__}); give one another state_key"
                )
            states[key] = callback.state_dict()
        return states

    def save_checkpoint(self, *, end_of_epoch: bool) -> None:
        """Write a checkpoint of the whole run (weights, optimiser, scheduler, RNG, the
        position in the data and every callback's state); the newest
        ``config.keep_checkpoints`` are kept.

        The tensors are copied here, on the training thread, and written to disk in the
        background while training goes on (the small files are written at once); the next
        checkpoint, the end of :meth:`fit` and an interruption wait for the write, and its
        error, if any, is raised there (:class:`FitResult` reports the seconds each part
        took)."""
        directory = self.checkpoint_dir
        if directory is None:
            return
        started = time.perf_counter()
        self._writes.wait()  # one checkpoint at a time; a failed write is raised here
        state = self._state
        acc = self.accelerator
        suffix = "-end" if end_of_epoch else ""
        final = directory / f"step-{state.global_step:08d}{suffix}"
        writer = ckpt.CheckpointWriter(final)
        callback_states = self._callback_states()
        rng_json, rng_tensors = ckpt.rng_to_files(capture_rng())
        failure = (
            f"cannot write checkpoint {final}; the earlier checkpoints in {directory} are "
            "intact. Free space or choose another output_dir"
        )
        try:
            if acc.is_main_process:
                writer.__enter__()
                model, aliases = ckpt.model_tensors(self.model)
                model = ckpt.copied(model)
                opt_tensors, opt_rest = ckpt.optimizer_tensors(self.optimizer.state_dict())
                opt_tensors = ckpt.copied(opt_tensors)
                writer.write_json("optimizer.json", opt_rest)
                assert self.scheduler is not None
                sched = dict(self.scheduler.state_dict())
                sched.pop("lr_lambdas", None)
                writer.write_json("scheduler.json", sched)
                if acc.scaler is not None:
                    writer.write_json("scaler.json", acc.scaler.state_dict())
                writer.write_json(
                    "trainer.json",
                    {
                        "state": dataclasses.asdict(state),
                        "config": self.config.to_json(),
                        "fingerprints": dict(self._fingerprints),
                        "trainable": self.trainable_names(),
                        "callbacks": callback_states,
                    },
                )
            acc.wait_for_everyone()
            writer.write_json(f"rng-{acc.process_index}.json", rng_json)
            writer.write_tensors(f"rng-{acc.process_index}.safetensors", rng_tensors, {})
            acc.wait_for_everyone()  # every process's files are in: the main one may commit
        except (OSError, ckpt.SafetensorError) as exc:
            if acc.is_main_process:
                writer.__exit__(type(exc), exc, None)
            raise ArtifactError(f"{failure} ({exc})") from exc
        except BaseException as exc:  # interrupted (SIGINT, SIGTERM): no half-written folder
            if acc.is_main_process:
                writer.__exit__(type(exc), exc, None)
            raise
        if acc.is_main_process:
            extra = {"global_step": state.global_step, "epoch": state.epoch}
            keep = self.config.keep_checkpoints

            def write() -> None:
                try:
                    ckpt.write_model_tensors(writer, "model.safetensors", model, aliases)
                    writer.write_tensors("optimizer.safetensors", opt_tensors, {})
                    writer.commit(extra)
                    ckpt.prune_checkpoints(directory, keep)
                except (OSError, ckpt.SafetensorError) as exc:
                    writer.__exit__(type(exc), exc, None)
                    raise ArtifactError(f"{failure} ({exc})") from exc
                except BaseException as exc:
                    writer.__exit__(type(exc), exc, None)
                    raise

            self._writes.submit(write)
        self.checkpoint_seconds += time.perf_counter() - started

    def wait_for_checkpoints(self) -> None:
        """Block until the checkpoint being written in the background is on disk (its error
        raised here)."""
        started = time.perf_counter()
        try:
            self._writes.wait()
        finally:
            self.checkpoint_wait_seconds += time.perf_counter() - started

    def _resume(self, state: _RunState) -> Path | None:
        directory = self.checkpoint_dir
        assert directory is not None
        path = ckpt.latest_checkpoint(directory)
        if path is None:
            return None
        ckpt.verify_checkpoint(path)
        saved = ckpt.load_json(path / "trainer.json")
        differences = _differences(
            saved["config"], self.config.to_json(), saved["fingerprints"], self._fingerprints
        )
        if differences:
            raise ConfigError(
                f"cannot resume from {path}: " + "; ".join(differences) + ". Resume with the "
                "original settings, or start a new run in another output_dir"
            )
        acc = self.accelerator
        ckpt.load_model_file(path / "model.safetensors", self.model)
        self._apply_trainable(set(saved["trainable"]))
        self.optimizer.load_state_dict(
            ckpt.load_optimizer_state(path / "optimizer.safetensors", path / "optimizer.json")
        )
        assert self.scheduler is not None
        sched = ckpt.load_json(path / "scheduler.json")
        sched["lr_lambdas"] = [None] * len(self.scheduler.lr_lambdas)
        self.scheduler.load_state_dict(sched)
        if acc.scaler is not None and (path / "scaler.json").is_file():
            acc.scaler.load_state_dict(ckpt.load_json(path / "scaler.json"))
        known = {f.name for f in dataclasses.fields(_RunState)}
        for key, value in saved["state"].items():
            if key in known:
                setattr(state, key, value)
        states = saved.get("callbacks", {})
        for callback in self.callbacks:
            key = getattr(callback, "state_key", None)
            if key is not None and key in states:
                callback.load_state_dict(states[key])
        restore_rng(
            ckpt.load_rng(
                path / f"rng-{acc.process_index}.json",
                path / f"rng-{acc.process_index}.safetensors",
            )
        )
        return path

    # ------------------------------------------------------------------ trackers

    def _init_trackers(self) -> None:
        self.trackers_on = bool(self.accelerator.log_with)
        if self.trackers_on:
            flat = {
                k: v for k, v in self.config.to_json().items() if isinstance(v, int | float | str)
            }
            init: dict[str, dict[str, Any]] = {}
            if "wandb" in self.config.trackers and self.output_dir is not None:
                # offline unless WANDB_MODE says otherwise; its files in the run folder
                mode = os.environ.get("WANDB_MODE", "offline")
                init["wandb"] = {"mode": mode, "dir": str(self.output_dir)}
            self.accelerator.init_trackers("lepton", config=flat, init_kwargs=init)


# ============================================================================ helpers


def _differences(
    saved_config: Mapping[str, Any],
    config: Mapping[str, Any],
    saved_prints: Mapping[str, Any],
    prints: Mapping[str, Any],
) -> list[str]:
    out = []
    resumable = set(TrainConfig.resumable_fields())
    for key in sorted(set(saved_config) | set(config)):
        if key in resumable:
            continue
        if saved_config.get(key) != config.get(key):
            out.append(
                f"config {key} was {saved_config.get(key)!r} in the checkpoint, now "
                f"{config.get(key)!r}"
            )
    labels = {
        "model": "the model architecture",
        "task": "the task or its label space",
        "preprocessor": "the preprocessing",
        "train_data": "the training data",
        "num_processes": "the number of processes",
    }
    for key, what in labels.items():
        if saved_prints.get(key) != prints.get(key):
            out.append(f"{what} differs ({saved_prints.get(key)} then, {prints.get(key)} now)")
    return out


def _make_accelerator(config: TrainConfig, output_dir: Path | None) -> Accelerator:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import is_mlflow_available, is_tensorboard_available, is_wandb_available

    precision = config.mixed_precision
    if precision == "auto":
        cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        precision = "bf16" if cuda_bf16 else "no"
    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision") not in (None, precision):
        # One process may train several models with different precisions (one after the
        # other); Accelerate keeps the precision in a process-wide state, so start it afresh.
        AcceleratorState._reset_state()
    log_with: list[str] = []
    if output_dir is not None:
        wanted = ("tensorboard", "mlflow") if config.trackers == "auto" else config.trackers
        available = {
            "tensorboard": is_tensorboard_available(),
            "mlflow": is_mlflow_available(),
            "wandb": is_wandb_available(),
        }
        log_with = [t for t in wanted if available[t]]
        if config.trackers != "auto" and len(log_with) < len(wanted):
            missing = [t for t in wanted if not available[t]]
            raise ConfigError(
                f"TrainConfig.trackers {missing} not installed: pip install {' '.join(missing)}"
            )
    leave_process_group_at_exit()  # the Accelerator starts the process group
    try:
        return Accelerator(
            mixed_precision=precision,
            log_with=log_with or None,
            project_dir=str(output_dir) if output_dir is not None else None,
        )
    except ValueError as exc:
        raise ConfigError(
            f"TrainConfig.mixed_precision {config.mixed_precision!r} is not usable here: {exc}"
        ) from exc


def _check_monitor(config: TrainConfig, monitor: Monitor | None) -> Monitor:
    """The resolved monitor of ``config.monitor`` (``loss`` needs none resolved)."""
    mode = None if config.monitor_mode == "auto" else config.monitor_mode
    if monitor is None:
        if config.monitor != "loss":
            raise ConfigError(
                f"TrainConfig.monitor {config.monitor!r} names a metric: pass "
                "Trainer(monitor=Monitor(Metric(lp.get_metric(name)))) (the registered metric's "
                "spec says whether higher is better), or use lepton_platform.transfer"
            )
        return Monitor(None, mode)
    if monitor.name != config.monitor:
        raise ConfigError(
            f"the monitor {monitor.name!r} given to the Trainer is not TrainConfig.monitor "
            f"{config.monitor!r}"
        )
    return Monitor(monitor.metric, mode) if mode is not None else monitor


def _build_optimizer(config: TrainConfig, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    try:  # the fused kernel is a few percent faster and exact; not every device has it
        return torch.optim.AdamW(groups, lr=config.lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(groups, lr=config.lr)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(*, total: int, initial: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True)
