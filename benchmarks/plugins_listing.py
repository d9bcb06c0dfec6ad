"""How long ``lepton plugins`` takes, as a user feels it: the median wall time of fresh
subprocesses, beside a bare ``python -c pass`` for reference. The goal is under 0.5 s.

    .venv/bin/python benchmarks/plugins_listing.py [--runs 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

GOAL_S = 0.5


def median_wall_time(command: list[str], runs: int) -> float:
    """Median seconds of ``runs`` runs of ``command`` (after one warm-up run)."""
    subprocess.run(command, capture_output=True, check=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    listing = [sys.executable, "-m", "lepton_platform.cli.main", "plugins"]
    bare = [sys.executable, "-c", "pass"]
    python_s = median_wall_time(bare, args.runs)
    plugins_s = median_wall_time(listing, args.runs)
    result = {
        "runs": args.runs,
        "lepton_plugins_median_s": round(plugins_s, 3),
        "python_pass_median_s": round(python_s, 3),
        "ratio": round(plugins_s / python_s, 1),
        "goal_s": GOAL_S,
        "meets_goal": plugins_s < GOAL_S,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"lepton plugins   median {plugins_s:.3f} s over {args.runs} runs")
        print(f"python -c pass   median {python_s:.3f} s")
        print(f"ratio            {plugins_s / python_s:.1f}x")
        verdict = "meets" if plugins_s < GOAL_S else "MISSES"
        print(f"goal             < {GOAL_S} s: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
