"""MCC, minimum class confusion (Jin et al. 2020): make the classifier's predictions on the
unlabelled target less ambiguous between classes.

On a target batch's logits ``Z`` (the head on the batch's pooled features), with ``N`` rows and
``K`` classes:

1. ``Y = softmax(Z / T)``, a temperature ``T`` (2.5 in the paper) softening the predictions;
2. uncertainty weights from each row's entropy ``H_i = -sum_k Y_ik log Y_ik``:
   ``w_i = N (1 + exp(-H_i)) / sum_j (1 + exp(-H_j))`` (they sum to ``N``; confident rows weigh
   more; the weights are constants for the gradient, as in the authors' code);
3. the class correlation ``C = Y^T diag(w) Y`` (``K x K``), each row normalised to sum to 1;
4. loss ``(sum(C) - trace(C)) / K``: the mean share of each class's mass that the batch's
   predictions confuse with other classes, between 0 and ``(K - 1) / K``.

It is added to the source classification loss with a ``weight``. The loss needs neither the
source batch nor a discriminator, only the head's target predictions.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lepton_platform.adaptation._common import AdaptationModel, AlignmentStrategy
from lepton_platform.errors import ConfigError
from lepton_platform.strategies.base import check_range
from lepton_platform.tasks import Task

__all__ = ["MCC", "class_confusion", "mcc_loss"]


def class_confusion(logits: torch.Tensor, temperature: float = 2.5) -> torch.Tensor:
    """The row-normalised, uncertainty-weighted class correlation matrix ``(K, K)`` of a batch
    of logits ``(N, K)`` (steps 1 to 3 of the module's description)."""
    if logits.ndim != 2:
        raise ValueError(f"class_confusion expects logits (batch, classes), got {logits.shape}")
    n = logits.shape[0]
    probs = (logits.float() / temperature).softmax(dim=1)
    entropy = torch.special.entr(probs).sum(dim=1).detach()
    weights = 1.0 + torch.exp(-entropy)
    weights = n * weights / weights.sum()
    correlation = (probs * weights[:, None]).T @ probs
    rows = correlation.sum(dim=1, keepdim=True).clamp_min(torch.finfo(correlation.dtype).tiny)
    return correlation / rows


def mcc_loss(logits: torch.Tensor, temperature: float = 2.5) -> torch.Tensor:
    """The minimum-class-confusion loss ``(sum(C) - trace(C)) / K`` of a batch of logits."""
    confusion = class_confusion(logits, temperature)
    return (confusion.sum() - confusion.trace()) / confusion.shape[0]


class MCC(AlignmentStrategy):
    """Fine-tune on the labelled source plus ``weight`` times the MCC loss of each step's
    unlabelled target batch (its logits through the current head, softened by
    ``temperature``). ``adabn`` re-estimates batch-norm statistics on the target afterwards;
    ``validator`` chooses the epoch without target labels. Single-label classification only.
    """

    name = "mcc"

    def __init__(
        self,
        weight: float = 1.0,
        temperature: float = 2.5,
        adabn: bool = False,
        validator: str = "source-accuracy",
    ) -> None:
        self.temperature = check_range(self.name, "temperature", temperature, 1e-3, 1e3)
        super().__init__(weight, adabn, validator)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "temperature": self.temperature}

    def check_task(self, task: Task) -> None:
        if task.multi_label:
            raise ConfigError(
                f"strategy {self.name!r} minimises the confusion between the classes of a "
                f"softmax, which needs a single-label task; task {task.name!r} is multi-label "
                "(choose dann or coral, which align pooled features)"
            )

    def build_adapter(self, feature_dim: int) -> nn.Module:
        return nn.Module()  # nothing to train besides backbone and head

    def step_loss(
        self, model: AdaptationModel, source: torch.Tensor, target: torch.Tensor, progress: float
    ) -> torch.Tensor:
        return self.weight * mcc_loss(model.head(target), self.temperature)
