"""The cached linear probe against a linear probe that runs the frozen backbone every epoch.

Same backbone (ResNet-18 from the image plugin, random init, small-image stem), same data
(scikit-learn's handwritten digits at 32x32), same head, same optimiser and 10 epochs:

  cached      ``linear-probe`` with ``solver="adamw"``: features extracted once (and cached on
              disk), then the head trains on them through the fine-tune engine
  cached-warm the same again: the features come from the cache of the run before
  frozen      ``freeze`` with augmentation off: the frozen backbone runs on every batch of
              every epoch, the head trains (what a probe costs without the cache)

Rounds alternate the order; the table reports median seconds, the speed-up of each cached run
over ``frozen`` and the test accuracy of each (the same head on the same features should score
the same up to the order of floating-point sums).

Run: .venv/bin/python benchmarks/linear_probe_cache.py --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--width", type=int, default=64, help="ResNet-18 width (64: standard)")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()

    import torch
    from sklearn.datasets import load_digits

    import lepton_platform as lp
    from lepton_platform.data import SplitConfig

    digits = load_digits()
    data = {"images": digits.images, "labels": digits.target, "value_range": [0, 16]}
    options = {
        "small_input": True,
        "image_size": args.size,
        "width": args.width,
        "augmentation": False,
    }
    train = lp.TrainConfig(
        epochs=args.epochs, batch_size=64, lr=1e-2, progress=False, monitor="accuracy", seed=0
    )
    bundle = lp.load_data("image", [data], split=SplitConfig(validation=0.2, test=0.2, seed=0))

    def run(name: str, cache_dir: str) -> tuple[float, float]:
        os.environ["LEPTON_CACHE_DIR"] = cache_dir
        strategy: Any = (
            ("linear-probe", {"solver": "adamw"}) if name.startswith("cached") else ("freeze", {})
        )
        torch.manual_seed(0)
        started = time.perf_counter()
        result = lp.transfer(
            domain="image",
            data=bundle,
            backbone="resnet18",
            backbone_options=options,
            strategy=strategy[0],
            strategy_params=strategy[1],
            train=train,
            bootstrap=0,
        )
        return time.perf_counter() - started, float(result.metrics["test"]["accuracy"])

    times: dict[str, list[float]] = {"cached": [], "cached-warm": [], "frozen": []}
    accuracy: dict[str, float] = {}
    # the preprocessing cache is warmed once, so every method starts from prepared data
    with tempfile.TemporaryDirectory() as warm:
        run("frozen", warm)
    for round_index in range(args.rounds):
        order = ["cached", "frozen"] if round_index % 2 == 0 else ["frozen", "cached"]
        with tempfile.TemporaryDirectory() as cache:
            for name in order:
                seconds, acc = run(name, cache)
                times[name].append(seconds)
                accuracy[name] = acc
            seconds, acc = run("cached-warm", cache)
            times["cached-warm"].append(seconds)
            accuracy["cached-warm"] = acc

    frozen = statistics.median(times["frozen"])
    rows = []
    print(
        f"\n{args.epochs} epochs, ResNet-18 width {args.width} at {args.size}px, "
        f"{len(bundle.train)} training images, torch threads {torch.get_num_threads()}\n"
    )
    print("| probe | seconds (median) | speed-up over frozen | test accuracy |")
    print("| --- | --- | --- | --- |")
    for name in ("frozen", "cached", "cached-warm"):
        median = statistics.median(times[name])
        rows.append(
            {
                "method": name,
                "seconds": median,
                "speedup": frozen / median,
                "accuracy": accuracy[name],
                "all_seconds": times[name],
            }
        )
        print(f"| {name} | {median:.1f} | {frozen / median:.1f}x | {accuracy[name]:.4f} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
