"""Tasks: the head for a label space, the loss, the predictions and the default metrics.

The core registers ``classification`` (single-label) and ``multilabel-classification``
through the same hook any plugin uses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from lepton_platform.errors import ConfigError

__all__ = ["ClassificationTask", "MultiLabelClassificationTask", "Task"]


class Task(ABC):
    """What a model predicts. ``label_names`` fixes the label space and its order."""

    name: str = "task"
    multi_label: bool = False
    default_metrics: tuple[str, ...] = ()

    def __init__(self, label_names: Sequence[str]) -> None:
        names = [str(n) for n in label_names]
        if len(names) < 2:
            raise ConfigError(f"task {self.name!r} needs at least 2 labels, got {names}")
        if len(set(names)) != len(names):
            raise ConfigError(f"task {self.name!r}: label names repeat: {names}")
        self.label_names = names

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @abstractmethod
    def build_head(self, feature_dim: int) -> nn.Module:
        """The head mapping pooled features to logits."""

    @abstractmethod
    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean loss of a batch."""

    @abstractmethod
    def predict(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(labels, scores)``: predicted label indices (or 0/1 matrix) and class scores."""

    def config(self) -> dict[str, Any]:
        """JSON-ready options such that ``spec.factory(label_names=..., **config)`` rebuilds it."""
        return {}


class ClassificationTask(Task):
    """Single-label classification: a linear head, cross-entropy, arg-max predictions.

    ``class_weights`` weights the loss per class (imbalanced data); ``label_smoothing`` as in
    :func:`torch.nn.functional.cross_entropy`; ``dropout`` before the head.
    """

    name = "classification"
    default_metrics = ("accuracy", "f1", "balanced-accuracy")

    def __init__(
        self,
        label_names: Sequence[str],
        *,
        class_weights: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(label_names)
        if class_weights is not None and len(class_weights) != self.num_labels:
            raise ConfigError(
                f"class_weights has {len(class_weights)} values for {self.num_labels} labels"
            )
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        self.label_smoothing = float(label_smoothing)
        self.dropout = float(dropout)

    def build_head(self, feature_dim: int) -> nn.Module:
        linear = nn.Linear(feature_dim, self.num_labels)
        return nn.Sequential(nn.Dropout(self.dropout), linear) if self.dropout else linear

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        weight = None
        if self.class_weights is not None:
            weight = torch.tensor(self.class_weights, dtype=logits.dtype, device=logits.device)
        return F.cross_entropy(
            logits.float(), labels.long(), weight=weight, label_smoothing=self.label_smoothing
        )

    def predict(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = logits.float().softmax(dim=-1)
        return scores.argmax(dim=-1), scores

    def config(self) -> dict[str, Any]:
        return {
            "class_weights": self.class_weights,
            "label_smoothing": self.label_smoothing,
            "dropout": self.dropout,
        }


class MultiLabelClassificationTask(Task):
    """Multi-label classification: one sigmoid per label, binary cross-entropy, a threshold.

    Labels are 0/1 vectors of length ``num_labels``.
    """

    name = "multilabel-classification"
    multi_label = True
    default_metrics = ("f1",)

    def __init__(
        self,
        label_names: Sequence[str],
        *,
        threshold: float = 0.5,
        pos_weight: Sequence[float] | None = None,
    ) -> None:
        super().__init__(label_names)
        if not 0.0 < threshold < 1.0:
            raise ConfigError(f"threshold must be in (0, 1), got {threshold}")
        if pos_weight is not None and len(pos_weight) != self.num_labels:
            raise ConfigError(f"pos_weight has {len(pos_weight)} values for {self.num_labels}")
        self.threshold = float(threshold)
        self.pos_weight = None if pos_weight is None else [float(w) for w in pos_weight]

    def build_head(self, feature_dim: int) -> nn.Module:
        return nn.Linear(feature_dim, self.num_labels)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pos_weight = None
        if self.pos_weight is not None:
            pos_weight = torch.tensor(self.pos_weight, dtype=torch.float32, device=logits.device)
        return F.binary_cross_entropy_with_logits(
            logits.float(), labels.float(), pos_weight=pos_weight
        )

    def predict(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores = logits.float().sigmoid()
        return (scores >= self.threshold).long(), scores

    def config(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "pos_weight": self.pos_weight}
