"""A 4-strategy x 3-seed ``lp.compare`` against the same 12 runs done one by one, interleaved
in one process (and, with ``--cli``, as 12 ``lepton run`` processes, the way a user without
``compare`` would run them).

The job: the main job's shape (scikit-learn's 8x8 handwritten digits, a quarter-width
ResNet-18 with the small-image stem at 16 px, random weights), strategies ``linear-probe``,
``finetune``, ``lp-ft`` and ``freeze-unfreeze``, seeds 0, 1, 2, no baselines (the 12 runs
have none). Each measurement starts from an empty Lepton cache, so neither side finds the
other's prepared data or features; what ``compare`` shares (prepared data and cached features
across its rows, one process) is what the ratio shows.

Run: .venv/bin/python benchmarks/compare_sharing.py --rounds 2 --cli
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np

STRATEGIES = ["linear-probe", "finetune", "lp-ft", "freeze-unfreeze"]
SEEDS = [0, 1, 2]
BACKBONE = {"small_input": True, "image_size": 16, "width": 16, "augmentation": False}
TRAIN = {"epochs": 3, "batch_size": 32, "lr": 1e-3, "progress": False}
BIN = Path(sys.executable).parent


def data_folder(root: Path) -> Path:
    """The digits as PNG class folders (what a config reads)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    folder = root / "digits"
    for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        path = folder / str(label) / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255 / 16).astype(np.uint8)).save(path)
    return folder


def common(data: Path) -> dict[str, Any]:
    return {
        "domain": "image",
        "data": str(data),
        "backbone": "resnet18",
        "backbone_options": BACKBONE,
        "pretrained": None,
        "train": TRAIN,
        "bootstrap": 0,
    }


def fresh_cache(root: Path) -> None:
    cache = root / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    os.environ["LEPTON_CACHE_DIR"] = str(cache)


def run_compare(root: Path, data: Path) -> None:
    import lepton_platform as lp

    lp.compare(
        STRATEGIES,
        seeds=SEEDS,
        baselines=False,
        controls=False,
        output_dir=root / "out" / "compare",
        **common(data),
    )


def run_one_by_one(root: Path, data: Path) -> None:
    import lepton_platform as lp

    for strategy in STRATEGIES:
        for seed in SEEDS:
            kwargs = common(data)
            kwargs["train"] = {**TRAIN, "seed": seed}
            lp.transfer(strategy=strategy, output_dir=root / "out" / f"{strategy}-{seed}", **kwargs)


def run_cli(root: Path, data: Path) -> None:
    import yaml

    for strategy in STRATEGIES:
        for seed in SEEDS:
            config = {
                "domain": "image",
                "data": {"sources": [str(data)]},
                "backbone": {"name": "resnet18", "options": BACKBONE, "pretrained": None},
                "strategy": strategy,
                "train": {**TRAIN, "seed": seed},
                "evaluation": {"bootstrap": 0},
                "output": {"root": str(root / "out" / "cli"), "name": f"{strategy}-{seed}"},
            }
            path = root / f"{strategy}-{seed}.yaml"
            path.write_text(yaml.safe_dump(config), encoding="utf-8")
            done = subprocess.run(
                [str(BIN / "lepton"), "run", str(path), "--quiet"],
                capture_output=True,
                text=True,
                env=os.environ.copy(),
            )
            if done.returncode:
                raise SystemExit(done.stderr[-3000:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cli", action="store_true", help="also 12 `lepton run` processes")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    methods: dict[str, Callable[[Path, Path], None]] = {
        "compare": run_compare,
        "one-by-one": run_one_by_one,
    }
    if args.cli:
        methods["lepton-run x12"] = run_cli
    times: dict[str, list[float]] = {m: [] for m in methods}
    with tempfile.TemporaryDirectory(prefix="lepton-compare-bench-") as folder:
        root = Path(folder)
        data = data_folder(root)
        order = list(methods)
        for r in range(args.rounds):
            for name in order[r % len(order) :] + order[: r % len(order)]:
                shutil.rmtree(root / "out", ignore_errors=True)
                fresh_cache(root)
                started = time.perf_counter()
                methods[name](root, data)
                seconds = time.perf_counter() - started
                times[name].append(seconds)
                print(f"  round {r} {name:15s} {seconds:7.1f} s", flush=True)
    base = statistics.median(times["compare"])
    print(f"\n{len(STRATEGIES)} strategies x {len(SEEDS)} seeds, median of {args.rounds} rounds")
    for name, spent in times.items():
        median = statistics.median(spent)
        print(f"  {name:15s} {median:7.1f} s  ({median / base:.2f}x compare's time)")
    if args.json:
        Path(args.json).write_text(json.dumps(times, indent=1))


if __name__ == "__main__":
    main()
