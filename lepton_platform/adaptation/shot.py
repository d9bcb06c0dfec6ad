"""SHOT (Liang et al. 2020, "Do We Really Need to Access the Source Data? Source Hypothesis
Transfer for Unsupervised Domain Adaptation"): source-free adaptation of a source model to an
unlabelled target.

The source model's head (the *hypothesis*) is frozen; the backbone learns target features that
the frozen hypothesis classifies confidently and diversely. Each target batch's loss is

    L = mean_i H(p_i) - diversity * H(mean_i p_i) + beta * CE(p, pseudo-labels)

(information maximisation: confident per-example predictions, a batch-mean prediction spread
over the classes), ``p_i`` the softmax of the model's logits. The pseudo-labels are recomputed
over the whole target at the start of every epoch (:func:`centroid_pseudo_labels`): class
centroids of the L2-normalised features weighted by the softmax predictions, each row labelled
by its nearest centroid (cosine), then one refinement with the centroids of those hard labels.

Only the unlabelled target's inputs are read; the job's labelled splits are not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.nn import functional as F

from lepton_platform.adaptation._common import load_source_head
from lepton_platform.adaptation._source_free import (
    as_int_array,
    check_source_free_job,
    check_source_free_validator,
    from_main,
    label_free_choice,
    rows_to_train,
    selection_report,
    softmax,
    target_outputs,
)
from lepton_platform.engine.callbacks import Callback
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

    from lepton_platform.engine.finetune import Trainer
    from lepton_platform.models import Preprocessor

__all__ = ["SHOT", "centroid_pseudo_labels", "information_maximisation"]

#: Inside the logarithms of the entropies, as in the authors' code.
EPSILON = 1e-5


def _im_terms(probabilities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean per-example entropy, entropy of the mean prediction) of a batch."""
    entropy = -(probabilities * torch.log(probabilities + EPSILON)).sum(dim=1).mean()
    marginal = probabilities.mean(dim=0)
    diversity = -(marginal * torch.log(marginal + EPSILON)).sum()
    return entropy, diversity


def information_maximisation(probabilities: torch.Tensor, diversity: float = 1.0) -> torch.Tensor:
    """SHOT's information-maximisation loss of a batch of class probabilities (rows sum to 1):
    the mean per-example prediction entropy minus ``diversity`` times the entropy of the
    batch-mean prediction (natural logarithms, ``EPSILON`` inside them)."""
    entropy, spread = _im_terms(probabilities)
    return entropy - diversity * spread


def _nearest(features: np.ndarray, centroids: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The class (of ``classes``) whose centroid is nearest to each row by cosine distance;
    ties go to the first of ``classes``."""
    norms = np.linalg.norm(centroids[classes], axis=1, keepdims=True)
    similarity = features @ (centroids[classes] / np.maximum(norms, 1e-12)).T
    labels: np.ndarray = classes[similarity.argmax(axis=1)]
    return labels


def centroid_pseudo_labels(features: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """SHOT's self-supervised pseudo-labels (its eqs. 4-6) of a whole target set.

    ``features`` (rows, dim) are L2-normalised. Class ``k``'s centroid is the mean of the
    features weighted by ``probabilities[:, k]``; each row takes the class of the nearest
    centroid by cosine distance. Then once more with the centroids of those hard labels. As in
    the authors' code, only the classes that the model predicts (arg-max) for at least one row
    compete, and a class left without rows in the first assignment has no centroid in the
    refinement. Deterministic: float64, ties to the lower class index."""
    x = np.asarray(features, dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)
    if x.ndim != 2 or p.ndim != 2 or len(x) != len(p) or len(x) == 0:
        raise ConfigError(
            f"centroid_pseudo_labels needs (rows, dim) features and (rows, classes) "
            f"probabilities of the same rows, got {x.shape} and {p.shape}"
        )
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    classes = np.unique(p.argmax(axis=1))
    centroids = (p.T @ x) / (p.sum(axis=0)[:, None] + 1e-8)
    labels = _nearest(x, centroids, classes)
    hard = np.eye(p.shape[1])[labels]
    centroids = (hard.T @ x) / (hard.sum(axis=0)[:, None] + 1e-8)
    return _nearest(x, centroids, np.unique(labels))


class _Terms:
    """Running sums of the loss terms over the current epoch's batches (this process's), kept
    on the device (no synchronisation per batch)."""

    names = ("entropy", "diversity", "pseudo_label_ce", "loss")

    def __init__(self) -> None:
        self.sums: torch.Tensor | None = None
        self.saved = [0.0] * len(self.names)
        self.batches = 0

    def reset(self) -> None:
        self.sums, self.saved, self.batches = None, [0.0] * len(self.names), 0

    def add(self, values: Mapping[str, torch.Tensor]) -> None:
        batch = torch.stack([values[n].detach().double() for n in self.names])
        if self.sums is None:  # from what a resumed checkpoint held: the same sums in order
            self.sums = torch.tensor(self.saved, dtype=torch.float64, device=batch.device)
        self.sums = self.sums + batch
        self.batches += 1

    def totals(self) -> list[float]:
        return list(self.saved) if self.sums is None else [float(v) for v in self.sums.tolist()]

    def means(self, trainer: Trainer) -> dict[str, float]:
        """Each term's mean over the epoch's batches, averaged over the processes."""
        local = torch.tensor(self.totals(), dtype=torch.float64) / max(self.batches, 1)
        if trainer.accelerator.num_processes > 1:
            local = trainer.accelerator.reduce(local.to(trainer.device), "mean").cpu()
        return {name: float(v) for name, v in zip(self.names, local.tolist(), strict=True)}

    def state(self) -> dict[str, Any]:
        return {"sums": dict(zip(self.names, self.totals(), strict=True)), "batches": self.batches}

    def load(self, state: Mapping[str, Any]) -> None:
        sums = state.get("sums", {})
        self.sums, self.batches = None, int(state.get("batches", 0))
        self.saved = [float(sums.get(n, 0.0)) for n in self.names]


class _EpochPseudoLabels(Callback):
    """At the start of every epoch: the whole target's features and predictions, the centroid
    pseudo-labels (the main process's, on every process) handed to the engine as the epoch's
    labels; the frozen head put in evaluation mode. Keeps in the checkpoint what a resume needs
    (the epoch's labels, the source model's predictions, the per-epoch records)."""

    state_key = "shot"

    def __init__(
        self, target: datasets.Dataset, preprocessor: Preprocessor, batch_size: int, terms: _Terms
    ) -> None:
        self.target = target
        self.preprocessor = preprocessor
        self.batch_size = batch_size
        self.terms = terms
        self.rows = len(target)  # the first rows, those the engine trains on
        self.epoch: int | None = None
        self.labels: np.ndarray | None = None
        self.source: np.ndarray | None = None
        self.records: list[dict[str, Any]] = []

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if self.epoch != epoch or self.labels is None:  # not a resume inside this epoch
            features, logits = target_outputs(
                trainer.model, self.target, self.preprocessor, self.batch_size
            )
            probabilities = softmax(logits)
            labels, predicted = from_main(
                trainer,
                (centroid_pseudo_labels(features, probabilities), probabilities.argmax(axis=1)),
            )
            if self.source is None:  # the first epoch starts from the source model
                self.source = predicted
            record: dict[str, Any] = {
                "epoch": epoch,
                "pseudo_label_agreement": float(np.mean(labels == self.source)),
                "prediction_agreement": float(np.mean(predicted == self.source)),
                "pseudo_labels_changed": (
                    None if self.labels is None else float(np.mean(labels != self.labels))
                ),
                "classes": len(np.unique(labels)),
            }
            self.records.append(record)
            self.epoch, self.labels = epoch, labels
            self.terms.reset()
        trainer.relabel(self.labels[: self.rows])
        trainer.model.head.eval()  # the frozen hypothesis: no dropout, statistics kept

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, float]) -> None:
        means = self.terms.means(trainer)
        self.records[-1].update(means)
        logs.update({f"shot_{k}": v for k, v in means.items()})
        logs["pseudo_label_agreement"] = self.records[-1]["pseudo_label_agreement"]

    def state_dict(self) -> dict[str, Any]:
        def listed(a: np.ndarray | None) -> list[int] | None:
            return None if a is None else [int(v) for v in a]

        return {
            "epoch": self.epoch,
            "labels": listed(self.labels),
            "source": listed(self.source),
            "records": [dict(r) for r in self.records],
            "terms": self.terms.state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        def array(key: str) -> np.ndarray | None:
            value = state.get(key)
            return None if value is None else as_int_array(value)

        self.epoch = state.get("epoch")
        self.labels, self.source = array("labels"), array("source")
        self.records = [dict(r) for r in state.get("records", [])]
        self.terms.load(state.get("terms", {}))


class SHOT(Strategy):
    """SHOT (Liang et al. 2020): source-free domain adaptation. Starts from the whole source
    model (``job.source_head``, read from the Lepton model folder the backbone came from),
    freezes its head and trains the backbone on the unlabelled target with information
    maximisation (``diversity`` weighs the diversity term) plus ``beta`` times the
    cross-entropy to self-supervised centroid pseudo-labels, recomputed every epoch. Defaults
    as in the paper (``beta=0.3``, ``diversity=1.0``).

    Source-free: the job's labelled ``train`` and ``validation`` splits are ignored, and no
    target label is read. The epoch is chosen by ``validator``: ``snd`` (target inputs only) or
    ``none`` (the last epoch). Under several processes the pseudo-labels and the choice are the
    main process's, on every process; the batch terms are each process's share of the batch."""

    name = "shot"
    needs_source_head = True

    def __init__(self, beta: float = 0.3, diversity: float = 1.0, validator: str = "snd") -> None:
        self.beta = check_range(self.name, "beta", beta, 0.0, 1e4)
        self.diversity = check_range(self.name, "diversity", diversity, 0.0, 1e4)
        self.validator = check_source_free_validator(validator, self.name)

    def config(self) -> dict[str, Any]:
        return {"beta": self.beta, "diversity": self.diversity, "validator": self.validator}

    def check_job(self, job: TransferJob) -> None:
        """The source head is there (the base class's check) and fits; the target is there
        and fits the backbone (:func:`~lepton_platform.adaptation._common.check_target`);
        the task is single-label; no early stopping, no balanced sampler."""
        self._target(job)

    def _target(self, job: TransferJob) -> datasets.Dataset:
        super().check_job(job)
        if job.config.sampler == "balanced":
            raise ConfigError(
                f"strategy {self.name!r}: sampler 'balanced' draws by fixed labels, but SHOT's "
                "pseudo-labels change every epoch; use sampler 'shuffle'"
            )
        return check_source_free_job(job, self.name)

    def control(self) -> dict[str, Any] | None:
        """None: SHOT trains on nothing but the target, so there is no training to repeat with
        the adaptation switched off; its control is the source model applied as it is (the
        ``source-only`` baseline of ``compare(source_model=...)``)."""
        return None

    def objective(self, terms: _Terms) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The training loss of a batch: ``IM + beta * CE(logits, pseudo-labels)``."""

        def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            logits = logits.float()
            entropy, spread = _im_terms(logits.softmax(dim=1))
            cross_entropy = F.cross_entropy(logits, labels.long())
            total = entropy - self.diversity * spread + self.beta * cross_entropy
            terms.add(
                {
                    "entropy": entropy,
                    "diversity": spread,
                    "pseudo_label_ce": cross_entropy,
                    "loss": total,
                }
            )
            return total

        return loss

    def run(self, job: TransferJob) -> TransferOutcome:
        self.check(job.model, pretrained=job.pretrained_state is not None)
        target = self._target(job)
        load_source_head(job, self.name)
        model = job.model
        set_requires_grad(model.backbone.parameters(), True)
        set_requires_grad(model.head.parameters(), False)
        terms = _Terms()
        batch_size = job.config.eval_batch_size or job.config.batch_size
        relabel = _EpochPseudoLabels(target, job.preprocessor, batch_size, terms)
        chooser = label_free_choice(self.validator, job, target, self.name)
        trainer = job.trainer(
            param_groups=[{"params": list(model.backbone.parameters()), "name": "backbone"}],
            loss=self.objective(terms),
            callbacks=[relabel],
            best_model=chooser,
        )
        # the engine trains on labelled rows: the target's, labelled afresh every epoch
        relabel.rows = rows_to_train(
            len(target), job.config.batch_size, trainer.accelerator.num_processes
        )
        if relabel.rows == 0:
            raise DataError(
                f"strategy {self.name!r}: the target's {len(target)} rows are too few to train "
                f"on with {trainer.accelerator.num_processes} process(es); give more target data"
            )
        train = target.select(range(relabel.rows)).add_column("label", [0] * relabel.rows)
        try:
            fit = trainer.fit(train, None, job.preprocessor)
        finally:
            set_requires_grad(model.head.parameters(), True)
        details: dict[str, Any] = {
            **self.config(),
            "selection": selection_report(self.validator, chooser.report()),
            "per_epoch": [dict(r) for r in relabel.records],
            "target_examples": len(target),
            "trained_rows": relabel.rows,
            "source_model": None if job.source_model is None else str(job.source_model),
            "ignored": "the labelled train and validation splits (source-free)",
        }
        return TransferOutcome(
            model=model, history=[dict(h) for h in fit.history], fit=fit, details=details
        )
