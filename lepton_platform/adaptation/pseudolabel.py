"""Confidence-thresholded pseudo-label self-training (Lee 2013): source-free adaptation of a
source model to an unlabelled target by training on its own confident predictions.

Each of ``rounds`` rounds predicts the whole target with the current model (the first with the
source model: its backbone and its head), keeps the rows whose top class probability is at
least ``threshold``, and trains backbone and head on them, each labelled with its predicted
class, for the configured epochs through the fine-tune engine; the next round relabels with the
updated model. Only the unlabelled target's inputs are read; the job's labelled splits are not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lepton_platform.adaptation._common import load_source_head
from lepton_platform.adaptation._source_free import (
    check_source_free_job,
    check_source_free_validator,
    from_main,
    label_free_choice,
    rows_to_train,
    selection_report,
    target_outputs,
)
from lepton_platform.errors import ConfigError, DataError
from lepton_platform.strategies.base import (
    Strategy,
    TransferJob,
    TransferOutcome,
    check_range,
    set_requires_grad,
)

if TYPE_CHECKING:
    import datasets

    from lepton_platform.tasks import Task

__all__ = ["PseudoLabel", "confident_pseudo_labels"]


def confident_pseudo_labels(
    task: Task, logits: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(predicted, confidence, kept)`` of target ``logits``: each row's predicted class and
    its probability (the task's scores: softmax for classification) and the indices of the
    rows whose confidence is at least ``threshold``."""
    predicted, scores = task.predict(torch.from_numpy(np.asarray(logits, dtype=np.float32)))
    confidence = scores.max(dim=1).values.double().numpy()
    labels = predicted.long().numpy()
    return labels, confidence, np.flatnonzero(confidence >= threshold)


class PseudoLabel(Strategy):
    """Pseudo-label self-training (Lee 2013) with a confidence threshold: starting from the
    whole source model (``job.source_head``, read from the Lepton model folder the backbone
    came from), ``rounds`` times: predict the unlabelled target, keep the rows whose top
    probability is at least ``threshold``, and fine-tune backbone and head on them with their
    predicted labels for the configured epochs (the task's loss).

    Source-free: the job's labelled ``train`` and ``validation`` splits are ignored and no
    target label is read. The epoch of each round is chosen by ``validator``: ``snd`` (target
    inputs only) or ``none`` (the last epoch). A round refuses to train when fewer rows than
    one batch pass the threshold, or when they all carry one label (self-training on them would
    collapse the model to that class). Under several processes the pseudo-labels and the choice
    are the main process's, on every process."""

    name = "pseudo-label"
    needs_source_head = True

    def __init__(self, threshold: float = 0.9, rounds: int = 2, validator: str = "snd") -> None:
        self.threshold = check_range(self.name, "threshold", threshold, 0.0, 1.0)
        if isinstance(rounds, bool) or int(rounds) != rounds or not 1 <= int(rounds) <= 100:
            raise ConfigError(
                f"strategy {self.name!r}: rounds must be an integer in [1, 100], got {rounds!r}"
            )
        self.rounds = int(rounds)
        self.validator = check_source_free_validator(validator, self.name)

    def config(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "rounds": self.rounds, "validator": self.validator}

    def check_job(self, job: TransferJob) -> None:
        """The source head is there (the base class's check) and fits; the target is there
        and fits the backbone (:func:`~lepton_platform.adaptation._common.check_target`);
        the task is single-label; no early stopping."""
        self._target(job)

    def _target(self, job: TransferJob) -> datasets.Dataset:
        super().check_job(job)
        return check_source_free_job(job, self.name)

    def control(self) -> dict[str, Any] | None:
        """None: self-training reads nothing but the target, so there is no training to repeat
        with the adaptation switched off; its control is the source model applied as it is (the
        ``source-only`` baseline of ``compare(source_model=...)``)."""
        return None

    def _refuse(
        self,
        job: TransferJob,
        round_: int,
        kept: np.ndarray,
        labels: np.ndarray,
        n: int,
        top: float,
    ) -> None:
        needed = min(2 * job.task.num_labels, n)  # two rows per class, at the least
        which = "the source model's" if round_ == 0 else f"the round-{round_} model's"
        if len(kept) < needed:
            raise DataError(
                f"strategy {self.name!r}: only {len(kept)} of the {n} target examples have a top "
                f"probability >= threshold {self.threshold:g} under {which} predictions, fewer "
                f"than two per class ({needed}); the most confident is {top:.3f}. Lower the "
                "threshold or give more target data (a weak source model is rarely confident "
                "on a shifted target)"
            )
        classes = np.unique(labels[kept])
        if len(classes) < 2:
            name = job.task.label_names[int(classes[0])]
            raise DataError(
                f"strategy {self.name!r}: all {len(kept)} target examples that pass threshold "
                f"{self.threshold:g} (of {n}) are pseudo-labelled {name!r} under {which} "
                "predictions; self-training on one class would collapse the model to it. Lower "
                "the threshold, or check that the source model fits this target"
            )

    def run(self, job: TransferJob) -> TransferOutcome:
        self.check(job.model, pretrained=job.pretrained_state is not None)
        target = self._target(job)
        load_source_head(job, self.name)
        model = job.model
        set_requires_grad(model.parameters(), True)
        batch_size = job.config.eval_batch_size or job.config.batch_size
        n = len(target)
        source: np.ndarray | None = None
        history: list[dict[str, Any]] = []
        rounds: list[dict[str, Any]] = []
        fit = None
        for round_ in range(self.rounds):
            chooser = label_free_choice(self.validator, job, target, self.name)
            trainer = job.trainer(stage=f"round-{round_}", best_model=chooser)
            _, logits = target_outputs(trainer.model, target, job.preprocessor, batch_size)
            labels, confidence, kept = from_main(
                trainer, confident_pseudo_labels(job.task, logits, self.threshold)
            )
            if source is None:  # the first round predicts with the source model
                source = labels
            self._refuse(job, round_, kept, labels, n, float(confidence.max()))
            passed = len(kept)
            rows = rows_to_train(passed, job.config.batch_size, trainer.accelerator.num_processes)
            if rows == 0:
                raise DataError(
                    f"strategy {self.name!r}: {passed} confident target rows are too few to train "
                    f"on with {trainer.accelerator.num_processes} process(es)"
                )
            if rows < passed:  # leave the least confident out rather than a one-row batch
                order = np.argsort(-confidence[kept], kind="stable")
                kept = np.sort(kept[order[:rows]])
            counts = np.bincount(labels[kept], minlength=job.task.num_labels)
            data = target.add_column("label", labels.tolist()).select(kept.tolist())
            fit = trainer.fit(data, None, job.preprocessor)
            rounds.append(
                {
                    "round": round_,
                    "passed_threshold": passed,
                    "kept": len(kept),
                    "kept_fraction": len(kept) / n,
                    "mean_confidence_kept": float(confidence[kept].mean()),
                    "class_histogram": {
                        name: int(c) for name, c in zip(job.task.label_names, counts, strict=True)
                    },
                    "agreement_with_source": float(np.mean(labels[kept] == source[kept])),
                    "prediction_agreement": float(np.mean(labels == source)),
                    "selection": selection_report(self.validator, chooser.report()),
                }
            )
            history.extend({**h, "round": round_} for h in fit.history)
        assert fit is not None
        details: dict[str, Any] = {
            **self.config(),
            "selection": rounds[-1]["selection"],
            "rounds_report": rounds,
            "target_examples": n,
            "source_model": None if job.source_model is None else str(job.source_model),
            "ignored": "the labelled train and validation splits (source-free)",
        }
        return TransferOutcome(model=model, history=history, fit=fit, details=details)
