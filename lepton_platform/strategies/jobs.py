"""The engines behind a :class:`~lepton_platform.strategies.TransferJob`: the
:class:`~lepton_platform.strategies.base.JobEngine` that the application layer gives every job,
so that a strategy trains through the fine-tune engine, predicts through the one prediction
function and scores through the evaluate engine without knowing how they are built."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lepton_platform.engine.evaluate import Monitor
from lepton_platform.engine.finetune import Trainer
from lepton_platform.engine.predict import predict
from lepton_platform.errors import ConfigError
from lepton_platform.models import TransferModel
from lepton_platform.settings import TrainConfig
from lepton_platform.strategies.base import TransferJob

if TYPE_CHECKING:
    import datasets

    from lepton_platform.engine.callbacks import BestModel, Callback

__all__ = ["Engine"]


class Engine:
    """The default :class:`~lepton_platform.strategies.base.JobEngine`. ``extra_callbacks``
    join every trainer it builds (a tuning trial's pruning callback)."""

    def __init__(self, extra_callbacks: Sequence[Callback] = ()) -> None:
        self.extra_callbacks = tuple(extra_callbacks)

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
    ) -> Trainer:
        output = job.output_dir / stage if (job.output_dir and stage) else job.output_dir
        trainer = Trainer(
            model or job.model,
            job.task,
            config or job.config,
            output_dir=output,
            param_groups=param_groups,
            regularizer=regularizer,
            callbacks=(*tuple(callbacks), *self.extra_callbacks),
            monitor=job.monitor,
            best_model=best_model,
            loss=loss,
        )
        if job.resume and output is not None:
            trainer.fit = functools.partial(trainer.fit, resume=True)  # type: ignore[method-assign]
        return trainer

    def predict(
        self, job: TransferJob, model: torch.nn.Module, dataset: datasets.Dataset
    ) -> tuple[np.ndarray, np.ndarray | None]:
        config = job.config
        out = predict(
            model,
            dataset,
            job.preprocessor,
            batch_size=config.eval_batch_size or config.batch_size,
            num_labels=job.task.num_labels if job.task.multi_label else None,
            num_workers=config.num_workers,
        )
        return out.outputs, out.labels

    def score(
        self, job: TransferJob, model: TransferModel, dataset: datasets.Dataset | None = None
    ) -> float:
        data = job.validation if dataset is None else dataset
        if data is None:
            raise ConfigError("this strategy chooses on the validation split, and there is none")
        logits, labels = self.predict(job, model, data)
        if labels is None:
            raise ConfigError("the validation split has no labels to choose on")
        monitor = job.monitor or Monitor()
        return monitor.oriented(monitor.value(job.task, logits, labels))
