"""How the fine-tune engine's cost grows, against the plain loop, with the plugins' own
backbones (the methods and models of ``train_throughput.py``), interleaved in one run:

- ``batch``: MiniLM-L6 training throughput at 128 tokens against the batch size;
- ``seq``: MiniLM-L6 throughput at batch 16 against the sequence length;
- ``memory``: peak memory of a training run against the model's size (ResNet-18, -34, -50 at
  64 px and MiniLM-L6 at 128 tokens, wav2vec2-base on 1 s), engine and plain loop;
- ``compile``: ``train.compile`` against eager on MiniLM-L6 and ResNet-18 at 224 px: the
  compile time (the first step's extra seconds), the steady step time, and the run length
  from which compiling pays (what decides the ``train.compile`` default);
- ``bf16``: ``mixed_precision: bf16`` (opt-in: reduced precision) against the defaults, with
  the largest per-step loss difference it makes;
- ``profile``: where a MiniLM-L6 training step's time goes (matrix products, attention,
  the optimiser, the rest), and the float32 GEMM rate of its feed-forward shape: what bounds
  any fp32-exact speed-up;
- ``wise``: WiSE-FT's alpha sweep (11 alphas, each scored on the validation rows) through the
  one prediction function against a ``Trainer`` built for each alpha (how the sweep predicted
  before).

Each point runs its methods in a rotating order for ``--rounds`` rounds, every method from the
same initial weights over the same batches; figures are medians over rounds. Benchmark on an
idle machine (check the load average; nothing else running).

Run (the figures of docs/benchmarks.md):

    .venv/bin/python benchmarks/train_scaling.py --json benchmarks/results/train_scaling.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np
import torch
import train_throughput as tt

from lepton_platform._memory import PeakMemory
from lepton_platform.data import prepare
from lepton_platform.engine.finetune import TrainConfig, Trainer
from lepton_platform.engine.predict import predict
from lepton_platform.models import TransferModel
from lepton_platform.strategies.base import snapshot
from lepton_platform.strategies.regularized import DEFAULT_ALPHAS, interpolate
from lepton_platform.tasks import ClassificationTask

TASK = ClassificationTask(["a", "b"])


def setup(name: str, rows: int, seq_len: int = 128) -> tuple[TransferModel, Any, Any]:
    torch.manual_seed(tt.SEED)
    backbone, raw = tt.model_and_data(name, rows, seq_len)
    pre = backbone.preprocessor()
    data = prepare(raw, pre, desc=name)
    model = TransferModel(backbone, TASK.build_head(backbone.feature_dim))
    tt.deterministic(model)
    return model, pre, data


def interleaved(
    methods: dict[str, Callable[[TransferModel], list[float]]],
    initial: TransferModel,
    rounds: int,
) -> dict[str, dict[str, Any]]:
    """Seconds and peak RSS above the start of each method, medians over rounds; the loss
    curve of the first round."""
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    peaks: dict[str, list[float]] = {m: [] for m in methods}
    curves: dict[str, list[float]] = {}
    order = list(methods)
    for r in range(rounds):
        for method in order[r % len(order) :] + order[: r % len(order)]:
            model = copy.deepcopy(initial)
            with PeakMemory(interval=0.002) as rss:  # collects garbage first
                start = time.perf_counter()
                curve = methods[method](model)
                seconds[method].append(time.perf_counter() - start)
            peaks[method].append(rss.added_mb)
            curves.setdefault(method, curve)
            del model
    return {
        m: {
            "seconds": statistics.median(seconds[m]),
            "per_round_s": seconds[m],
            "peak_added_mib": statistics.median(peaks[m]),
            "curve": curves[m],
        }
        for m in methods
    }


def plain_and_engine(
    initial: TransferModel, pre: Any, data: Any, batch: int, rounds: int, **engine: Any
) -> dict[str, dict[str, Any]]:
    methods = {
        "plain": lambda m: tt.run_plain(m, pre, data, batch),
        "engine": lambda m: tt.run_engine(m, pre, data, batch),
    }
    if engine:
        methods["engine+options"] = lambda m: tt.run_engine(m, pre, data, batch, **engine)
    tt.run_engine(copy.deepcopy(initial), pre, data.select(range(batch)), batch)  # probes once
    return interleaved(methods, initial, rounds)


def throughput_row(point: Any, rows: int, result: dict[str, dict[str, Any]]) -> dict[str, Any]:
    plain = result["plain"]["seconds"]
    row: dict[str, Any] = {"point": point}
    for method, r in result.items():
        row[method] = {"examples_per_s": rows / r["seconds"], "vs_plain": plain / r["seconds"]}
        if method != "plain":
            diff = np.abs(np.asarray(r["curve"]) - np.asarray(result["plain"]["curve"]))
            row[method]["max_loss_diff"] = float(diff.max())
    return row


def part_batch(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    for batch in args.batches:
        rows = batch * args.steps
        initial, pre, data = setup("minilm", rows)
        result = plain_and_engine(initial, pre, data, batch, args.rounds)
        out.append(throughput_row(batch, rows, result))
        print(f"batch {batch}: {fmt(out[-1])}", flush=True)
    return out


def part_seq(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    for seq in args.seq_lens:
        rows = 16 * args.steps
        initial, pre, data = setup("minilm", rows, seq_len=seq)
        result = plain_and_engine(initial, pre, data, 16, args.rounds)
        out.append(throughput_row(seq, rows, result))
        print(f"seq {seq}: {fmt(out[-1])}", flush=True)
    return out


MEMORY_MODELS = {"resnet18-64": 16, "resnet34-64": 16, "resnet50-64": 16, "minilm": 16}


def part_memory(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    for name, batch in MEMORY_MODELS.items():
        initial, pre, data = setup(name, batch * args.steps)
        result = plain_and_engine(initial, pre, data, batch, args.rounds)
        params = sum(p.numel() for p in initial.parameters())
        out.append(
            {
                "model": name,
                "parameters": params,
                "batch": batch,
                "plain_mib": result["plain"]["peak_added_mib"],
                "engine_mib": result["engine"]["peak_added_mib"],
                "weights_and_adamw_mib": params * 4 * 4 / 2**20,  # weights, grads, 2 moments
            }
        )
        row = out[-1]
        print(
            f"{name}: {params / 1e6:.1f}M parameters, peak added: plain "
            f"{row['plain_mib']:.0f} MiB, engine {row['engine_mib']:.0f} MiB",
            flush=True,
        )
    return out


def part_compile(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch._inductor.config as inductor

    inductor.fx_graph_cache = False  # a cold compile each time, as a new run pays it
    out = []
    for name, batch in (("minilm", 16), ("resnet18-224", 32)):
        initial, pre, data = setup(name, batch * args.compile_steps)
        tt.run_engine(copy.deepcopy(initial), pre, data.select(range(batch)), batch)  # probes
        steps: dict[str, list[list[float]]] = {"eager": [], "compiled": []}
        for r in range(args.rounds):
            for mode in ("eager", "compiled") if r % 2 == 0 else ("compiled", "eager"):
                torch._dynamo.reset()
                tt.STEP_SECONDS.clear()
                tt.run_engine(copy.deepcopy(initial), pre, data, batch, compile=mode == "compiled")
                steps[mode].append(tt.STEP_SECONDS[-1])
        first = {m: statistics.median(s[0] for s in steps[m]) for m in steps}
        steady = {m: statistics.median(x for s in steps[m] for x in s[2:]) for m in steps}
        saving = steady["eager"] - steady["compiled"]
        extra = first["compiled"] - first["eager"]
        out.append(
            {
                "model": name,
                "batch": batch,
                "first_step_s": first,
                "steady_step_s": steady,
                "compiled_vs_eager": steady["eager"] / steady["compiled"],
                "compile_extra_s": extra,
                "break_even_steps": extra / saving if saving > 0 else None,
            }
        )
        row = out[-1]
        print(
            f"{name}: compile costs {extra:.1f} s, steady step {steady['eager']:.3f} s eager, "
            f"{steady['compiled']:.3f} s compiled ({row['compiled_vs_eager']:.2f}x), break-even "
            f"{row['break_even_steps'] or 'never'}",
            flush=True,
        )
    return out


def part_bf16(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    for name, batch in (("minilm", 16), ("resnet18-224", 32)):
        rows = batch * args.steps
        initial, pre, data = setup(name, rows)
        result = plain_and_engine(initial, pre, data, batch, args.rounds, mixed_precision="bf16")
        out.append({"model": name, **throughput_row(batch, rows, result)})
        print(f"{name} bf16: {fmt(out[-1])}", flush=True)
    return out


def part_wise(args: argparse.Namespace) -> dict[str, Any]:
    """The sweep's prediction work on a fine-tuned pair of weights: 11 interpolations, each
    scored on the validation rows."""
    initial, pre, data = setup("minilm", args.wise_rows)
    theta_0 = snapshot(initial)
    tuned = copy.deepcopy(initial)
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(torch.randn_like(p) * 1e-3)
    theta_1 = snapshot(tuned)
    config = TrainConfig(batch_size=16, progress=False)

    def sweep(score: Callable[[TransferModel], np.ndarray]) -> list[float]:
        model = copy.deepcopy(initial)
        firsts = []
        for alpha in DEFAULT_ALPHAS:
            model.load_state_dict(interpolate(theta_0, theta_1, alpha))
            firsts.append(float(score(model)[0, 0]))
        return firsts

    def with_trainers(model: TransferModel) -> np.ndarray:  # before: a Trainer per alpha
        return Trainer(model, TASK, config).predict(data, pre)[0]

    def with_predict(model: TransferModel) -> np.ndarray:  # now: the prediction function
        return predict(model, data, pre, batch_size=16).outputs

    methods = {"trainer-per-alpha": with_trainers, "predict": with_predict}
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    outputs = {}
    for r in range(args.rounds):
        for method in list(methods)[r % 2 :] + list(methods)[: r % 2]:
            start = time.perf_counter()
            outputs[method] = sweep(methods[method])
            seconds[method].append(time.perf_counter() - start)
    before = statistics.median(seconds["trainer-per-alpha"])
    after = statistics.median(seconds["predict"])
    diff = float(np.max(np.abs(np.subtract(outputs["predict"], outputs["trainer-per-alpha"]))))
    print(
        f"WiSE-FT sweep ({len(DEFAULT_ALPHAS)} alphas x {args.wise_rows} rows): a Trainer per "
        f"alpha {before:.2f} s, the prediction function {after:.2f} s ({before / after:.2f}x); "
        f"largest logit difference {diff:.1e}",
        flush=True,
    )
    return {
        "alphas": len(DEFAULT_ALPHAS),
        "rows": args.wise_rows,
        "seconds": seconds,
        "speedup": before / after,
        "max_logit_diff": diff,
    }


def part_profile(args: argparse.Namespace) -> dict[str, Any]:
    from torch.nn import functional as F
    from torch.profiler import ProfilerActivity, profile

    initial, pre, data = setup("minilm", 16)
    rows = [dict(r) for r in data]
    labels = torch.tensor([r.pop("label") for r in rows])
    inputs = pre.collate(rows)
    model = copy.deepcopy(initial).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=tt.LR, fused=True)

    def step() -> None:
        F.cross_entropy(model(**inputs), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            step()
    groups = {
        "matrix products": ("aten::mm", "aten::addmm", "aten::bmm"),
        "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu",
                      "aten::_scaled_dot_product_flash_attention_for_cpu_backward"),
        "optimiser": ("aten::_fused_adamw_",),
    }  # fmt: skip
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    share = {g: sum(e.self_cpu_time_total for e in events if e.key in names) / total
             for g, names in groups.items()}  # fmt: skip
    share["the rest"] = 1 - sum(share.values())
    a, b = torch.randn(2048, 384), torch.randn(384, 1536)  # 16 x 128 tokens, 384 -> 1536
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(20):
        a @ b
    gflops = 2 * 2048 * 384 * 1536 * 20 / (time.perf_counter() - start) / 1e9
    print(
        "MiniLM-L6 training step (batch 16, 128 tokens): "
        + ", ".join(f"{g} {v:.0%}" for g, v in share.items())
        + f"; float32 GEMM 2048x384x1536 at {gflops:.0f} GFLOP/s",
        flush=True,
    )
    return {"shares": share, "gemm_gflops": gflops}


def fmt(row: dict[str, Any]) -> str:
    parts = []
    for method in ("plain", "engine", "engine+options"):
        if method in row:
            r = row[method]
            parts.append(f"{method} {r['examples_per_s']:.1f} ex/s ({r['vs_plain']:.2f}x)")
    return ", ".join(parts)


PARTS: dict[str, Callable[[argparse.Namespace], Any]] = {
    "batch": part_batch,
    "seq": part_seq,
    "memory": part_memory,
    "compile": part_compile,
    "bf16": part_bf16,
    "profile": part_profile,
    "wise": part_wise,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"of {', '.join(PARTS)}")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6, help="optimiser steps per measurement")
    parser.add_argument("--batches", default="4,8,16,32")
    parser.add_argument("--seq-lens", default="32,64,128,256")
    parser.add_argument("--compile-steps", type=int, default=12)
    parser.add_argument("--wise-rows", type=int, default=64)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    args.seq_lens = [int(s) for s in args.seq_lens.split(",")]
    import transformers  # noqa: F401  (its import is not timed)

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    results = {}
    for part in args.parts.split(","):
        print(f"\n== {part}", flush=True)
        results[part] = PARTS[part](args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
