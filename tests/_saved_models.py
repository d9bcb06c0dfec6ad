"""Tiny saved models of the first-party plugins (random weights, built in the test) and raw
inputs for them on disk, for the export and batch-prediction tests."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import numpy as np
import torch

import lepton_platform as lp
from lepton_platform.models import TransferModel

#: (domain, backbone, extra options) of the tiny model each modality's tests use.
MODELS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "text": ("text", "bert-base-uncased", {"pooling": "cls"}),
    "image": ("image", "resnet18", {}),
    "speech": ("speech", "wav2vec2-base", {}),
    "tabular": ("tabular", "mlp", {}),
}
LABELS = ["cat", "dog", "owl"]
LEPTON = str(Path(sys.executable).parent / "lepton")


def lepton(
    *args: str, cwd: Path, stdin: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The ``lepton`` command in a subprocess, offline."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [LEPTON, *args], cwd=cwd, input=stdin, capture_output=True, text=True, timeout=timeout,
        env=env, check=False,
    )  # fmt: skip


def save_tiny(
    folder: Path,
    modality: str,
    *,
    labels: list[str] = LABELS,
    task: str = "classification",
    seed: int = 0,
    **options: Any,
) -> Path:
    """A random tiny model of ``modality`` (a key of :data:`MODELS`) saved as a Lepton model
    folder, with metrics and fingerprints in its manifest as a run writes them."""
    domain, name, extra = MODELS[modality]
    torch.manual_seed(seed)
    spec = lp.get_backbone(name)
    backbone = spec.create(pretrained=None, **{**spec.tiny_options, **extra, **options})
    made = lp.create_task(task, label_names=labels)
    head = made.build_head(backbone.feature_dim)
    model = TransferModel(backbone, head).eval()
    return lp.save_model(
        folder,
        model,
        domain=domain,
        backbone=name,
        backbone_config=backbone.config(),
        task=task,
        task_config=made.config(),
        label_names=labels,
        preprocessing=backbone.preprocessor().config(),
        strategy={"name": "finetune", "params": {"lr": 0.001}},
        metrics={
            "test": {
                "accuracy": 0.75,
                "ci": {"key": "accuracy", "low": 0.6, "high": 0.9, "confidence": 0.95},
            }
        },
        data_fingerprints={"train": "f00d", "test": "beef"},
    )


def write_wav(path: Path, seconds: float, pitch: float, rate: int = 16000) -> Path:
    """A mono 16-bit tone."""
    t = np.arange(int(rate * seconds)) / rate
    samples = (0.5 * np.sin(2 * np.pi * pitch * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def write_png(path: Path, seed: int, size: int = 20) -> Path:
    """A random RGB picture."""
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (size, size + 3, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path
