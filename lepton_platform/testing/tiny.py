"""A tiny real model and data for checks that need *some* backbone: a two-block MLP with
batch-norm and two layer groups, and three well-separated Gaussian blobs. The conformance suite
applies every strategy to it; the core's strategy tests use it too. Small enough to train in a
second on CPU."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from torch import nn

from lepton_platform.models import Backbone, LayerGroup, Preprocessor, TransferModel
from lepton_platform.strategies.base import TransferJob
from lepton_platform.strategies.probe import FeaturePreprocessor
from lepton_platform.tasks import ClassificationTask


class TwoLayerBN(Backbone):
    """Linear-BN-ReLU twice: groups ``block1`` (input side) and ``block2``."""

    def __init__(self, num_features: int = 4, hidden: int = 16, batchnorm: bool = True) -> None:
        super().__init__()
        norm: type[nn.Module] = nn.BatchNorm1d if batchnorm else nn.Identity
        self.block1 = nn.Sequential(nn.Linear(num_features, hidden), norm(hidden), nn.ReLU())
        self.block2 = nn.Sequential(nn.Linear(hidden, hidden), norm(hidden), nn.ReLU())
        self.feature_dim = hidden
        self.calls = 0
        self.options = {"num_features": num_features, "hidden": hidden, "batchnorm": batchnorm}

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        features: torch.Tensor = self.block2(self.block1(inputs["features"]))
        return features

    def layer_groups(self) -> list[LayerGroup]:
        return [LayerGroup("block1", (self.block1,)), LayerGroup("block2", (self.block2,))]

    def preprocessor(self) -> Preprocessor:
        return FeaturePreprocessor()

    def config(self) -> dict[str, Any]:
        return dict(self.options)

    def example_batch(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        return {"features": torch.randn(batch_size, self.options["num_features"])}


__all__ = ["TwoLayerBN", "blobs", "tiny_job", "tiny_model"]


def blobs(n: int, seed: int, shift: float = 0.0, num_features: int = 4) -> datasets.Dataset:
    """Three Gaussian blobs (well separated), optionally shifted (a second domain)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[3, 0, 0, 0], [0, 3, 0, 0], [0, 0, 3, 0]], dtype=np.float32)
    labels = rng.integers(0, 3, size=n)
    x = centres[labels][:, :num_features] + rng.normal(0, 0.7, (n, num_features)) + shift
    features = datasets.Features(
        {
            "features": datasets.Sequence(datasets.Value("float32")),
            "label": datasets.ClassLabel(names=["a", "b", "c"]),
        }
    )
    return datasets.Dataset.from_dict(
        {"features": x.astype(np.float32).tolist(), "label": labels.tolist()}, features=features
    )


def tiny_model(seed: int = 0, batchnorm: bool = True) -> tuple[TransferModel, ClassificationTask]:
    """A :class:`TwoLayerBN` backbone with a classification head for the blobs' 3 labels."""
    torch.manual_seed(seed)
    task = ClassificationTask(["a", "b", "c"])
    backbone = TwoLayerBN(batchnorm=batchnorm)
    return TransferModel(backbone, task.build_head(backbone.feature_dim)), task


def tiny_job(epochs: int = 3, batchnorm: bool = True, **config: Any) -> TransferJob:
    """A :class:`TransferJob` on the tiny model and blobs (240 training, 90 validation rows,
    and 120 unlabelled rows of a shifted second domain for the adaptation strategies), with the
    backbone's initial weights as theta_0 and a quiet training configuration, wired to the
    engines like a job of the application layer."""
    from lepton_platform.api.job import resolve_metrics, resolve_monitor
    from lepton_platform.engine.jobs import Engine
    from lepton_platform.settings import TrainConfig
    from lepton_platform.strategies.base import snapshot

    model, task = tiny_model(batchnorm=batchnorm)
    settings: dict[str, Any] = {
        "epochs": epochs,
        "batch_size": 32,
        "lr": 0.01,
        "seed": 0,
        "progress": False,
        "monitor": "accuracy",
    }
    settings.update(config)
    train_config = TrainConfig(**settings)
    return TransferJob(
        model=model,
        task=task,
        preprocessor=model.backbone.preprocessor(),
        train=blobs(240, seed=1),
        validation=blobs(90, seed=2),
        config=train_config,
        pretrained_state=snapshot(model.backbone),
        unlabelled_target=blobs(120, seed=3, shift=1.0).remove_columns("label"),
        metrics=resolve_metrics(None, task),
        monitor=resolve_monitor(train_config),
        engine=Engine(),
    )


def save_backbone(
    folder: str | Path,
    backbone: Backbone,
    *,
    domain: str,
    name: str,
    label_names: Sequence[str] = ("a", "b"),
    config: Mapping[str, Any] | None = None,
    preprocessing: Mapping[str, Any] | None = None,
) -> Path:
    """Save ``backbone`` (registered as ``name``, reading ``domain``'s inputs) with a fresh
    classification head as a Lepton model folder, as if it had been trained: the source model
    of a plugin's own loading tests. ``config`` is what the manifest records (default:
    ``backbone.config()``); ``preprocessing`` that of its preprocessor."""
    from lepton_platform.api.predictor import save_model

    task = ClassificationTask(list(label_names))
    return save_model(
        folder,
        TransferModel(backbone, task.build_head(backbone.feature_dim)),
        domain=domain,
        backbone=name,
        backbone_config=dict(backbone.config() if config is None else config),
        task="classification",
        task_config=task.config(),
        label_names=task.label_names,
        preprocessing=dict(
            backbone.preprocessor().config() if preprocessing is None else preprocessing
        ),
        strategy={"name": "finetune"},
        metrics={},
        data_fingerprints={},
    )
