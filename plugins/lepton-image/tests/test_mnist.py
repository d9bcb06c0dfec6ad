"""MNIST (the t10k files in ../shared/data/mnist_test) written out as PNG class folders, read by
the folder source, and learnt by a small ResNet through the fine-tune engine."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from lepton_image.backbones import ResNetBackbone
from PIL import Image

from lepton_platform import load_data
from lepton_platform.data import SplitConfig, prepare
from lepton_platform.engine.finetune import TrainConfig, Trainer
from lepton_platform.models import TransferModel
from lepton_platform.tasks import ClassificationTask

MNIST = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "mnist_test"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(not MNIST.is_dir(), reason=f"MNIST not found at {MNIST}"),
]


def _idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format: magic, dimension sizes, then uint8 data)."""
    data = gzip.decompress(path.read_bytes())
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def test_mnist_folders_train_a_resnet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEPTON_CACHE_DIR", str(tmp_path / "cache"))
    images = _idx(MNIST / "t10k-images-idx3-ubyte.gz")
    labels = _idx(MNIST / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    root = tmp_path / "mnist"
    count = 3000
    for i in range(count):
        folder = root / str(labels[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i]).save(folder / f"{i:05d}.png")
    bundle = load_data("image", {"path": str(root)}, split=SplitConfig(0.1, 0.2, seed=0))
    assert bundle.label_names == [str(d) for d in range(10)]

    torch.manual_seed(0)
    backbone = ResNetBackbone(
        "resnet18",
        small_input=True,
        image_size=28,
        width=16,
        blocks=[1, 1, 1, 1],
        augmentation={"scale": [0.8, 1.0], "hflip": 0.0},
    )
    prep = backbone.preprocessor()
    train, val, test = (prepare(bundle[s], prep) for s in ("train", "validation", "test"))
    task = ClassificationTask(bundle.label_names)
    model = TransferModel(backbone, task.build_head(backbone.feature_dim))
    config = TrainConfig(
        epochs=3, batch_size=64, lr=3e-3, scheduler="cosine", progress=False, trackers=()
    )
    trainer = Trainer(model, task, config)
    trainer.fit(train, val, prep)
    logits, truth = trainer.predict(test, prep)
    assert truth is not None
    accuracy = float((np.asarray(logits).argmax(-1) == np.asarray(truth)).mean())
    assert accuracy > 0.9, f"MNIST test accuracy {accuracy:.3f} (chance is 0.10)"
