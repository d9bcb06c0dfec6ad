"""A tiny backbone, preprocessor and in-memory dataset for the fine-tune engine tests, and a
script (``python tests/_engine_helpers.py ...``) that the subprocess tests run: the SIGKILL /
resume test and the two-process ``accelerate launch`` test.

Real torch modules and a real ``datasets.Dataset``; small enough to train in well under a
second."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from torch import nn

from lepton_platform.models import Backbone, LayerGroup, Preprocessor, TransferModel
from lepton_platform.strategies.probe import FeaturePreprocessor as _Features
from lepton_platform.tasks import ClassificationTask

NUM_FEATURES = 6
LABELS = ("neg", "pos", "mid")


class FeaturePreprocessor(_Features):
    """Rows hold a ``features`` list (the probe's preprocessor); ``augment`` (optional) adds
    seeded Gaussian noise."""

    def __init__(self, noise: float = 0.0) -> None:
        self.noise = noise

    def augment(self, example: dict[str, Any]) -> dict[str, Any]:
        if not self.noise:
            return example
        values = torch.as_tensor(example["features"], dtype=torch.float32)
        return {**example, "features": values + self.noise * torch.randn_like(values)}

    def config(self) -> dict[str, Any]:
        return {"noise": self.noise}


class TinyMLP(Backbone):
    """Linear-ReLU-(Dropout)-Linear over ``features``: groups ``stem`` and ``body``."""

    def __init__(self, hidden: int = 16, dropout: float = 0.0) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Linear(NUM_FEATURES, hidden), nn.LayerNorm(hidden), nn.ReLU())
        self.body = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU())
        self.feature_dim = hidden
        self.options = {"hidden": hidden, "dropout": dropout}

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(inputs["features"]))

    def layer_groups(self) -> list[LayerGroup]:
        return [LayerGroup("stem", (self.stem,)), LayerGroup("body", (self.body,))]

    def preprocessor(self) -> Preprocessor:
        return FeaturePreprocessor()

    def config(self) -> dict[str, Any]:
        return dict(self.options)

    def example_batch(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        return {"features": torch.randn(batch_size, NUM_FEATURES)}


def make_task() -> ClassificationTask:
    return ClassificationTask(list(LABELS))


def make_model(seed: int = 0, hidden: int = 16, dropout: float = 0.0) -> TransferModel:
    torch.manual_seed(seed)
    backbone = TinyMLP(hidden=hidden, dropout=dropout)
    return TransferModel(backbone, make_task().build_head(backbone.feature_dim))


def make_dataset(n: int = 64, *, seed: int = 0, flip: bool = False) -> datasets.Dataset:
    """Three classes decided by two features (learnable in a few epochs); ``flip`` swaps the
    labels 0 and 1 (a validation split that gets worse as training gets better)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, NUM_FEATURES)).astype(np.float32)
    y = np.where(x[:, 0] > 0.5, 1, np.where(x[:, 1] > 0.0, 2, 0))
    if flip:
        y = np.where(y == 0, 1, np.where(y == 1, 0, y))
    features = datasets.Features(
        {
            "features": datasets.Sequence(datasets.Value("float32")),
            "label": datasets.ClassLabel(names=list(LABELS)),
        }
    )
    return datasets.Dataset.from_dict(
        {"features": x.tolist(), "label": y.tolist()}, features=features
    )


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ----------------------------------------------------------------------------- script


class _Sleep:
    """A callback that slows each step so that the test can kill the run mid-epoch."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_start(self, trainer: Any) -> None:
        pass

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        pass

    def on_step_end(self, trainer: Any, step: int, logs: Mapping[str, float]) -> None:
        time.sleep(self.seconds)

    def on_epoch_end(self, trainer: Any, epoch: int, logs: Mapping[str, float]) -> None:
        pass

    def on_train_end(self, trainer: Any, result: Any) -> None:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Train the tiny model and write ``result.json`` and ``final.safetensors`` into --out."""
    from safetensors.torch import save_file

    from lepton_platform.engine.finetune import Callback, TrainConfig, Trainer

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--checkpoint-every", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--no-checkpoints", action="store_true")
    parser.add_argument("--freeze-first-epoch", action="store_true")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    out = Path(args.out)
    model = make_model(seed=1, dropout=args.dropout)
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        scheduler="cosine",
        warmup_steps=2,
        checkpoint_every_steps=None if args.no_checkpoints else args.checkpoint_every,
        keep_checkpoints=3,
        seed=7,
        progress=False,
        log_every_steps=1,
    )
    callbacks: list[Callback] = []
    if args.freeze_first_epoch:

        class FreezeFirstEpoch(Callback):
            """Head only in epoch 0, everything afterwards (a freeze schedule)."""

            def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
                if epoch == 0:
                    trainer.set_trainable(lambda name, _: name.startswith("head."))
                else:
                    trainer.set_trainable(lambda name, _: True)

        callbacks.append(FreezeFirstEpoch())
    if args.sleep:
        sleeper = _Sleep(args.sleep)
        callbacks.append(sleeper)  # type: ignore[arg-type]
    trainer = Trainer(
        model,
        make_task(),
        config,
        output_dir=None if args.no_checkpoints else out / "run",
        callbacks=callbacks,
    )
    result = trainer.fit(
        make_dataset(args.n, seed=3),
        make_dataset(24, seed=4),
        FeaturePreprocessor(noise=args.noise),
        resume=args.resume,
    )
    if trainer.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: v.contiguous() for k, v in model.state_dict().items()},
            str(out / "final.safetensors"),
        )
        data = {**result.to_json(), "num_processes": trainer.accelerator.num_processes}
        (out / "result.json").write_text(json.dumps(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
