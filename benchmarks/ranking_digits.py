"""Does the transferability ranking predict fine-tuning accuracy, and what does it save?

Source domain: printed digits rendered from matplotlib's fonts (examples/digits/printed.py).
Target domain: scikit-learn's handwritten digits (8x8 scans). Candidates: MLP source models
(the example tabular plugin's ``mlp``) trained on the printed digits in different ways (no
training, a few epochs, many epochs, wider, on shuffled labels) and saved as Lepton model
folders. Each candidate is scored with LogME / H-score / LEEP on the target's training split
(``lepton_platform.ranking.rank``) and, separately, fine-tuned on it and tested; the script
prints the Spearman and Kendall correlations between the scores and the test accuracies and
the time of ranking against fine-tuning every candidate.

    .venv/bin/python benchmarks/ranking_digits.py [--out benchmarks/results/ranking_digits.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples" / "digits"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


def write_csv(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    header = ",".join(f"p{i}" for i in range(64)) + ",label"
    rows = [",".join(f"{v:g}" for v in x) + f",d{y}" for x, y in zip(images, labels, strict=True)]
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")


SOURCES = {
    # name: (hidden, epochs, shuffled labels)
    "untrained": ([64], 0, False),
    "shuffled-labels": ([64], 15, True),
    "1-epoch": ([64], 1, False),
    "4-epochs": ([64], 4, False),
    "15-epochs": ([64], 15, False),
    "15-epochs-wide": ([256], 15, False),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    parser.add_argument("--per-class", type=int, default=60, help="printed source digits/class")
    args = parser.parse_args()

    import datasets
    from printed import render_printed_digits
    from scipy.stats import kendalltau, spearmanr
    from sklearn.datasets import load_digits

    import lepton_platform as lp  # noqa: F401  (plugins load)
    from lepton_platform.api.predictor import load
    from lepton_platform.api.rank import rank
    from lepton_platform.api.transfer import transfer

    datasets.disable_progress_bars()
    work = Path(tempfile.mkdtemp(prefix="lepton-rank-bench-"))
    images, labels = render_printed_digits(args.per_class, seed=0)
    source = work / "printed.csv"
    write_csv(source, np.asarray(images).reshape(len(labels), -1), np.asarray(labels))
    digits = load_digits()
    rng = np.random.default_rng(0)
    pick = rng.permutation(len(digits.target))[:900]
    target = work / "digits.csv"
    write_csv(target, digits.data[pick], digits.target[pick])
    split = {"validation": 0.2, "test": 0.3, "seed": 0}

    models: dict[str, str] = {}
    for name, (hidden, epochs, shuffled) in SOURCES.items():
        path = source
        if shuffled:
            path = work / "printed-shuffled.csv"
            lab = np.asarray(labels).copy()
            np.random.default_rng(1).shuffle(lab)
            write_csv(path, np.asarray(images).reshape(len(lab), -1), lab)
        out = work / f"source-{name}"
        transfer(
            domain="tabular",
            data=[{"path": str(path)}],
            backbone="mlp",
            backbone_options={"num_features": 64, "hidden": hidden},
            strategy="finetune",
            train={"epochs": max(epochs, 1), "lr": 0.01 if epochs else 1e-9, "progress": False},
            split={"validation": 0.1, "test": 0.1, "seed": 0},
            output_dir=out,
            bootstrap=0,
        )
        models[name] = str(out / "model")

    started = time.perf_counter()
    ranking = rank(
        domain="tabular",
        data=[{"path": str(target)}],
        split=split,
        candidates=[{"model": m, "label": n} for n, m in models.items()],
        cache=False,
    )
    rank_s = time.perf_counter() - started

    accuracy: dict[str, float] = {}
    started = time.perf_counter()
    for name, model in models.items():
        backbone = load(model).model.backbone
        result = transfer(
            domain="tabular",
            data=[{"path": str(target)}],
            split=split,
            backbone=backbone,
            pretrained="source model",
            strategy="finetune",
            train={"epochs": 5, "lr": 0.003, "batch_size": 32, "progress": False},
            bootstrap=0,
        )
        accuracy[name] = float(result.metrics["test"]["accuracy"])
    finetune_s = time.perf_counter() - started

    names = list(models)
    acc = [accuracy[n] for n in names]
    by_name = {r["candidate"]: r for r in ranking.rows}
    correlations = {}
    for score in ("logme", "hscore", "leep"):
        values = [by_name[n][score] for n in names]
        correlations[score] = {
            "spearman": float(spearmanr(values, acc).statistic),
            "kendall": float(kendalltau(values, acc).statistic),
        }
    print(ranking.to_markdown())
    print()
    print("| candidate | test accuracy after fine-tuning |\n| --- | --- |")
    for n in sorted(names, key=lambda n: -accuracy[n]):
        print(f"| {n} | {accuracy[n]:.4f} |")
    print()
    for score, c in correlations.items():
        print(f"{score}: Spearman {c['spearman']:.3f}, Kendall {c['kendall']:.3f}")
    print(
        f"ranking {rank_s:.1f} s, fine-tuning all {finetune_s:.1f} s, "
        f"ratio {finetune_s / rank_s:.1f}x"
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps(
                {
                    "ranking": ranking.to_json(),
                    "accuracy": accuracy,
                    "correlations": correlations,
                    "rank_seconds": rank_s,
                    "finetune_seconds": finetune_s,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
