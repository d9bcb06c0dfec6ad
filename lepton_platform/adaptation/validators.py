"""Label-free model selection for unsupervised domain adaptation.

With no target labels, epochs and hyper-parameters are chosen by a validator that needs none
(the target test labels are never read):

- ``source-accuracy``: accuracy on the labelled *source* validation split.
- ``iwv``: importance-weighted validation (Sugiyama et al. 2007): a logistic-regression domain
  classifier on pooled features gives density ratios ``w(x) = p_t(x) / p_s(x)``, which weight
  the source validation losses so that they estimate the target loss; score = minus that loss.
- ``snd``: soft neighbourhood density (Saito et al. 2021): the entropy of the softened
  similarity distribution among the target's normalised class-probability vectors; higher when
  target predictions form dense, consistent neighbourhoods. Needs target inputs only.

Every validator returns a score where higher is better.

    >>> from lepton_platform.adaptation.validators import ValidationData, score  # doctest: +SKIP
    >>> score("snd", model, ValidationData(task, pre, source_val, target_inputs))
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from lepton_platform.errors import ConfigError, did_you_mean
from lepton_platform.models import Preprocessor, TransferModel
from lepton_platform.tasks import Task

if TYPE_CHECKING:
    import datasets

    from lepton_platform.engine.callbacks import BestModel
    from lepton_platform.engine.finetune import Trainer
    from lepton_platform.strategies.base import Strategy, TransferJob

__all__ = [
    "VALIDATORS",
    "Selection",
    "ValidationData",
    "best_model",
    "check_validator",
    "importance_weighted_validation",
    "model_outputs",
    "score",
    "score_all",
    "select",
    "soft_neighbourhood_density",
    "source_accuracy",
]

VALIDATORS = ("source-accuracy", "iwv", "snd")


def check_validator(name: str, where: str = "adaptation") -> str:
    """``name`` if it is a known validator, else a ConfigError naming the known ones."""
    if name not in VALIDATORS:
        raise ConfigError(
            f"{where}: unknown validator {name!r}{did_you_mean(name, VALIDATORS)} "
            f"(known: {', '.join(VALIDATORS)})"
        )
    return name


@dataclass
class ValidationData:
    """What validators may read: the *labelled source* validation split and the *unlabelled*
    target (its label column, if any, is never read), both prepared with ``preprocessor``."""

    task: Task
    preprocessor: Preprocessor
    source: datasets.Dataset | None
    target: datasets.Dataset
    batch_size: int = 64
    seed: int = 0
    #: SND's temperature (0.05 in Saito et al. 2021).
    temperature: float = 0.05
    #: At most this many target rows enter SND's similarity matrix (it is quadratic).
    max_rows: int = 2000


class _FeaturesAndLogits(torch.nn.Module):
    """A model's pooled features and logits side by side (one pass gives both)."""

    def __init__(self, model: TransferModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        features = self.model.backbone(**inputs)
        return torch.cat([features, self.model.head(features)], dim=1)


def model_outputs(
    model: TransferModel, dataset: datasets.Dataset, preprocessor: Preprocessor, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features and logits of every row, in evaluation mode, through the one prediction
    function. Reads only the preprocessor's input columns, never ``label``."""
    from lepton_platform.engine.predict import predict

    inputs = dataset.remove_columns([c for c in ("label",) if c in dataset.column_names])
    both = predict(_FeaturesAndLogits(model), inputs, preprocessor, batch_size=batch_size).outputs
    dim = model.backbone.feature_dim
    return both[:, :dim], both[:, dim:]


def _source(data: ValidationData, validator: str) -> datasets.Dataset:
    if data.source is None or len(data.source) == 0:
        raise ConfigError(
            f"validator {validator!r} needs a labelled source validation split; there is none "
            "(give one, or choose validator='snd', which needs target inputs only)"
        )
    if "label" not in data.source.column_names:
        raise ConfigError(f"validator {validator!r}: the source validation split has no labels")
    return data.source


def density_ratios(
    source_features: np.ndarray, target_features: np.ndarray, seed: int = 0
) -> np.ndarray:
    """``p_t(x) / p_s(x)`` at each source row, from a logistic-regression domain classifier
    (cross-fitted: each source row is scored by a classifier that did not see it), normalised
    to mean 1 and clipped to [0, 20] so that a few rows cannot dominate."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([source_features, target_features]).astype(np.float64)
    y = np.concatenate([np.zeros(len(source_features)), np.ones(len(target_features))])
    folds = int(min(3, len(source_features), len(target_features)))
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    if folds >= 2:
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        proba = cross_val_predict(classifier, x, y, cv=cv, method="predict_proba")[:, 1]
    else:
        proba = classifier.fit(x, y).predict_proba(x)[:, 1]
    p = np.clip(proba[: len(source_features)], 1e-6, 1 - 1e-6)
    ratios = p / (1 - p) * (len(source_features) / len(target_features))
    ratios = ratios / ratios.mean()
    clipped: np.ndarray = np.clip(ratios, 0.0, 20.0)
    return clipped


Outputs = tuple[np.ndarray, np.ndarray]


def _source_accuracy(data: ValidationData, src: Outputs, tgt: Outputs | None) -> float:
    labels = np.asarray(_source(data, "source-accuracy")["label"])
    predicted, _ = data.task.predict(torch.from_numpy(src[1]))
    hits = predicted.numpy() == labels
    return float(hits.all(axis=-1).mean() if hits.ndim > 1 else hits.mean())


def _iwv(data: ValidationData, src: Outputs, tgt: Outputs | None) -> float:
    source = _source(data, "iwv")
    assert tgt is not None
    weights = density_ratios(src[0], tgt[0], data.seed)
    labels = torch.as_tensor(np.asarray(source["label"]))
    logits = torch.from_numpy(src[1])
    per_row = np.array(
        [float(data.task.loss(logits[i : i + 1], labels[i : i + 1])) for i in range(len(labels))]
    )
    return -float(np.sum(weights * per_row) / np.sum(weights))


def _snd(data: ValidationData, src: Outputs | None, tgt: Outputs | None) -> float:
    assert tgt is not None
    logits = tgt[1]
    if len(logits) > data.max_rows:
        rows = np.random.default_rng(data.seed).choice(len(logits), data.max_rows, replace=False)
        logits = logits[np.sort(rows)]
    return snd_from_logits(logits, data.temperature, multi_label=data.task.multi_label)


def _outputs(model: TransferModel, data: ValidationData, names: tuple[str, ...]) -> tuple[Any, Any]:
    needs_source = any(n in ("source-accuracy", "iwv") for n in names)
    src = (
        model_outputs(model, _source(data, names[0]), data.preprocessor, data.batch_size)
        if needs_source
        else None
    )
    tgt = model_outputs(model, data.target, data.preprocessor, data.batch_size)
    return src, tgt


def source_accuracy(model: TransferModel, data: ValidationData) -> float:
    """Accuracy on the labelled source validation split."""
    return score("source-accuracy", model, data)


def importance_weighted_validation(model: TransferModel, data: ValidationData) -> float:
    """Minus the importance-weighted source validation loss (an estimate of the target loss):
    the weights are the density ratios of :func:`density_ratios` on pooled features."""
    return score("iwv", model, data)


def soft_neighbourhood_density(model: TransferModel, data: ValidationData) -> float:
    """SND: mean entropy of each target row's softmax(similarity / temperature) over the other
    rows, similarities being dot products of L2-normalised class-probability vectors."""
    return score("snd", model, data)


def snd_from_logits(
    logits: np.ndarray, temperature: float = 0.05, multi_label: bool = False
) -> float:
    """SND of a matrix of target logits (see :func:`soft_neighbourhood_density`)."""
    t = torch.from_numpy(logits).double()
    probs = t.sigmoid() if multi_label else t.softmax(dim=1)
    probs = torch.nn.functional.normalize(probs, dim=1)
    sim = probs @ probs.T
    sim.fill_diagonal_(float("-inf"))
    dist = (sim / temperature).softmax(dim=1)
    entropy = -(dist * torch.log(dist.clamp_min(1e-12))).sum(dim=1)
    return float(entropy.mean())


_FUNCTIONS: dict[str, Callable[[ValidationData, Any, Any], float]] = {
    "source-accuracy": _source_accuracy,
    "iwv": _iwv,
    "snd": _snd,
}


def score(name: str, model: TransferModel, data: ValidationData) -> float:
    """The score of validator ``name`` (higher is better)."""
    check_validator(name)
    src, tgt = _outputs(model, data, (name,))
    return _FUNCTIONS[name](data, src, tgt)


def score_all(model: TransferModel, data: ValidationData) -> dict[str, float]:
    """Every validator that the data allow (those needing a source split are left out when
    there is none); the model runs once over each data set."""
    names: tuple[str, ...] = VALIDATORS if data.source is not None else ("snd",)
    src, tgt = _outputs(model, data, names)
    return {name: _FUNCTIONS[name](data, src, tgt) for name in names}


T = TypeVar("T")


def from_main(trainer: Trainer, value: T) -> T:
    """The main process's ``value`` on every process (a picklable object): what decides the
    training (pseudo-labels, the chosen epoch) must not differ between processes, and
    batch-norm statistics do (each process updates them on its own share of the last batch)."""
    accelerator = trainer.accelerator
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    box: list[Any] = [value if accelerator.is_main_process else None]
    broadcast_object_list(box, from_process=0)
    return box[0]  # type: ignore[no-any-return]


def best_model(validator: str, data: ValidationData) -> BestModel:
    """The fine-tune engine's best-model choice by a label-free validator: every validator the
    data allow scores each epoch (``validator_<name>`` in the history), and the epoch with the
    best ``validator`` score is the one returned (kept in the checkpoint, like any best model).
    """
    from lepton_platform.engine.callbacks import BestModel

    check_validator(validator)

    def scores(trainer: Trainer) -> dict[str, float]:
        values = score_all(trainer.model, data)
        if validator not in values:
            values[validator] = score(validator, trainer.model, data)
        # every process keeps the epoch the main process chose (their statistics differ)
        return from_main(trainer, {f"validator_{k}": v for k, v in values.items()})

    return BestModel(f"validator_{validator}", True, extra=scores, label=validator)


@dataclass
class Selection:
    """The outcome of :func:`select`: the chosen candidate and every candidate's scores."""

    chosen: str
    validator: str
    scores: dict[str, dict[str, float]]
    model: TransferModel
    details: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "validator": self.validator, "scores": self.scores}


def select(
    job: TransferJob,
    candidates: Mapping[str, Strategy],
    validator: str = "source-accuracy",
) -> Selection:
    """Run each candidate strategy (e.g. DANN at several weights) on a copy of ``job``, score
    each trained model with every validator, and keep the best by ``validator``. The target's
    labels are never read (the target is stripped of them first)."""
    from lepton_platform.adaptation._common import strip_labels

    check_validator(validator)
    if not candidates:
        raise ConfigError("select: no candidates given")
    if job.unlabelled_target is None or len(job.unlabelled_target) == 0:
        raise ConfigError("select: the job has no unlabelled target data to validate on")
    target = strip_labels(job.unlabelled_target, "select")
    data = ValidationData(
        task=job.task,
        preprocessor=job.preprocessor,
        source=job.validation,
        target=target,
        batch_size=job.config.eval_batch_size or job.config.batch_size,
        seed=job.config.seed,
    )
    scores: dict[str, dict[str, float]] = {}
    models: dict[str, TransferModel] = {}
    details: dict[str, Any] = {}
    for name, strategy in candidates.items():
        trial = copy.copy(job)
        trial.model = copy.deepcopy(job.model)
        trial.unlabelled_target = target
        if job.output_dir is not None:
            trial.output_dir = job.output_dir / f"candidate-{name}"
        outcome = strategy.run(trial)
        models[name] = outcome.model
        scores[name] = score_all(outcome.model, data)
        details[name] = outcome.details
    chosen = max(scores, key=lambda n: scores[n][validator])
    return Selection(chosen, validator, scores, models[chosen], details)
