"""The model layer's contracts: what a backbone is, what its preprocessing is, and the
backbone-plus-head model that the engines train.

A backbone maps a batch to pooled features ``(batch, feature_dim)``. It says its ordered layer
groups (input side first: freezing schedules and layer-wise learning rates walk them) and its
preprocessing. Plugins subclass :class:`Backbone` and :class:`Preprocessor`.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["Backbone", "LayerGroup", "Preprocessor", "TransferModel", "config_fingerprint"]


def config_fingerprint(config: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-ready mapping (cache keys, manifests)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class LayerGroup(NamedTuple):
    """A named, ordered part of a backbone (``stem``, ``layer1``, ``encoder.3``, ...)."""

    name: str
    modules: tuple[nn.Module, ...]

    def parameters(self) -> Iterator[nn.Parameter]:
        seen: set[int] = set()
        for module in self.modules:
            for param in module.parameters():
                if id(param) not in seen:
                    seen.add(id(param))
                    yield param


class Preprocessor(ABC):
    """A backbone's input pipeline, in three steps.

    - :meth:`transform` is deterministic (decode, resize, tokenise, resample) and runs through
      ``datasets.map(batched=True)``, so its result is cached and reused; it must be picklable.
    - :meth:`augment` is random, training only, applied per example when batches are drawn.
    - :meth:`collate` turns a list of transformed examples into a dict of tensors, the keyword
      arguments of :meth:`Backbone.forward` (dynamic padding belongs here).
    """

    #: Dataset columns ``transform`` reads (the domain's input columns).
    input_columns: tuple[str, ...] = ()
    #: Columns ``transform`` writes; ``collate`` reads them.
    output_columns: tuple[str, ...] = ()
    #: An output column holding each example's length (tokens, samples), or ``None``. When set,
    #: the fine-tune engine batches examples of similar length together in training, so that
    #: dynamic padding in ``collate`` pads little (``TrainConfig.group_by_length``).
    length_column: str | None = None

    @abstractmethod
    def transform(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """Map a batch of raw columns to the model's input columns (deterministic)."""

    def augment(self, example: dict[str, Any]) -> dict[str, Any]:
        """Random training-time augmentation of one transformed example (default: none)."""
        return example

    @abstractmethod
    def collate(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Batch transformed examples into tensors."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-ready description; it keys the preprocessing cache and goes in manifests."""

    def fingerprint(self) -> str:
        return config_fingerprint({"class": type(self).__qualname__, **self.config()})


class Backbone(nn.Module, ABC):
    """Maps a batch (the keyword tensors from its preprocessor's ``collate``) to pooled
    features of shape ``(batch, feature_dim)``."""

    feature_dim: int

    @abstractmethod
    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(batch, feature_dim)``."""

    @abstractmethod
    def layer_groups(self) -> list[LayerGroup]:
        """Ordered groups, input side first; together they hold every parameter exactly once."""

    @abstractmethod
    def preprocessor(self) -> Preprocessor:
        """The input pipeline matching this backbone and its weights."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-ready options such that ``spec.factory(pretrained=None, **config)`` rebuilds the
        same architecture (the weights then come from a saved state dict)."""

    @abstractmethod
    def example_batch(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """A random batch of the right shapes, for tests and shape checks."""

    def batchnorm_layers(self) -> list[_BatchNorm]:
        """The batch-norm layers (AdaBN re-estimates their statistics)."""
        return [m for m in self.modules() if isinstance(m, _BatchNorm)]

    def group_names(self) -> list[str]:
        return [g.name for g in self.layer_groups()]


class TransferModel(nn.Module):
    """A backbone with a task head on its pooled features: what the engines train and save."""

    def __init__(self, backbone: Backbone, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.backbone(**inputs))
        return logits
