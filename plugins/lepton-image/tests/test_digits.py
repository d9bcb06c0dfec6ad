"""scikit-learn's bundled digits through the whole image pipeline: the NumPy source, the
preprocessing cache, a tiny ResNet trained by the fine-tune engine, accuracy far above chance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from lepton_image.backbones import ResNetBackbone
from sklearn.datasets import load_digits

from lepton_platform import load_data
from lepton_platform.data import SplitConfig, prepare
from lepton_platform.engine.finetune import TrainConfig, Trainer
from lepton_platform.models import TransferModel
from lepton_platform.tasks import ClassificationTask


def test_digits_train_to_high_accuracy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEPTON_CACHE_DIR", str(tmp_path / "cache"))
    digits = load_digits()
    source = {"images": digits.images, "labels": digits.target, "value_range": [0, 16]}
    bundle = load_data("image", source, split=SplitConfig(validation=0.1, test=0.2, seed=0))
    assert bundle.label_names == [str(i) for i in range(10)]
    assert len(bundle.train) + len(bundle.validation) + len(bundle.test) == 1797

    torch.manual_seed(0)
    backbone = ResNetBackbone(
        "resnet18",
        small_input=True,
        image_size=16,
        width=16,
        blocks=[1, 1, 1, 1],
        augmentation={"scale": [0.7, 1.0], "hflip": 0.0},
    )
    prep = backbone.preprocessor()
    train, val, test = (prepare(bundle[s], prep) for s in ("train", "validation", "test"))
    task = ClassificationTask(bundle.label_names)
    model = TransferModel(backbone, task.build_head(backbone.feature_dim))
    config = TrainConfig(
        epochs=4, batch_size=64, lr=3e-3, scheduler="cosine", progress=False, trackers=()
    )
    trainer = Trainer(model, task, config)
    result = trainer.fit(train, val, prep)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    logits, labels = trainer.predict(test, prep)
    assert labels is not None
    accuracy = float((np.asarray(logits).argmax(-1) == np.asarray(labels)).mean())
    assert accuracy > 0.85, f"test accuracy {accuracy:.3f} (chance is 0.10)"
