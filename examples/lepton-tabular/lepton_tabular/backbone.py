"""The ``mlp`` backbone: a multi-layer perceptron over standardised feature vectors.

Each hidden layer (linear, activation, dropout) is one layer group, input side first. The
standardisation statistics (per-feature mean and standard deviation) are part of the backbone's
config, so a saved model preprocesses new inputs exactly as in training; compute them on the
training split with :func:`feature_statistics`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lepton_platform.artifacts import is_model_folder, load_backbone
from lepton_platform.errors import ArtifactError, ConfigError, DataError
from lepton_platform.models import Backbone, LayerGroup, Preprocessor, load_matching

__all__ = ["MLPBackbone", "TabularPreprocessor", "feature_statistics"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def feature_statistics(vectors: Sequence[Sequence[float]]) -> tuple[list[float], list[float]]:
    """Per-feature mean and standard deviation of ``vectors`` (a constant feature gets 1.0)."""
    array = np.asarray(vectors, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0:
        raise DataError(f"feature_statistics needs a non-empty 2-D table, got shape {array.shape}")
    std = array.std(axis=0)
    std[std == 0] = 1.0
    return array.mean(axis=0).tolist(), std.tolist()


class TabularPreprocessor(Preprocessor):
    """Standardises ``features`` with fixed statistics: ``(x - mean) / std`` (identity when none).

    Deterministic, so ``datasets`` caches its output; ``collate`` stacks the vectors.
    """

    input_columns = ("features",)
    output_columns = ("features_scaled",)

    def __init__(
        self,
        num_features: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        self.num_features = int(num_features)
        self.mean = None if mean is None else [float(v) for v in mean]
        self.std = None if std is None else [float(v) for v in std]

    def transform(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        array = np.asarray(batch["features"], dtype=np.float32)
        if array.ndim != 2 or array.shape[1] != self.num_features:
            raise DataError(
                f"the mlp backbone expects {self.num_features} features per row, got an array "
                f"of shape {array.shape}; build it with num_features matching your data"
            )
        width = self.num_features
        mean = np.zeros(width, np.float32) if self.mean is None else np.asarray(self.mean)
        std = np.ones(width, np.float32) if self.std is None else np.asarray(self.std)
        scaled = np.divide(np.subtract(array, mean, dtype=np.float32), std, dtype=np.float32)
        return {"features_scaled": scaled.tolist()}

    def collate(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [ex["features_scaled"] for ex in examples]
        return {"features": torch.tensor(rows, dtype=torch.float32)}

    def config(self) -> dict[str, Any]:
        return {"num_features": self.num_features, "mean": self.mean, "std": self.std}


class MLPBackbone(Backbone):
    """``num_features`` inputs, then one ``Linear -> activation -> Dropout`` block per entry of
    ``hidden``; the pooled features are the last block's output (``feature_dim = hidden[-1]``)."""

    def __init__(
        self,
        num_features: int,
        hidden: Sequence[int] = (64, 32),
        *,
        activation: str = "relu",
        dropout: float = 0.0,
        feature_mean: Sequence[float] | None = None,
        feature_std: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        hidden = [int(h) for h in hidden]
        if num_features < 1:
            raise ConfigError(f"mlp: num_features must be at least 1, got {num_features}")
        if not hidden or min(hidden) < 1:
            raise ConfigError(f"mlp: hidden must list at least one positive width, got {hidden}")
        if activation not in _ACTIVATIONS:
            raise ConfigError(
                f"mlp: unknown activation {activation!r}; choose one of {sorted(_ACTIVATIONS)}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"mlp: dropout must be in [0, 1), got {dropout}")
        for label, stats in (("feature_mean", feature_mean), ("feature_std", feature_std)):
            if stats is not None and len(stats) != num_features:
                raise ConfigError(f"mlp: {label} has {len(stats)} values for {num_features}")
        if feature_std is not None and min(feature_std) <= 0:
            raise ConfigError("mlp: feature_std values must be positive")
        self.num_features = int(num_features)
        self.hidden = hidden
        self.activation = activation
        self.dropout = float(dropout)
        self.feature_mean = None if feature_mean is None else [float(v) for v in feature_mean]
        self.feature_std = None if feature_std is None else [float(v) for v in feature_std]
        widths = [self.num_features, *hidden]
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(w_in, w_out), _ACTIVATIONS[activation](), nn.Dropout(dropout))
            for w_in, w_out in itertools.pairwise(widths)
        )
        self.feature_dim = hidden[-1]

    @classmethod
    def build(cls, pretrained: str | Path | None = None, **options: Any) -> MLPBackbone:
        """Build from options. ``pretrained`` is a Lepton model folder trained with an ``mlp``
        backbone (read through the core's ``load_backbone``: checksums verified, its recorded
        architecture rebuilt, the options given here winning), or a ``.safetensors`` file (or a
        folder holding ``model.safetensors``) whose tensors have this backbone's names and
        shapes."""
        if pretrained is not None and is_model_folder(pretrained):
            model, _ = load_backbone(pretrained, cls, options)
            return model
        model = cls(**options)
        if pretrained is not None:
            model.load_weights(pretrained)
        return model

    def load_weights(self, path: str | Path) -> None:
        """Load weights saved from an ``mlp`` backbone of the same architecture (a raw state
        dict: every tensor must fit)."""
        from safetensors.torch import load_file

        file = Path(path)
        if file.is_dir():
            file = file / "model.safetensors"
        if not file.is_file():
            raise ArtifactError(f"mlp: no weights at {file}")
        report = load_matching(self, load_file(str(file)), source=str(file))
        if report.missing or report.unexpected or report.mismatched:
            raise ArtifactError(
                f"mlp: {file} does not fit this architecture: missing {report.missing}, "
                f"unexpected {report.unexpected}, shape mismatch "
                f"{[k for k, _, _ in report.mismatched]}; matched {len(report.matched)} tensors"
            )
        self.load_report = report

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        x = inputs["features"]
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise DataError(
                f"mlp: expected features of shape (batch, {self.num_features}), "
                f"got {tuple(x.shape)}"
            )
        for block in self.blocks:
            x = block(x)
        return x

    def layer_groups(self) -> list[LayerGroup]:
        return [LayerGroup(f"layer{i}", (block,)) for i, block in enumerate(self.blocks)]

    def preprocessor(self) -> TabularPreprocessor:
        return TabularPreprocessor(self.num_features, self.feature_mean, self.feature_std)

    def config(self) -> dict[str, Any]:
        return {
            "num_features": self.num_features,
            "hidden": list(self.hidden),
            "activation": self.activation,
            "dropout": self.dropout,
            "feature_mean": self.feature_mean,
            "feature_std": self.feature_std,
        }

    def example_batch(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        return {"features": torch.randn(batch_size, self.num_features)}
