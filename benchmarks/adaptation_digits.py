"""Unsupervised domain adaptation, measured: scikit-learn's 8x8 digits (labelled source) to
MNIST (unlabelled target), over several seeds.

Methods: source-only fine-tuning; AdaBN after source-only training; DANN; CORAL; DANN and
CORAL each with AdaBN; and target-supervised fine-tuning on the labelled target pool as the
ceiling. The default backbone is an MLP with batch-norm (the kit's ``TwoLayerBN``, 64 -> 128
-> 128) on 8x8 grey levels (MNIST's digit box shrunk to 8x8 like the scans); ``--backbone
resnet`` uses the image plugin's small ResNet (random init, ``small_input``, one block per
stage, ``--image-size``/``--width``, no augmentation) instead, ~20x slower on CPU.
Epochs are chosen by the label-free validator given with ``--validator`` (default: source
validation accuracy); the MNIST test rows (disjoint from the unlabelled target pool) choose nothing.

    .venv/bin/python benchmarks/adaptation_digits.py \\
        --out benchmarks/results/adaptation_digits.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
ROOT = Path(__file__).resolve().parent.parent
MNIST = ROOT.parent / "shared" / "data" / "mnist_test"


def read_mnist() -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(MNIST / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(MNIST / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images, labels.astype(np.int64)


def to_vectors(images: np.ndarray) -> np.ndarray:
    """Images (uint8, any size) as 8x8 grey levels in [0, 1], flattened: MNIST's 20x20 digit
    box (its centre) shrunk with a box filter, like the 4x4 block counts of the 8x8 scans."""
    from PIL import Image

    if images.shape[1] == 8:
        return (images / 255.0).reshape(len(images), 64).astype(np.float32)
    out = [
        np.asarray(Image.fromarray(x[4:24, 4:24]).resize((8, 8), Image.Resampling.BOX))
        for x in images
    ]
    return (np.stack(out) / 255.0).reshape(len(images), 64).astype(np.float32)


def to_dataset(images: np.ndarray, labels: np.ndarray | None, vectors: bool) -> Any:
    import datasets
    from PIL import Image

    names = [str(i) for i in range(10)]
    data: dict[str, Any]
    feats: dict[str, Any]
    if vectors:
        data = {"features": to_vectors(images).tolist()}
        feats = {"features": datasets.Sequence(datasets.Value("float32"))}
    else:
        data = {"image": [Image.fromarray(x) for x in images]}
        feats = {"image": datasets.Image()}
    if labels is not None:
        data["label"] = labels.tolist()
        feats["label"] = datasets.ClassLabel(names=names)
    return datasets.Dataset.from_dict(data, features=datasets.Features(feats))


METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "source-only": ("finetune", {}),
    "adabn": ("coral", {"weight": 0.0, "adabn": True}),  # source-only training, then AdaBN
    "dann": ("dann", {"weight": 1.0}),
    "coral": ("coral", {"weight": 1.0}),
    "dann+adabn": ("dann", {"weight": 1.0, "adabn": True}),
    "coral+adabn": ("coral", {"weight": 1.0, "adabn": True}),
    "target-supervised": ("finetune", {}),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--backbone", choices=["mlp-bn", "resnet"], default="mlp-bn")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=12)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--target-pool", type=int, default=1000)
    parser.add_argument("--target-test", type=int, default=2000)
    parser.add_argument("--validator", default="source-accuracy")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if not MNIST.is_dir():
        print(f"MNIST not found at {MNIST}; nothing measured", file=sys.stderr)
        return 1

    import torch
    from sklearn.datasets import load_digits

    from lepton_platform.data import prepare
    from lepton_platform.engine.evaluate import compute_metrics
    from lepton_platform.engine.finetune import TrainConfig
    from lepton_platform.models import TransferModel
    from lepton_platform.registry import create_backbone, create_strategy
    from lepton_platform.strategies import TransferJob
    from lepton_platform.tasks import ClassificationTask
    from lepton_platform.testing.tiny import TwoLayerBN

    torch.set_num_threads(2)
    digits = load_digits()
    src_images = np.clip(digits.images * 16, 0, 255).astype(np.uint8)  # 0..16 -> 0..255
    src_labels = digits.target.astype(np.int64)
    mnist_x, mnist_y = read_mnist()
    options = {
        "small_input": True,
        "in_channels": 1,
        "image_size": args.image_size,
        "width": args.width,
        "blocks": [1, 1, 1, 1],
        "augmentation": False,
    }
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(src_images))
        n_val = len(order) // 5
        m_order = rng.permutation(len(mnist_x))
        pool = m_order[: args.target_pool]
        pool_val = m_order[args.target_pool : args.target_pool + 300]
        test = m_order[-args.target_test :]
        vec = args.backbone == "mlp-bn"
        raw = {
            "source_train": to_dataset(src_images[order[n_val:]], src_labels[order[n_val:]], vec),
            "source_val": to_dataset(src_images[order[:n_val]], src_labels[order[:n_val]], vec),
            "target_pool": to_dataset(mnist_x[pool], None, vec),
            "target_train": to_dataset(mnist_x[pool], mnist_y[pool], vec),
            "target_val": to_dataset(mnist_x[pool_val], mnist_y[pool_val], vec),
            "target_test": to_dataset(mnist_x[test], mnist_y[test], vec),
        }
        for method in args.methods:
            strategy_name, params = METHODS[method]
            torch.manual_seed(seed)
            backbone = (
                TwoLayerBN(num_features=64, hidden=128)
                if vec
                else create_backbone("resnet18", pretrained=None, **options)
            )
            pre = backbone.preprocessor()
            data = {k: prepare(v, pre, desc=k) for k, v in raw.items()}
            task = ClassificationTask([str(i) for i in range(10)])
            model = TransferModel(backbone, task.build_head(backbone.feature_dim))
            supervised = method == "target-supervised"
            if strategy_name != "finetune":
                params = {**params, "validator": args.validator}
            strategy = create_strategy(strategy_name, **params)
            config = TrainConfig(
                epochs=args.epochs,
                batch_size=64,
                lr=3e-3,
                seed=seed,
                progress=False,
                monitor="accuracy",
                trackers=(),
            )
            job = TransferJob(
                model=model,
                task=task,
                preprocessor=pre,
                train=data["target_train" if supervised else "source_train"],
                validation=data["target_val" if supervised else "source_val"],
                config=config,
                unlabelled_target=None if supervised else data["target_pool"],
            )
            t0 = time.perf_counter()
            outcome = strategy.run(job)
            logits, labels = job.trainer(model=outcome.model).predict(data["target_test"], pre)
            assert labels is not None
            acc = float(compute_metrics(task, logits, labels, ["accuracy"])["accuracy"])
            s_logits, s_labels = job.trainer(model=outcome.model).predict(data["source_val"], pre)
            assert s_labels is not None
            row = {
                "method": method,
                "seed": seed,
                "target_test_accuracy": acc,
                "source_val_accuracy": float((s_logits.argmax(1) == s_labels).mean()),
                "seconds": time.perf_counter() - t0,
                "selection": outcome.details.get("selection"),
            }
            rows.append(row)
            print(
                f"seed {seed} {method:18s} target acc {acc:.4f} ({row['seconds']:.0f}s)", flush=True
            )
    summary: dict[str, dict[str, float]] = {}
    for method in args.methods:
        accs = [r["target_test_accuracy"] for r in rows if r["method"] == method]
        summary[method] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)), "n": len(accs)}
    print("\n| method | MNIST test accuracy (mean ± std) |\n| --- | --- |")
    for method, s in summary.items():
        print(f"| {method} | {s['mean']:.3f} ± {s['std']:.3f} |")
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps(
                {"args": vars(args), "summary": summary, "runs": rows}, indent=2, default=str
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
