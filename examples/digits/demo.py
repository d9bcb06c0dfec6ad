"""The main job: transfer from printed digits to handwritten digits, offline.

1. Source domain: digits printed in the fonts that matplotlib ships (``printed.py``), put
   through the preprocessing of the handwritten set. A ResNet-18 (quarter width, small-image
   stem) is trained on them and saved as a Lepton model.
2. Target domain: scikit-learn's bundled handwritten digits (8x8 scans of 43 writers).
   For each label budget (labelled examples per class) and seed, a labelled sample is drawn
   for training and another of the same size for validation; the test split is fixed and
   never chooses anything.
3. ``lepton_platform.compare`` runs linear probe, fine-tune, LP-FT and WiSE-FT from the source
   model beside the baselines (training from scratch; the source model applied as it is), over
   several seeds. The table is printed, accuracy is drawn against the label budget, and the
   negative-transfer guard speaks where transfer loses.

Run: ``bash scripts/demo.sh`` (or ``python examples/digits/demo.py --help``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from printed import render_printed_digits

LABELS = [str(d) for d in range(10)]
MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist_test"
ALL_STRATEGIES = [
    "linear-probe",
    "finetune",
    "freeze",
    "freeze-unfreeze",
    "unfreeze-milestones",
    "lp-ft",
    "l2-sp",
    "wise-ft",
    "adabn",
]


def digit_domain(name: str, per_class: int = 250) -> tuple[np.ndarray, np.ndarray, float]:
    """Images, labels and the top of the value range of one digit domain: ``printed``
    (rendered from fonts), ``handwritten`` (scikit-learn's 8x8 scans) or ``mnist``
    (../shared/data/mnist_test, 28x28)."""
    if name == "printed":
        images, labels = render_printed_digits(per_class, seed=0)
        return images, labels, 16.0
    if name == "handwritten":
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images.astype(np.float32), digits.target.astype(np.int64), 16.0
    if name == "mnist":
        if not MNIST.is_dir():
            raise SystemExit(f"{MNIST} is absent: the mnist domain needs ../shared/data")
        from lepton_image.idx import read_idx

        images = read_idx(MNIST / "t10k-images-idx3-ubyte.gz").astype(np.float32)
        labels = read_idx(MNIST / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
        return images, labels, 255.0
    raise SystemExit(f"unknown digit domain {name!r}: printed, handwritten or mnist")


BACKBONE = "resnet18"
BACKBONE_OPTIONS: dict[str, Any] = {"width": 16, "small_input": True, "image_size": 16}
STRATEGIES = ["linear-probe", "finetune", "lp-ft", "wise-ft"]


def arrays_source(
    images: np.ndarray, labels: np.ndarray, top: float, split: str | None = None
) -> dict[str, Any]:
    source: dict[str, Any] = {
        "images": images.astype(np.float32),
        "labels": labels,
        "label_names": LABELS,
        "value_range": [0, top],
    }
    if split is not None:
        source["split"] = split
    return source


def target_sample(
    images: np.ndarray,
    labels: np.ndarray,
    top: float,
    test_mask: np.ndarray,
    per_class: int,
    seed: int,
) -> list[dict[str, Any]]:
    """``per_class`` labelled training and as many validation examples per class, drawn with
    ``seed`` from the non-test part; the fixed test split."""
    rng = np.random.default_rng(1000 + seed)
    train_idx: list[int] = []
    val_idx: list[int] = []
    pool = np.flatnonzero(~test_mask)
    for digit in range(10):
        chosen = rng.permutation(pool[labels[pool] == digit])[: 2 * per_class]
        train_idx.extend(chosen[:per_class])
        val_idx.extend(chosen[per_class:])
    test_idx = np.flatnonzero(test_mask)
    return [
        arrays_source(images[train_idx], labels[train_idx], top, "train"),
        arrays_source(images[val_idx], labels[val_idx], top, "validation"),
        arrays_source(images[test_idx], labels[test_idx], top, "test"),
    ]


def plot(results: dict[int, Any], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = sorted(results)
    fig, ax = plt.subplots(figsize=(6, 4))
    names = [row["name"] for row in results[budgets[0]]["rows"]]
    for name in names:
        means, stds = [], []
        for budget in budgets:
            row = next(r for r in results[budget]["rows"] if r["name"] == name)
            means.append(row["mean"])
            stds.append(row["std"])
        style = "--" if name in ("scratch", "source-only") else "-"
        ax.errorbar(budgets, means, yerr=stds, label=name, marker="o", linestyle=style, capsize=3)
    ax.set_xscale("log")
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.set_xlabel("labelled target examples per class")
    ax.set_ylabel("test accuracy on the target")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo-output", help="output folder")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per label budget")
    parser.add_argument("--budgets", default="1,3,10", help="labels per class to sweep")
    parser.add_argument("--source-per-class", type=int, default=250)
    parser.add_argument("--source-epochs", type=int, default=6)
    parser.add_argument("--target-epochs", type=int, default=15)
    parser.add_argument("--source", default="printed", help="printed, handwritten or mnist")
    parser.add_argument("--target", default="handwritten", help="handwritten or mnist")
    parser.add_argument(
        "--strategies",
        default=",".join(STRATEGIES),
        help="comma-separated strategy names, or 'all'",
    )
    parser.add_argument(
        "--test-size",
        type=int,
        default=0,
        help="test images per class (default: half of the target domain)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: these models are tiny, and one thread per process "
        "does not stall when other work shares the cores)",
    )
    parser.add_argument("--quick", action="store_true", help="a tiny run (tests)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.budgets = 1, "1,3"
        args.source_per_class, args.source_epochs, args.target_epochs = 40, 2, 3

    import torch

    import lepton_platform as lp
    from lepton_platform.engine.finetune import TrainConfig

    torch.set_num_threads(args.threads)

    started = time.perf_counter()
    out = Path(args.out)
    marker = out / ".lepton-demo"
    if out.exists() and any(out.iterdir()):
        if not marker.exists():
            parser.error(f"{out} exists and is not a demo output folder; choose another --out")
        shutil.rmtree(out)  # an earlier demo run: start afresh
    out.mkdir(parents=True, exist_ok=True)
    marker.touch()
    budgets = [int(b) for b in args.budgets.split(",")]
    seeds = list(range(args.seeds))

    strategies = ALL_STRATEGIES if args.strategies == "all" else args.strategies.split(",")
    print(
        f"[1/3] reading the source domain ({args.source}) and the target ({args.target})",
        flush=True,
    )
    x_src, y_src, top_src = digit_domain(args.source, args.source_per_class)
    images, labels, top = digit_domain(args.target)
    print(
        f"[2/3] training the source model (ResNet-18, quarter width) on {len(y_src)} "
        f"{args.source} digits",
        flush=True,
    )
    source = lp.transfer(
        domain="image",
        data=arrays_source(x_src, y_src, top_src),
        split={"validation": 0.1, "test": 0.1, "seed": 0},
        backbone=BACKBONE,
        backbone_options=BACKBONE_OPTIONS,
        strategy="finetune",
        train=TrainConfig(
            epochs=args.source_epochs,
            batch_size=64,
            lr=3e-3,
            scheduler="cosine",
            monitor="accuracy",
            progress=False,
            seed=0,
        ),
        output_dir=out / "source",
        bootstrap=0,
    )
    source_model = out / "source" / "model"
    print(
        f"      source test accuracy ({args.source}): {source.metrics['test']['accuracy']:.3f}",
        flush=True,
    )

    test_mask = np.zeros(len(labels), dtype=bool)
    rng = np.random.default_rng(0)
    for digit in range(10):
        idx = rng.permutation(np.flatnonzero(labels == digit))
        test_mask[idx[: args.test_size or len(idx) // 2]] = True

    print(
        f"[3/3] transferring to {args.target} digits: budgets {budgets} labels per class, "
        f"{len(seeds)} seed(s), {test_mask.sum()} test images",
        flush=True,
    )
    target_train = TrainConfig(
        epochs=args.target_epochs,
        batch_size=16,
        lr=1e-3,
        scheduler="cosine",
        monitor="accuracy",
        early_stopping_patience=None,
        progress=False,
    )
    results: dict[int, Any] = {}
    warnings: list[str] = []
    for budget in budgets:
        comparison = lp.compare(
            strategies,
            seeds=seeds,
            baselines=True,
            source_model=source_model,
            progress=lambda msg, b=budget: print(f"      {b}/class: {msg}", flush=True),
            domain="image",
            data=lambda seed, k=budget: target_sample(images, labels, top, test_mask, k, seed),
            backbone=BACKBONE,
            backbone_options=BACKBONE_OPTIONS,
            pretrained=str(source_model),
            train=target_train,
            bootstrap=1000,  # the guard's paired intervals
        )
        results[budget] = comparison.to_json()
        print(f"\n### {budget} labelled example(s) per class\n")
        print(comparison.to_markdown() + "\n", flush=True)
        warnings.extend(f"{budget}/class: {w}" for w in comparison.warnings)

    plot(results, out / "accuracy_vs_labels.png", f"{args.source} -> {args.target} digits")
    summary = {
        "source": args.source,
        "target": args.target,
        "source_test_accuracy": source.metrics["test"]["accuracy"],
        "budgets": results,
        "warnings": warnings,
        "seconds": time.perf_counter() - started,
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=2, default=str))
    print(
        f"Done in {summary['seconds']:.0f} s. Table and figure in {out}/ "
        "(demo.json, accuracy_vs_labels.png)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
