"""A tiny but real plugin for the artifact tests: a ``vectors`` domain (rows of 4 floats),
a small backbone with batch norm (so buffers are saved too) and its preprocessor.

The tests register it in process with ``lepton_platform.register_plugin``; the subprocess
tests import this file by path and register it the same way (or leave it out, to see the
missing plugin named).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import torch
from torch import nn

from lepton_platform import BackboneSpec, DomainSpec, hookimpl
from lepton_platform.data import BadRecords
from lepton_platform.domains import Domain
from lepton_platform.errors import DataError
from lepton_platform.models import Backbone, LayerGroup, Preprocessor

PLUGIN_NAME = "artifact-test-plugin"
DISTRIBUTION = "lepton-artifact-testkit"
VERSION = "0.3.1"
DOMAIN = "art-vectors"
BACKBONE = "art-mlp"
WIDTH = 4


class VectorDomain(Domain):
    """Inputs are sequences of ``WIDTH`` numbers in a ``values`` column."""

    name = DOMAIN
    input_columns = ("values",)

    def load(
        self, source: Mapping[str, Any], *, bad_records: BadRecords
    ) -> datasets.Dataset | datasets.DatasetDict:
        rows = source["rows"]
        return datasets.Dataset.from_dict(
            {"values": [list(map(float, r)) for r, _ in rows], "label": [int(y) for _, y in rows]}
        )

    def from_inputs(self, inputs: Sequence[Any]) -> datasets.Dataset:
        values = []
        for i, item in enumerate(inputs):
            array = np.asarray(item, dtype=np.float64)
            if array.shape != (WIDTH,):
                raise DataError(f"input {i}: expected {WIDTH} numbers, got shape {array.shape}")
            values.append(array.tolist())
        return datasets.Dataset.from_dict({"values": values})

    def example_dataset(
        self, num_examples: int, label_names: Sequence[str], seed: int = 0
    ) -> datasets.Dataset:
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, len(label_names), num_examples)
        values = rng.normal(size=(num_examples, WIDTH)) + labels[:, None]
        return datasets.Dataset.from_dict({"values": values.tolist(), "label": labels.tolist()})


class ScalePreprocessor(Preprocessor):
    """Multiplies the values by ``scale`` (deterministic) into a ``x`` column."""

    input_columns = ("values",)
    output_columns = ("x",)

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def transform(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {"x": [[v * self.scale for v in row] for row in batch["values"]]}

    def collate(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        return {"x": torch.tensor([e["x"] for e in examples], dtype=torch.float32)}

    def config(self) -> dict[str, Any]:
        return {"scale": self.scale}


class TinyNet(Backbone):
    """Linear, batch norm, ReLU: ``(batch, WIDTH)`` to ``(batch, hidden)``."""

    def __init__(self, hidden: int = 8, scale: float = 0.5) -> None:
        super().__init__()
        self.linear = nn.Linear(WIDTH, hidden)
        self.norm = nn.BatchNorm1d(hidden)
        self.feature_dim = hidden
        self.hidden, self.scale = hidden, scale

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.linear(inputs["x"])))

    def layer_groups(self) -> list[LayerGroup]:
        return [LayerGroup("linear", (self.linear,)), LayerGroup("norm", (self.norm,))]

    def preprocessor(self) -> Preprocessor:
        return ScalePreprocessor(self.scale)

    def config(self) -> dict[str, Any]:
        return {"hidden": self.hidden, "scale": self.scale}

    def example_batch(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        return {"x": torch.randn(batch_size, WIDTH)}


def _backbone(pretrained: Any = None, hidden: int = 8, scale: float = 0.5) -> TinyNet:
    if pretrained is not None:
        raise ValueError("art-mlp has no pretrained weights")
    return TinyNet(hidden=hidden, scale=scale)


@hookimpl
def lepton_domains() -> list[DomainSpec]:
    return [DomainSpec(name=DOMAIN, factory=VectorDomain, modality="vectors")]


@hookimpl
def lepton_backbones() -> list[BackboneSpec]:
    return [BackboneSpec(name=BACKBONE, factory=_backbone, domain=DOMAIN)]
