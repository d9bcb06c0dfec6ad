"""Deep CORAL (Sun and Saenko 2016): align the second-order statistics of the pooled features.

The loss is ``||C_s - C_t||_F^2 / (4 d^2)``, with ``C_s`` and ``C_t`` the (unbiased) feature
covariances of a source and a target batch and ``d`` the feature dimension; it is added to the
source classification loss with a ``weight``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lepton_platform.adaptation._common import AlignmentStrategy

__all__ = ["CORAL", "coral_loss", "covariance"]


def covariance(x: torch.Tensor) -> torch.Tensor:
    """The unbiased covariance ``(d, d)`` of the rows of ``x`` ``(n, d)``."""
    n = x.shape[0]
    centred = x - x.mean(dim=0, keepdim=True)
    return centred.T @ centred / max(n - 1, 1)


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``||C_s - C_t||_F^2 / (4 d^2)`` between two batches of features."""
    d = source.shape[1]
    diff = covariance(source.float()) - covariance(target.float())
    return diff.pow(2).sum() / (4 * d * d)


class CORAL(AlignmentStrategy):
    """Fine-tune on the labelled source plus ``weight`` times the CORAL loss between source and
    unlabelled target batches. ``adabn`` re-estimates batch-norm statistics on the target
    afterwards; ``validator`` chooses the epoch without target labels."""

    name = "coral"

    def __init__(
        self, weight: float = 1.0, adabn: bool = False, validator: str = "source-accuracy"
    ) -> None:
        super().__init__(weight, adabn, validator)

    def build_adapter(self, feature_dim: int) -> nn.Module:
        return nn.Module()

    def alignment_loss(
        self, adapter: nn.Module, source: torch.Tensor, target: torch.Tensor, progress: float
    ) -> torch.Tensor:
        return self.weight * coral_loss(source, target)

    def config(self) -> dict[str, Any]:
        return super().config()
