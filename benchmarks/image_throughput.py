"""Training throughput of the image plugin's ResNet-18 through the fine-tune engine against a
plain torchvision loop on the same image files, and the gains of channels-last and of the data
pipeline's cache, all measured in one run.

Data: ``--images`` random RGB images of 96x96 pixels written as PNG files in class folders
(so that decoding costs what it costs on real files), trained at ``--size`` pixels.

Methods (each round runs every method once, in a rotating order; medians over rounds):

  plain         torchvision the usual way: a ``Dataset`` that opens each file with PIL, then
                ``RandomResizedCrop``, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize``;
                torchvision's ``resnet18``; AdamW; ``loss.backward(); opt.step()``
  engine        the plugin's pipeline: ``ImageDomain.load`` -> ``prepare`` (decoded, resized
                pixels cached once by the data layer) -> ``Trainer.fit`` on ``resnet18`` with
                the plugin's augmentation, default options (NCHW batches)
  engine-nhwc   the same with ``channels_last=True`` (backbone, preprocessor, TrainConfig)

Ratios reported:

  engine / plain                 end to end, examples per second (goal: at least 1)
  channels-last gain             engine-nhwc / engine
  cache gain (data only)         producing one epoch of augmented, collated batches from the
                                 files (decode + resize every epoch) vs from the cached pixels
  compute-only channels-last     forward + backward of ResNet-18 on one fixed batch, NHWC vs
                                 NCHW (no data pipeline at all)

Run: .venv/bin/python benchmarks/image_throughput.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np
import torch
from lepton_image.backbones import ResNetBackbone
from lepton_image.domain import ImageDomain
from PIL import Image
from torch import nn
from torchvision import models, transforms

from lepton_platform.data import BadRecords, prepare
from lepton_platform.engine.finetune import TrainConfig, Trainer
from lepton_platform.models import TransferModel
from lepton_platform.tasks import ClassificationTask


def make_files(root: Path, count: int, classes: int, seed: int = 0) -> None:
    """``count`` 96x96 RGB PNG images in ``classes`` class folders."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(96, 96, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:05d}.png")


class FileDataset(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """The plain torchvision way: open and transform each file at every access."""

    def __init__(self, paths: list[str], labels: list[int], size: int) -> None:
        self.paths, self.labels = paths, labels
        self.transform = transforms.Compose(
            [
                transforms.RandomResizedCrop(size, scale=(0.35, 1.0)),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
            ]
        )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[index]) as image:
            pixels = self.transform(image.convert("RGB"))
        return pixels, self.labels[index]


def run_plain(paths: list[str], labels: list[int], args: argparse.Namespace) -> float:
    torch.manual_seed(0)
    model = models.resnet18(num_classes=args.classes)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(
        FileDataset(paths, labels, args.size), batch_size=args.batch_size, shuffle=True
    )
    loss_fn = nn.CrossEntropyLoss()
    seen = 0
    start = time.perf_counter()
    for _ in range(args.epochs):
        for pixels, target in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(pixels), target)
            loss.backward()
            optimizer.step()
            seen += len(target)
    return seen / (time.perf_counter() - start)


def run_engine(
    prepared: Any, label_names: list[str], args: argparse.Namespace, nhwc: bool
) -> float:
    torch.manual_seed(0)
    backbone = ResNetBackbone(
        "resnet18", image_size=args.size, resize_size=args.size, channels_last=nhwc
    )
    task = ClassificationTask(label_names)
    model = TransferModel(backbone, task.build_head(backbone.feature_dim))
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=1e-3,
        scheduler="constant",
        max_grad_norm=None,
        channels_last=nhwc,
        progress=False,
        trackers=(),
    )
    start = time.perf_counter()
    Trainer(model, task, config).fit(prepared, None, backbone.preprocessor())
    return float(len(prepared) * args.epochs / (time.perf_counter() - start))


def data_epoch_from_files(paths: list[str], labels: list[int], args: argparse.Namespace) -> float:
    loader = torch.utils.data.DataLoader(
        FileDataset(paths, labels, args.size), batch_size=args.batch_size
    )
    start = time.perf_counter()
    for _ in loader:
        pass
    return len(paths) / (time.perf_counter() - start)


def data_epoch_from_cache(prepared: Any, args: argparse.Namespace) -> float:
    prep = ResNetBackbone("resnet18", image_size=args.size, resize_size=args.size).preprocessor()
    rows = prepared.select_columns(["pixel_values", "label"])
    start = time.perf_counter()
    for begin in range(0, len(rows), args.batch_size):
        chunk = rows[begin : begin + args.batch_size]
        examples = [{"pixel_values": v} for v in chunk["pixel_values"]]
        prep.collate([prep.augment(e) for e in examples])
    return len(rows) / (time.perf_counter() - start)


def compute_only(args: argparse.Namespace, nhwc: bool, steps: int = 3) -> float:
    torch.manual_seed(0)
    model = models.resnet18(num_classes=args.classes)
    x = torch.randn(args.batch_size, 3, args.size, args.size)
    if nhwc:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model(x).sum().backward()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()
    return float(args.batch_size * steps / (time.perf_counter() - start))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        make_files(root, args.images, args.classes)
        os.environ["LEPTON_CACHE_DIR"] = str(Path(tmp) / "cache")
        ds = ImageDomain().load({"path": str(root)}, bad_records=BadRecords())
        paths = [item["path"] for item in ds["image"]]
        labels = list(ds["label"])
        names = list(ds.features["label"].names)
        prep = ResNetBackbone("resnet18", image_size=args.size, resize_size=args.size)
        start = time.perf_counter()
        prepared = prepare(ds, prep.preprocessor())
        first_prepare = time.perf_counter() - start
        start = time.perf_counter()
        prepare(ds, prep.preprocessor())
        cached_prepare = time.perf_counter() - start

        methods: dict[str, Callable[[], float]] = {
            "plain": lambda: run_plain(paths, labels, args),
            "engine": lambda: run_engine(prepared, names, args, nhwc=False),
            "engine-nhwc": lambda: run_engine(prepared, names, args, nhwc=True),
            "data-files": lambda: data_epoch_from_files(paths, labels, args),
            "data-cache": lambda: data_epoch_from_cache(prepared, args),
            "compute-nhwc": lambda: compute_only(args, nhwc=True),
            "compute-nchw": lambda: compute_only(args, nhwc=False),
        }
        results: dict[str, list[float]] = {name: [] for name in methods}
        order = list(methods)
        for round_index in range(args.rounds):
            shift = round_index % len(order)
            for name in order[shift:] + order[:shift]:
                results[name].append(methods[name]())
                print(f"round {round_index + 1} {name:13s} {results[name][-1]:8.1f} examples/s")

    median = {name: statistics.median(values) for name, values in results.items()}
    ratios = {
        "engine / plain": median["engine"] / median["plain"],
        "channels-last gain (engine)": median["engine-nhwc"] / median["engine"],
        "cache gain (data only)": median["data-cache"] / median["data-files"],
        "channels-last gain (compute only)": median["compute-nhwc"] / median["compute-nchw"],
    }
    print(
        f"\nResNet-18, {args.images} images at {args.size}px, batch {args.batch_size}, "
        f"{args.epochs} epoch(s) per measurement, {args.rounds} rounds, "
        f"{args.threads} thread(s)"
    )
    print(f"prepare(): first {first_prepare:.2f} s, from the cache {cached_prepare:.3f} s")
    for name, value in median.items():
        print(f"  {name:13s} {value:8.1f} examples/s (median)")
    for name, value in ratios.items():
        print(f"  {name:34s} {value:5.2f}x")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "runs": results,
                    "median": median,
                    "ratios": ratios,
                    "prepare_s": {"first": first_prepare, "cached": cached_prepare},
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
