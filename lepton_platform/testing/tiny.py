"""A tiny real model and data for checks that need *some* backbone: a two-block MLP with
batch-norm and two layer groups, and three well-separated Gaussian blobs. The conformance suite
applies every strategy to it; the core's strategy tests use it too. Small enough to train in a
second on CPU.

For strategies that need convolutional feature maps (MixStyle) there is a tiny convolutional
twin: :class:`TinyConv` (two Conv-BN-ReLU blocks) on the same blobs drawn as 8x8 images
(:func:`blob_images`), and :func:`tiny_conv_job`.
"""

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


class PixelPreprocessor(Preprocessor):
    """Batches rows of a ``pixels`` column (images ``(channels, height, width)``, already
    prepared) into ``(batch, channels, height, width)`` float tensors."""

    input_columns = ("pixels",)
    output_columns = ("pixels",)

    def transform(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {"pixels": batch["pixels"]}

    def collate(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        return {
            "pixels": torch.as_tensor(
                np.stack([np.asarray(e["pixels"], dtype=np.float32) for e in examples])
            )
        }

    def config(self) -> dict[str, Any]:
        return {}


class TinyConv(Backbone):
    """Conv-BN-ReLU twice on small images, then global average pooling: groups ``block1``
    (``width`` channels at full size) and ``block2`` (``2 * width`` channels, stride 2), both
    convolutional feature maps."""

    def __init__(self, channels: int = 1, width: int = 8, image_size: int = 8) -> None:
        super().__init__()
        self.block1 = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.block2 = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = 2 * width
        self.options = {"channels": channels, "width": width, "image_size": image_size}

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.pool(self.block2(self.block1(inputs["pixels"])))
        return features.flatten(1)

    def layer_groups(self) -> list[LayerGroup]:
        return [LayerGroup("block1", (self.block1,)), LayerGroup("block2", (self.block2,))]

    def preprocessor(self) -> Preprocessor:
        return PixelPreprocessor()

    def config(self) -> dict[str, Any]:
        return dict(self.options)

    def example_batch(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        size = self.options["image_size"]
        return {"pixels": torch.randn(batch_size, self.options["channels"], size, size)}


__all__ = [
    "PixelPreprocessor",
    "TinyConv",
    "TwoLayerBN",
    "blob_images",
    "blobs",
    "tiny_conv_job",
    "tiny_conv_model",
    "tiny_job",
    "tiny_model",
]


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


def _patterns(size: int) -> np.ndarray:
    """Four +-1 textures of ``size x size``: horizontal and vertical stripes, a checkerboard and
    diagonal stripes."""
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    textures = [i % 2, j % 2, (i + j) % 2, ((i + j) // 2) % 2]
    return np.stack([2.0 * t - 1.0 for t in textures]).astype(np.float32)


def blob_images(n: int, seed: int, shift: float = 0.0, size: int = 8) -> datasets.Dataset:
    """The blobs of :func:`blobs` drawn as one-channel ``size x size`` images (column
    ``pixels``): blob feature ``k`` is the strength of texture ``k`` (stripes one way, the
    other, a checkerboard, diagonal stripes), plus pixel noise. ``shift`` shifts the blob
    features (as in :func:`blobs`) and brightens the image by as much: a second domain that
    differs in style."""
    rows = blobs(n, seed=seed, shift=shift)
    x = np.asarray(rows["features"], dtype=np.float32)
    noise = np.random.default_rng(seed + 7919).normal(0, 0.3, (n, size, size))
    images = np.einsum("nk,khw->nhw", x, _patterns(size)) + noise + shift
    features = datasets.Features(
        {
            "pixels": datasets.Array3D(shape=(1, size, size), dtype="float32"),
            "label": datasets.ClassLabel(names=["a", "b", "c"]),
        }
    )
    return datasets.Dataset.from_dict(
        {"pixels": images[:, None].astype(np.float32), "label": rows["label"]},
        features=features,
    )


def tiny_model(seed: int = 0, batchnorm: bool = True) -> tuple[TransferModel, ClassificationTask]:
    """A :class:`TwoLayerBN` backbone with a classification head for the blobs' 3 labels."""
    torch.manual_seed(seed)
    task = ClassificationTask(["a", "b", "c"])
    backbone = TwoLayerBN(batchnorm=batchnorm)
    return TransferModel(backbone, task.build_head(backbone.feature_dim)), task


def tiny_conv_model(seed: int = 0) -> tuple[TransferModel, ClassificationTask]:
    """A :class:`TinyConv` backbone with a classification head for the blobs' 3 labels."""
    torch.manual_seed(seed)
    task = ClassificationTask(["a", "b", "c"])
    backbone = TinyConv()
    return TransferModel(backbone, task.build_head(backbone.feature_dim)), task


def tiny_job(epochs: int = 3, batchnorm: bool = True, **config: Any) -> TransferJob:
    """A :class:`TransferJob` on the tiny model and blobs (240 training, 90 validation rows,
    and 120 unlabelled rows of a shifted second domain for the adaptation strategies), with the
    backbone's initial weights as theta_0, its initial head as the source model's head (for
    source-free adaptation) and a quiet training configuration, wired to the engines like a
    job of the application layer."""
    model, task = tiny_model(batchnorm=batchnorm)
    return _job(
        model,
        task,
        blobs(240, seed=1),
        blobs(90, seed=2),
        blobs(120, seed=3, shift=1.0).remove_columns("label"),
        epochs,
        config,
    )


def tiny_conv_job(epochs: int = 3, **config: Any) -> TransferJob:
    """:func:`tiny_job` on :class:`TinyConv` and the blobs drawn as images
    (:func:`blob_images`): the same rows, the same shifted unlabelled target."""
    model, task = tiny_conv_model()
    return _job(
        model,
        task,
        blob_images(240, seed=1),
        blob_images(90, seed=2),
        blob_images(120, seed=3, shift=1.0).remove_columns("label"),
        epochs,
        config,
    )


def _job(
    model: TransferModel,
    task: ClassificationTask,
    train: datasets.Dataset,
    validation: datasets.Dataset,
    target: datasets.Dataset,
    epochs: int,
    config: Mapping[str, Any],
) -> TransferJob:
    from lepton_platform.api.job import resolve_metrics, resolve_monitor
    from lepton_platform.settings import TrainConfig
    from lepton_platform.strategies.base import snapshot
    from lepton_platform.strategies.jobs import Engine

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
        train=train,
        validation=validation,
        config=train_config,
        pretrained_state=snapshot(model.backbone),
        source_head=snapshot(model.head),
        unlabelled_target=target,
        metrics=resolve_metrics(None, task),
        monitor=resolve_monitor(train_config),
        engine=Engine(),
    )


def trained_source(job: TransferJob, epochs: int = 15) -> TransferJob:
    """``job`` with its model first fine-tuned on its own labelled training split, as a source
    model would have been: theta_0 and the source head are then that model's. For strategies
    that start from a whole source model (source-free adaptation), whose confident
    predictions an untrained head would never give."""
    import dataclasses

    from lepton_platform.strategies.base import snapshot
    from lepton_platform.strategies.finetune import FineTune

    FineTune().run(dataclasses.replace(job, config=job.with_config(epochs=epochs, lr=0.05)))
    job.pretrained_state = snapshot(job.model.backbone)
    job.source_head = snapshot(job.model.head)
    return job


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
