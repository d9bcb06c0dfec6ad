"""Speech plugin throughput: the fine-tune engine against a plain PyTorch loop, with the
convolutional feature encoder frozen (the default) and trained, and the cost of decoding and
resampling as a share of a training step.

One run on CPU, on generated 1 s clips recorded at 44.1 kHz (so every clip is resampled to
16 kHz), with a small random-init wav2vec2 (no pretrained weights are read). Prints a table and
writes JSON::

    .venv/bin/python benchmarks/speech_throughput.py --out /tmp/speech_throughput.json

Times are CPU seconds of this process (``time.process_time``) with one torch thread, so that
other jobs on a shared machine do not distort the ratios; each configuration runs ``--repeats``
times, interleaved, and the fastest run counts.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

MODEL_CONFIG: dict[str, Any] = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "conv_dim": [64, 64, 64, 64, 64],
    "conv_kernel": [10, 3, 3, 3, 2],
    "conv_stride": [5, 2, 2, 2, 2],
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
    "mask_time_prob": 0.0,
    "layerdrop": 0.0,
}


def write_clips(folder: Path, count: int, rate: int, seconds: float) -> None:
    """``count`` noisy tones in two class folders, WAV at ``rate``."""
    rng = np.random.default_rng(0)
    t = np.arange(int(rate * seconds)) / rate
    for i in range(count):
        label = i % 2
        wave = 0.4 * np.sin(2 * np.pi * (300 + 400 * label) * t) + 0.05 * rng.standard_normal(
            t.shape[0]
        )
        path = folder / f"class{label}" / f"{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, wave.astype(np.float32), rate, subtype="PCM_16")


def build(train_encoder: bool) -> Any:
    import lepton_platform as lp

    torch.manual_seed(0)
    return lp.create_backbone(
        "wav2vec2-base",
        pretrained=None,
        model_config=MODEL_CONFIG,
        train_feature_encoder=train_encoder,
        max_duration=1.0,
    )


def engine_throughput(prepared: Any, train_encoder: bool, epochs: int, batch: int) -> float:
    """Examples per second through ``Trainer.fit`` (the first epoch is a warm-up)."""
    import lepton_platform as lp
    from lepton_platform.engine.finetune import Callback, TrainConfig, Trainer
    from lepton_platform.models import TransferModel

    backbone = build(train_encoder)
    task = lp.create_task("classification", label_names=["class0", "class1"])
    model = TransferModel(backbone, task.build_head(backbone.feature_dim))
    marks: list[float] = []

    class Clock(Callback):
        def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
            marks.append(time.process_time())

        def on_train_end(self, trainer: Trainer, result: Any) -> None:
            marks.append(time.process_time())

    config = TrainConfig(
        epochs=epochs + 1, batch_size=batch, lr=1e-3, progress=False, trackers=(), seed=0
    )
    Trainer(model, task, config, callbacks=[Clock()]).fit(prepared, None, backbone.preprocessor())
    return len(prepared) * epochs / (marks[-1] - marks[1])


def plain_throughput(prepared: Any, train_encoder: bool, epochs: int, batch: int) -> float:
    """Examples per second of a hand-written loop: same model, data, collate and optimiser."""
    from lepton_platform.models import TransferModel

    backbone = build(train_encoder)
    model = TransferModel(backbone, torch.nn.Linear(backbone.feature_dim, 2))
    pre = backbone.preprocessor()
    rows = prepared.with_format(None)
    examples = [{"input_values": rows[i]["input_values"]} for i in range(len(rows))]
    labels = torch.tensor(rows["label"])
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    model.train()
    start = 0.0
    for epoch in range(epochs + 1):
        if epoch == 1:
            start = time.process_time()
        order = torch.randperm(len(examples)).tolist()
        for i in range(0, len(order), batch):
            picked = order[i : i + batch]
            inputs = pre.collate([examples[j] for j in picked])
            loss = torch.nn.functional.cross_entropy(model(**inputs), labels[picked])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
    return len(examples) * epochs / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (one more warms up)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import lepton_platform as lp
    from lepton_platform.data import BadRecords
    from lepton_platform.data.prepare import prepare

    results: dict[str, Any] = {
        "clock": "process CPU time",
        "repeats": args.repeats,
        "clips": args.clips,
        "clip_seconds": 1.0,
        "source_rate": 44100,
        "model_rate": 16000,
        "batch_size": args.batch_size,
        "timed_epochs": args.epochs,
        "threads": args.threads,
        "model_config": MODEL_CONFIG,
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "clips"
        write_clips(folder, args.clips, 44100, 1.0)
        domain = lp.create_domain("speech")
        dataset = domain.load({"path": str(folder)}, bad_records=BadRecords())
        pre = build(False).preprocessor()

        # Decoding and resampling: the deterministic transform, timed on every clip.
        from lepton_speech.audio import read_audio

        refs = dataset["audio"]
        per_clip = decode_only = float("inf")
        for _ in range(args.repeats):
            start = time.process_time()
            for ref in refs:
                pre.process(ref)
            per_clip = min(per_clip, (time.process_time() - start) / len(refs))
            start = time.process_time()
            for ref in refs:
                read_audio(ref, max_seconds=1.0)
            decode_only = min(decode_only, (time.process_time() - start) / len(refs))
        results["decode_ms_per_clip"] = 1000 * decode_only
        results["decode_resample_ms_per_clip"] = 1000 * per_clip

        prepared = prepare(dataset, pre, cache=Path(tmp) / "cache")
        best: dict[tuple[str, bool], float] = {}
        for _ in range(args.repeats):
            for frozen in (True, False):
                for kind, measure in (("engine", engine_throughput), ("plain", plain_throughput)):
                    rate = measure(prepared, not frozen, args.epochs, args.batch_size)
                    best[kind, frozen] = max(best.get((kind, frozen), 0.0), rate)
        for frozen in (True, False):
            key = "frozen_encoder" if frozen else "trained_encoder"
            engine, plain = best["engine", frozen], best["plain", frozen]
            step_ms = 1000 / engine  # per example, through the engine
            results[key] = {
                "engine_examples_per_s": engine,
                "plain_examples_per_s": plain,
                "engine_over_plain": engine / plain,
                "decode_resample_share_of_step": per_clip * 1000 / (step_ms + per_clip * 1000),
            }
        results["frozen_over_trained_engine"] = (
            results["frozen_encoder"]["engine_examples_per_s"]
            / results["trained_encoder"]["engine_examples_per_s"]
        )

    print(json.dumps(results, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
