"""The ``ordinal`` task: classes with an order (grades, stages, ratings).

The head gives one logit per class, as for classification; the loss is cross-entropy plus
``distance_weight`` times the expected distance between the predicted class distribution and
the true class (so a prediction two grades off costs more than one off), and the predicted class
is the one nearest the expected class index. Its default metric is ``class-mae`` (lower is
better), then accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from lepton_platform.errors import ConfigError
from lepton_platform.tasks import Task

__all__ = ["OrdinalTask"]


class OrdinalTask(Task):
    """Ordered classes, ``label_names`` in their order (lowest first)."""

    name = "ordinal"
    default_metrics = ("class-mae", "accuracy")

    def __init__(self, label_names: Sequence[str], *, distance_weight: float = 1.0) -> None:
        super().__init__(label_names)
        if distance_weight < 0:
            raise ConfigError(f"ordinal: distance_weight must be >= 0, got {distance_weight}")
        self.distance_weight = float(distance_weight)

    def build_head(self, feature_dim: int) -> nn.Module:
        return nn.Linear(feature_dim, self.num_labels)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits, labels = logits.float(), labels.long()
        ranks = torch.arange(self.num_labels, device=logits.device, dtype=logits.dtype)
        distance = (logits.softmax(dim=-1) * (ranks - labels[:, None].to(logits.dtype)).abs()).sum(
            dim=-1
        )
        return F.cross_entropy(logits, labels) + self.distance_weight * distance.mean()

    def predict(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = logits.float().softmax(dim=-1)
        ranks = torch.arange(self.num_labels, device=logits.device, dtype=scores.dtype)
        expected = (scores * ranks).sum(dim=-1)
        return expected.round().long().clamp(0, self.num_labels - 1), scores

    def config(self) -> dict[str, Any]:
        return {"distance_weight": self.distance_weight}
