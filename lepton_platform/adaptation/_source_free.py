"""What the source-free strategies (SHOT and pseudo-label self-training) share: the checks of a
source-free job, the target's features and logits computed identically on every process, and
the label-free choice of the epoch (``snd``, or ``none``: the last epoch).

Source-free means that adaptation reads the source model (its backbone and its head) and the
unlabelled target's inputs, nothing else: the job's labelled ``train`` and ``validation`` splits
are ignored (``train`` only serves the shape check of :func:`check_target`, no row of it is
trained on), and the target's labels, if any, are dropped unread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lepton_platform.adaptation._common import check_target
from lepton_platform.adaptation.validators import from_main
from lepton_platform.errors import ConfigError, did_you_mean
from lepton_platform.models import Preprocessor, TransferModel
from lepton_platform.strategies.base import TransferJob

if TYPE_CHECKING:
    import datasets

    from lepton_platform.engine.callbacks import BestModel
    from lepton_platform.engine.finetune import Trainer

__all__ = [
    "SOURCE_FREE_VALIDATORS",
    "check_source_free_job",
    "check_source_free_validator",
    "from_main",
    "label_free_choice",
    "rows_to_train",
    "selection_report",
    "target_outputs",
]

#: The epoch choices that read nothing but the target's inputs.
SOURCE_FREE_VALIDATORS = ("snd", "none")


def check_source_free_validator(name: str, strategy: str) -> str:
    """``name`` if it is a label-free validator that reads target inputs only."""
    if name in SOURCE_FREE_VALIDATORS:
        return name
    if name in ("source-accuracy", "iwv"):
        raise ConfigError(
            f"strategy {strategy!r}: validator {name!r} scores on labelled source data, which "
            "source-free adaptation does not read; choose 'snd' (target inputs only) or 'none' "
            "(keep the last epoch)"
        )
    raise ConfigError(
        f"strategy {strategy!r}: unknown validator {name!r}"
        f"{did_you_mean(name, SOURCE_FREE_VALIDATORS)} (source-free: snd or none)"
    )


def check_source_free_job(job: TransferJob, strategy: str) -> datasets.Dataset:
    """The job's unlabelled target (:func:`check_target`: present, not empty, labels dropped,
    inputs like the source's) once the rest of a source-free job is checked: a single-label
    task, a source head that fits the job's head, no early stopping (there is no labelled
    validation split to stop on)."""
    if job.task.multi_label:
        raise ConfigError(
            f"strategy {strategy!r} adapts a single-label classifier (one softmax over the "
            f"labels); the task {job.task.name!r} is multi-label"
        )
    if job.source_head is not None:
        expected = {k: tuple(v.shape) for k, v in job.model.head.state_dict().items()}
        given = {k: tuple(v.shape) for k, v in job.source_head.items()}
        if expected != given:
            raise ConfigError(
                f"strategy {strategy!r}: the source model's head ({given}) does not fit the "
                f"job's head ({expected}); the source must be trained for the same labels"
            )
    if job.config.early_stopping_patience is not None:
        raise ConfigError(
            f"strategy {strategy!r} is source-free: it reads no labelled validation split, so "
            "there is nothing to stop early on; set early_stopping_patience to null (the epoch "
            "is chosen by the label-free validator)"
        )
    return check_target(job, strategy)


def rows_to_train(rows: int, batch_size: int, num_processes: int) -> int:
    """How many of ``rows`` the engine trains on each epoch (it drops a final batch that would
    give a process fewer than two rows): the source-free strategies choose which rows those
    are (the least confident are left out) instead of leaving it to the shuffle."""
    from lepton_platform.engine._loop_utils import BatchPlan

    return BatchPlan.trained_rows(rows, batch_size, num_processes)


def target_outputs(
    model: TransferModel, target: datasets.Dataset, preprocessor: Preprocessor, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features and logits (float64) of every target row, in evaluation mode, through
    the one prediction function; every module's training mode is put back afterwards. Each
    process computes the whole target (no sharding), so the result depends only on the
    process's weights and statistics."""
    from lepton_platform.adaptation.validators import model_outputs

    modes = [(module, module.training) for module in model.modules()]
    try:
        features, logits = model_outputs(model, target, preprocessor, batch_size)
    finally:
        for module, training in modes:
            module.training = training
    return features.astype(np.float64), logits.astype(np.float64)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    out: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return out


def label_free_choice(
    validator: str, job: TransferJob, target: datasets.Dataset, strategy: str
) -> BestModel:
    """The engine's best-epoch choice for a source-free run: ``snd`` scores each epoch on the
    target's inputs (the main process's score decides on every process); ``none`` keeps the
    last epoch."""
    from lepton_platform.adaptation.validators import ValidationData, score
    from lepton_platform.engine.callbacks import BestModel

    check_source_free_validator(validator, strategy)
    if validator == "none":
        return BestModel("validator_none", True, label="none")  # never logged: the last epoch
    data = ValidationData(
        task=job.task,
        preprocessor=job.preprocessor,
        source=None,
        target=target,
        batch_size=job.config.eval_batch_size or job.config.batch_size,
        seed=job.config.seed,
    )

    def scores(trainer: Trainer) -> dict[str, float]:
        return from_main(trainer, {"validator_snd": score("snd", trainer.model, data)})

    return BestModel("validator_snd", True, extra=scores, label="snd")


def selection_report(validator: str, report: dict[str, Any]) -> dict[str, Any]:
    """What chose the returned epoch: the validator, the epoch, its score per epoch."""
    return {
        "validator": validator,
        "chosen_epoch": report["chosen_epoch"],
        "scores_per_epoch": [
            {k.removeprefix("validator_"): v for k, v in scores.items()}
            for scores in report["scores_per_epoch"]
        ],
    }


def as_int_array(values: Any) -> np.ndarray:
    """``values`` as a 1-d int64 array (lists survive JSON checkpoints, arrays do not)."""
    return np.asarray(values, dtype=np.int64).reshape(-1)
