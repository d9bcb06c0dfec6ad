"""The fine-tune engine: one training loop on Hugging Face Accelerate for every domain.

It runs on CPU, one GPU, or several processes and machines through ``accelerate launch``, with
mixed precision where the device has it, gradient accumulation and clipping, AdamW or SGD,
constant, linear or cosine schedules with warm-up, parameter groups with their own learning
rates, early stopping and best-model choice on the validation split only, atomic checkpoints
and exact resume. Example::

    from lepton_platform.engine.finetune import TrainConfig, Trainer

    config = TrainConfig(epochs=5, batch_size=32, lr=3e-4, early_stopping_patience=2)
    trainer = Trainer(model, task, config, output_dir="runs/exp1")
    result = trainer.fit(train_ds, validation_ds, preprocessor)
    logits, labels = trainer.predict(test_ds, preprocessor)

The data order of an epoch depends only on ``(seed, epoch)``; augmentation is seeded per batch;
checkpoints hold the RNG states and the position in the data. So two runs with one seed agree
exactly on CPU, and a run killed at any moment and resumed ends with the same weights as one
that was never interrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, cast

import numpy as np
import torch
from torch import nn

from lepton_platform.engine import checkpoint as ckpt
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
from lepton_platform.errors import ArtifactError, ConfigError, DataError, TrainingError
from lepton_platform.models import Preprocessor, TransferModel, config_fingerprint
from lepton_platform.tasks import Task

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = ["Callback", "FitResult", "TrainConfig", "Trainer"]

ParamPredicate = Callable[[str, nn.Parameter], bool]

#: Config fields that may change between a run and its resume (they do not change the result).
RESUMABLE_CHANGES = frozenset(
    {
        "progress",
        "log_every_steps",
        "num_workers",
        "keep_checkpoints",
        "checkpoint_every_steps",
        "trackers",
    }
)


# ============================================================================ configuration


@dataclass(kw_only=True)
class TrainConfig:
    """How to train. Every field is checked when the config is built; a bad value raises
    :class:`ConfigError` naming the field.

    ``batch_size`` is the global batch (split over processes); ``grad_accum_steps`` batches make
    one optimiser step. ``warmup_steps`` wins over ``warmup_ratio`` (of all optimiser steps).
    ``mixed_precision="auto"`` means bf16 on a GPU that supports it, otherwise full precision.
    ``matmul_precision`` is passed to :func:`torch.set_float32_matmul_precision` during
    training ("medium" lets fp32 matrix products use bf16 internally: faster, slightly less
    exact). ``channels_last`` stores 4-d weights and inputs channels-last (faster convolutions).
    ``monitor`` is ``"loss"`` (validation loss) or a metric name from the evaluate engine;
    ``monitor_mode="auto"`` minimises the loss and maximises metrics. ``trackers="auto"`` logs
    to TensorBoard and MLflow when they are installed and ``output_dir`` is set; ``()`` turns
    them off. ``sampler`` is ``"shuffle"`` (each example once per epoch) or ``"balanced"``
    (drawn with replacement, each class equally often: imbalanced single-label data).
    ``group_by_length`` batches examples of similar length together when the preprocessor
    names a ``length_column`` (text, speech: dynamic padding then pads little).
    """

    epochs: int = 3
    batch_size: int = 32
    eval_batch_size: int | None = None
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    scheduler: Literal["constant", "linear", "cosine"] = "linear"
    warmup_ratio: float = 0.0
    warmup_steps: int | None = None
    grad_accum_steps: int = 1
    max_grad_norm: float | None = 1.0
    mixed_precision: Literal["no", "fp16", "bf16", "auto"] = "no"
    matmul_precision: Literal["highest", "high", "medium"] = "highest"
    channels_last: bool = False
    early_stopping_patience: int | None = None
    monitor: str = "loss"
    monitor_mode: Literal["auto", "min", "max"] = "auto"
    seed: int = 0
    checkpoint_every_steps: int | None = None
    keep_checkpoints: int | None = 2
    num_workers: int = 0
    log_every_steps: int = 10
    progress: bool = True
    trackers: str | tuple[str, ...] = "auto"
    sampler: Literal["shuffle", "balanced"] = "shuffle"
    group_by_length: bool = True

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"TrainConfig.{name}: {why}, got {getattr(self, name)!r}")

        def positive_int(name: str, allow_none: bool = False) -> None:
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(name, "must be a positive integer")

        def non_negative(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad(name, "must be a number")
            if not math.isfinite(value) or value < 0:
                raise bad(name, "must be a finite number >= 0")

        def choice(name: str, options: Sequence[str]) -> None:
            if getattr(self, name) not in options:
                raise bad(name, f"must be one of {', '.join(map(repr, options))}")

        for name in ("epochs", "batch_size", "grad_accum_steps", "log_every_steps"):
            positive_int(name)
        for name in ("eval_batch_size", "checkpoint_every_steps", "keep_checkpoints"):
            positive_int(name, allow_none=True)
        if self.early_stopping_patience is not None:
            positive_int("early_stopping_patience")
        for name in ("lr", "weight_decay", "momentum", "warmup_ratio"):
            non_negative(name)
        if self.lr == 0:
            raise bad("lr", "must be > 0")
        if self.warmup_ratio >= 1:
            raise bad("warmup_ratio", "must be in [0, 1)")
        if self.warmup_steps is not None and (
            isinstance(self.warmup_steps, bool)
            or not isinstance(self.warmup_steps, int)
            or self.warmup_steps < 0
        ):
            raise bad("warmup_steps", "must be an integer >= 0 or None")
        if self.max_grad_norm is not None:
            non_negative("max_grad_norm")
            if self.max_grad_norm == 0:
                raise bad("max_grad_norm", "must be > 0 or None (no clipping)")
        choice("optimizer", ("adamw", "sgd"))
        choice("scheduler", ("constant", "linear", "cosine"))
        choice("mixed_precision", ("no", "fp16", "bf16", "auto"))
        choice("matmul_precision", ("highest", "high", "medium"))
        choice("monitor_mode", ("auto", "min", "max"))
        if not isinstance(self.monitor, str) or not self.monitor:
            raise bad("monitor", "must be 'loss' or a metric name")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise bad("seed", "must be an integer >= 0")
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int):
            raise bad("num_workers", "must be an integer >= 0")
        if self.num_workers < 0:
            raise bad("num_workers", "must be an integer >= 0")
        if isinstance(self.trackers, str):
            if self.trackers != "auto":
                raise bad("trackers", "must be 'auto' or a tuple of 'tensorboard', 'mlflow'")
        else:
            self.trackers = tuple(self.trackers)
            unknown = [t for t in self.trackers if t not in ("tensorboard", "mlflow")]
            if unknown:
                raise bad("trackers", f"unknown tracker(s) {unknown}; use 'tensorboard', 'mlflow'")
        if self.sampler not in ("shuffle", "balanced"):
            raise bad("sampler", "must be 'shuffle' or 'balanced'")

    @property
    def mode(self) -> Literal["min", "max"]:
        """Whether a smaller or larger monitored value is better."""
        if self.monitor_mode != "auto":
            return self.monitor_mode
        return "min" if self.monitor == "loss" or self.monitor.endswith("loss") else "max"

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["trackers"] = (
            list(self.trackers) if isinstance(self.trackers, tuple) else self.trackers
        )
        return data


# ============================================================================ callbacks, result


class Callback:
    """Hooks into the loop. Freeze schedules, custom logging and stopping rules subclass it.

    On resume from a mid-epoch checkpoint, ``on_epoch_start`` is called again for that epoch,
    so it must depend only on the epoch (which is what a schedule does)."""

    def on_train_start(self, trainer: Trainer) -> None:
        """Before the first step (also after a resume)."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before the first batch of ``epoch`` (0-based)."""

    def on_step_end(self, trainer: Trainer, step: int, logs: Mapping[str, float]) -> None:
        """After optimiser step ``step`` (1-based, counted over the whole run)."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: Mapping[str, float]) -> None:
        """After validation of ``epoch``; ``logs`` is that epoch's history entry."""

    def on_train_end(self, trainer: Trainer, result: FitResult) -> None:
        """After the best weights are back in the model."""


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` did. ``history`` has one entry per epoch: ``epoch``,
    ``train_loss``, ``lr`` and, with a validation split, ``val_loss`` and ``val_<monitor>``."""

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

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["checkpoint_dir"] = None if self.checkpoint_dir is None else str(self.checkpoint_dir)
        data["resumed_from"] = None if self.resumed_from is None else str(self.resumed_from)
        return data


@dataclass
class _RunState:
    """Everything besides tensors that a checkpoint must hold to continue exactly."""

    epoch: int = 0
    batch: int = 0
    global_step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_score: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    loss_sum: float = 0.0
    loss_count: float = 0.0
    metrics_offset: int = 0


# ============================================================================ trainer


class Trainer:
    """Trains a :class:`TransferModel` for a :class:`Task`.

    ``param_groups``: torch-style dicts with ``params`` and optional ``lr``, ``weight_decay``
    and ``name`` (default: every parameter, no weight decay on biases and normalisation
    weights). ``regularizer(model)`` returns a scalar added to each step's loss (L2-SP).
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
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise ConfigError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config = config
        self.task = task
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.regularizer = regularizer
        self.callbacks = list(callbacks)
        self.should_stop = False
        self.accelerator = _make_accelerator(config, self.output_dir)
        if config.batch_size % self.accelerator.num_processes:
            raise ConfigError(
                f"TrainConfig.batch_size ({config.batch_size}) is the global batch; it must be "
                f"divisible by the number of processes ({self.accelerator.num_processes})"
            )
        model.to(self.accelerator.device)
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        groups = self._param_groups(param_groups)
        raw_optimizer = _build_optimizer(config, groups, self.accelerator.device)
        self._wrapped: nn.Module = self.accelerator.prepare_model(model)
        self.optimizer = self.accelerator.prepare_optimizer(raw_optimizer)
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.global_step = 0
        self.epoch = 0
        self._best_in_memory: dict[str, torch.Tensor] | None = None
        self._log: IO[str] | None = None

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
        batches_per_epoch = len(plan)
        if batches_per_epoch == 0:
            raise DataError(
                f"the training dataset has {len(train)} examples, fewer than the "
                f"{num_processes} processes: nothing to train on"
            )
        steps_per_epoch = math.ceil(batches_per_epoch / cfg.grad_accum_steps)
        total_steps = steps_per_epoch * cfg.epochs
        warmup = (
            cfg.warmup_steps
            if cfg.warmup_steps is not None
            else round(cfg.warmup_ratio * total_steps)
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer.optimizer, lr_lambda(cfg.scheduler, total_steps, warmup)
        )
        fingerprints = self._fingerprints(train, preprocessor, num_processes)

        from accelerate.utils import set_seed

        set_seed(cfg.seed)
        state = _RunState()
        resumed_from: Path | None = None
        if resume:
            resumed_from = self._resume(state, fingerprints)
        self.global_step, self.epoch = state.global_step, state.epoch

        previous_precision = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision(cfg.matmul_precision)
        self._open_log(state, resumed_from is not None)
        self._init_trackers()
        try:
            for callback in self.callbacks:
                callback.on_train_start(self)
            view = DatasetView(train, [*preprocessor.output_columns, "label"])
            collate = make_collate(
                preprocessor, train=True, with_labels=True, multi_hot=self._multi_hot(train)
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
                self._train_epoch(
                    state, plan, view, collate, augment_seed, rank, num_processes, fingerprints
                )
                self._end_epoch(state, validation, preprocessor, fingerprints)
        finally:
            torch.set_float32_matmul_precision(previous_precision)
            if self._log is not None:
                self._log.close()
                self._log = None
            if self._trackers_on:
                acc.end_training()

        self._restore_best(state)
        elapsed = time.perf_counter() - start_time
        result = FitResult(
            history=state.history,
            best_epoch=state.best_epoch,
            best_score=state.best_score,
            monitor=cfg.monitor,
            stopped_early=state.stopped_early,
            global_step=state.global_step,
            checkpoint_dir=self.checkpoint_dir,
            resumed_from=resumed_from,
            elapsed_s=elapsed,
            train_examples_per_s=(
                len(train) * len(state.history) / elapsed if elapsed > 0 else 0.0
            ),
        )
        for callback in self.callbacks:
            callback.on_train_end(self, result)
        return result

    def _train_epoch(
        self,
        state: _RunState,
        plan: BatchPlan,
        view: DatasetView,
        collate: Callable[[Any], dict[str, torch.Tensor]],
        augment_seed: int,
        rank: int,
        num_processes: int,
        fingerprints: Mapping[str, Any],
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
                batch = _to_device(batch, self.device, cfg.channels_last)
                labels = batch.pop("labels")
                sync = contextlib.nullcontext() if closes_window else acc.no_sync(self._wrapped)
                with sync:
                    logits = self._wrapped(**batch)
                    data_loss = self.task.loss(logits, labels)
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
                if state.global_step % cfg.log_every_steps == 0:
                    self._write_log({"type": "step", **logs})
                    if self._trackers_on:
                        acc.log({"train/loss": step_loss, "lr": lr}, step=state.global_step)
                for callback in self.callbacks:
                    callback.on_step_end(self, state.global_step, logs)
                if (
                    cfg.checkpoint_every_steps
                    and state.global_step % cfg.checkpoint_every_steps == 0
                    and state.batch < n_batches
                ):
                    self._save_checkpoint(state, fingerprints, end_of_epoch=False)
                if self.should_stop:
                    break
        finally:
            progress.close()

    def _end_epoch(
        self,
        state: _RunState,
        validation: Any | None,
        preprocessor: Preprocessor,
        fingerprints: Mapping[str, Any],
    ) -> None:
        cfg = self.config
        epoch = state.epoch
        entry: dict[str, float] = {
            "epoch": float(epoch),
            "train_loss": state.loss_sum / max(state.loss_count, 1.0),
            "lr": float(self.optimizer.optimizer.param_groups[0]["lr"]),
        }
        score: float | None = None
        if validation is not None:
            logits, labels = self._predict(validation, preprocessor, desc="validation")
            assert labels is not None
            val_loss = float(self.task.loss(torch.from_numpy(logits), torch.from_numpy(labels)))
            entry["val_loss"] = val_loss
            if cfg.monitor == "loss":
                score = val_loss
            else:
                score = self._metric(logits, labels)
                entry[f"val_{cfg.monitor}"] = score
        improved = False
        if score is not None:
            if math.isnan(score):
                improved = False
            elif state.best_score is None:
                improved = True
            else:
                improved = (
                    score < state.best_score if cfg.mode == "min" else score > state.best_score
                )
        if validation is None:
            state.best_epoch = epoch  # without validation the last epoch is the one returned
        elif improved:
            state.best_score, state.best_epoch, state.bad_epochs = score, epoch, 0
            self._save_best(epoch)
        else:
            state.bad_epochs += 1
        state.history.append(entry)
        self._write_log({"type": "epoch", **entry})
        if self._trackers_on:
            self.accelerator.log(
                {f"epoch/{k}": v for k, v in entry.items() if k != "epoch"},
                step=state.global_step,
            )
        for callback in self.callbacks:
            callback.on_epoch_end(self, epoch, entry)
        state.epoch, state.batch = epoch + 1, 0
        patience = cfg.early_stopping_patience
        if (patience is not None and state.bad_epochs >= patience) or self.should_stop:
            state.stopped_early = state.epoch < cfg.epochs
        self._save_checkpoint(state, fingerprints, end_of_epoch=True)

    def _metric(self, logits: np.ndarray, labels: np.ndarray) -> float:
        from lepton_platform.engine.evaluate import compute_metrics, headline_key

        name = self.config.monitor
        values = compute_metrics(self.task, logits, labels, metrics=[name])
        key = headline_key(name)
        if key not in values:
            raise ConfigError(
                f"TrainConfig.monitor {name!r}: the evaluate engine returned "
                f"{sorted(values)}; choose a metric name or 'loss'"
            )
        return float(values[key])

    def _multi_hot(self, dataset: Any) -> int | None:
        """The width of the 0/1 vectors to build from each row's label indices: for a
        multi-label task reading a ``List(ClassLabel)`` label column (rows already holding 0/1
        vectors are used as they are)."""
        from lepton_platform.data import is_multi_label

        feature = dataset.features.get("label")
        return self.task.num_labels if self.task.multi_label and is_multi_label(feature) else None

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
        column). Several processes each take a share; every process gets the whole result."""
        self._check_dataset(dataset, preprocessor, "prediction", need_labels=False)
        return self._predict(dataset, preprocessor, desc="predict")

    @torch.no_grad()
    def _predict(
        self, dataset: Any, preprocessor: Preprocessor, *, desc: str
    ) -> tuple[np.ndarray, np.ndarray | None]:
        cfg, acc = self.config, self.accelerator
        with_labels = "label" in dataset.column_names
        columns = [*preprocessor.output_columns, *(["label"] if with_labels else [])]
        view = DatasetView(dataset, columns)
        n, num_processes = len(dataset), acc.num_processes
        share = math.ceil(n / num_processes)
        rows = list(range(acc.process_index * share, (acc.process_index + 1) * share))
        rows = [min(r, n - 1) for r in rows]  # pad the last share by repeating the last row
        batch_size = cfg.eval_batch_size or cfg.batch_size
        batches = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
        loader = torch.utils.data.DataLoader(
            view,
            batch_sampler=batches,
            collate_fn=cast(
                Any,
                make_collate(
                    preprocessor,
                    train=False,
                    with_labels=with_labels,
                    multi_hot=self._multi_hot(dataset),
                ),
            ),
            num_workers=cfg.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator(),
        )
        was_training = self.model.training
        self.model.eval()
        outputs: list[torch.Tensor] = []
        targets: list[torch.Tensor] = []
        bar = _progress(
            total=len(batches), initial=0, desc=desc, enabled=cfg.progress and acc.is_main_process
        )
        try:
            for batch in loader:
                batch = _to_device(batch, self.device, cfg.channels_last)
                labels = batch.pop("labels", None)
                outputs.append(self.model(**batch).float())
                if labels is not None:
                    targets.append(labels.to(self.device))
                bar.update(1)
        finally:
            bar.close()
            self.model.train(was_training)
        logits = torch.cat(outputs)
        label_tensor = torch.cat(targets) if with_labels else None
        if num_processes > 1:
            logits = acc.gather(logits)
            if label_tensor is not None:
                label_tensor = acc.gather(label_tensor)
        logits_np = logits[:n].cpu().numpy()
        labels_np = None if label_tensor is None else label_tensor[:n].cpu().numpy()
        return logits_np, labels_np

    # ------------------------------------------------------------------ checks and setup

    def _check_dataset(
        self, dataset: Any, preprocessor: Preprocessor, what: str, *, need_labels: bool = True
    ) -> None:
        columns = getattr(dataset, "column_names", None)
        if columns is None:
            raise DataError(
                f"the {what} data must be a datasets.Dataset, got {type(dataset).__name__}"
            )
        needed = [*preprocessor.output_columns, *(["label"] if need_labels else [])]
        missing = [c for c in needed if c not in columns]
        if missing:
            raise DataError(
                f"the {what} dataset lacks the column(s) {missing} (it has {columns}); run it "
                "through lepton_platform.data.prepare(dataset, preprocessor) first"
            )
        if len(dataset) == 0:
            raise DataError(f"the {what} dataset is empty")
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
            for stale in directory.glob(".tmp-*"):  # left by a run killed while writing
                import shutil

                shutil.rmtree(stale, ignore_errors=True)
        self.accelerator.wait_for_everyone()

    def _fingerprints(
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

    def _save_checkpoint(
        self, state: _RunState, fingerprints: Mapping[str, Any], *, end_of_epoch: bool
    ) -> None:
        directory = self.checkpoint_dir
        if directory is None:
            return
        acc = self.accelerator
        suffix = "-end" if end_of_epoch else ""
        final = directory / f"step-{state.global_step:08d}{suffix}"
        writer = ckpt.CheckpointWriter(final)
        if self._log is not None:
            self._log.flush()
            state.metrics_offset = self._log.tell()
        rng_json, rng_tensors = ckpt.rng_to_files(capture_rng())
        try:
            if acc.is_main_process:
                writer.__enter__()
                ckpt.save_model_file(writer, "model.safetensors", self.model)
                opt_tensors, opt_rest = ckpt.optimizer_tensors(self.optimizer.state_dict())
                writer.write_tensors("optimizer.safetensors", opt_tensors, {})
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
                        "fingerprints": dict(fingerprints),
                        "trainable": self.trainable_names(),
                    },
                )
            acc.wait_for_everyone()
            writer.write_json(f"rng-{acc.process_index}.json", rng_json)
            writer.write_tensors(f"rng-{acc.process_index}.safetensors", rng_tensors, {})
            acc.wait_for_everyone()
            if acc.is_main_process:
                writer.commit({"global_step": state.global_step, "epoch": state.epoch})
                ckpt.prune_checkpoints(directory, self.config.keep_checkpoints)
        except OSError as exc:
            if acc.is_main_process:
                writer.__exit__(type(exc), exc, None)
            raise ArtifactError(
                f"cannot write checkpoint {final} ({exc}); the earlier checkpoints in "
                f"{directory} are intact. Free space or choose another output_dir"
            ) from exc
        acc.wait_for_everyone()

    def _resume(self, state: _RunState, fingerprints: Mapping[str, Any]) -> Path | None:
        directory = self.checkpoint_dir
        assert directory is not None
        path = ckpt.latest_checkpoint(directory)
        if path is None:
            return None
        ckpt.verify_checkpoint(path)
        saved = ckpt.load_json(path / "trainer.json")
        differences = _differences(
            saved["config"], self.config.to_json(), saved["fingerprints"], dict(fingerprints)
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
        for key, value in saved["state"].items():
            setattr(state, key, value)
        restore_rng(
            ckpt.load_rng(
                path / f"rng-{acc.process_index}.json",
                path / f"rng-{acc.process_index}.safetensors",
            )
        )
        return path

    def _save_best(self, epoch: int) -> None:
        if self.checkpoint_dir is None:
            self._best_in_memory = {
                k: v.detach().clone() for k, v in self.model.state_dict().items()
            }
            return
        if self.accelerator.is_main_process:
            try:
                with ckpt.CheckpointWriter(self.checkpoint_dir / "best") as writer:
                    ckpt.save_model_file(writer, "model.safetensors", self.model)
                    writer.write_json("best.json", {"epoch": epoch})
                    writer.commit({"epoch": epoch})
            except OSError as exc:
                raise ArtifactError(
                    f"cannot write the best model to {self.checkpoint_dir / 'best'} ({exc})"
                ) from exc
        self.accelerator.wait_for_everyone()

    def _restore_best(self, state: _RunState) -> None:
        if state.best_score is None:  # no validation: the model already holds the last epoch
            return
        if self.checkpoint_dir is None:
            if self._best_in_memory is not None:
                self.model.load_state_dict(self._best_in_memory)
                self._best_in_memory = None
            return
        best = self.checkpoint_dir / "best"
        ckpt.verify_checkpoint(best)
        ckpt.load_model_file(best / "model.safetensors", self.model)

    # ------------------------------------------------------------------ logging

    _trackers_on = False

    def _open_log(self, state: _RunState, resumed: bool) -> None:
        if self.output_dir is None or not self.is_main_process:
            return
        path = self.output_dir / "metrics.jsonl"
        if resumed and path.exists():
            with path.open("r+") as handle:  # drop lines logged after the checkpoint
                handle.truncate(state.metrics_offset)
        elif path.exists():
            path.unlink()
        self._log = path.open("a")

    def _write_log(self, record: Mapping[str, Any]) -> None:
        if self._log is not None:
            self._log.write(json.dumps(dict(record)) + "\n")

    def _init_trackers(self) -> None:
        self._trackers_on = bool(self.accelerator.log_with)
        if self._trackers_on:
            flat = {
                k: v for k, v in self.config.to_json().items() if isinstance(v, int | float | str)
            }
            self.accelerator.init_trackers("lepton", config=flat)


# ============================================================================ helpers


def _differences(
    saved_config: Mapping[str, Any],
    config: Mapping[str, Any],
    saved_prints: Mapping[str, Any],
    prints: Mapping[str, Any],
) -> list[str]:
    out = []
    for key in sorted(set(saved_config) | set(config)):
        if key in RESUMABLE_CHANGES:
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
    from accelerate.utils import is_mlflow_available, is_tensorboard_available

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
        available = {"tensorboard": is_tensorboard_available(), "mlflow": is_mlflow_available()}
        log_with = [t for t in wanted if available[t]]
        if config.trackers != "auto" and len(log_with) < len(wanted):
            missing = [t for t in wanted if not available[t]]
            raise ConfigError(
                f"TrainConfig.trackers {missing} not installed: pip install {' '.join(missing)}"
            )
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


def _build_optimizer(
    config: TrainConfig, groups: list[dict[str, Any]], device: torch.device
) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    try:  # the fused kernel is a few percent faster and exact; not every device has it
        return torch.optim.AdamW(groups, lr=config.lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(groups, lr=config.lr)


def _to_device(
    batch: Mapping[str, torch.Tensor], device: torch.device, channels_last: bool
) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if channels_last and value.ndim == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


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
