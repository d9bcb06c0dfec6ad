"""The search's report: the optimisation history and the parameter importances (PNG), the
trials table, the best parameters and the final model's test result, as ``report.md`` and a
self-contained ``report.html`` in the run folder."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lepton_platform.reports.document import Figure, Report

__all__ = ["history_figure", "importance_figure", "write_tune_report"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    _pyplot().close(fig)
    return buffer.getvalue()


def history_figure(trials: Sequence[Mapping[str, Any]], direction: str, metric: str) -> bytes:
    """Each finished trial's value (pruned trials at their last reported value, hollow) and
    the best value so far."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    best: list[tuple[int, float]] = []
    current: float | None = None
    for state, marker in (("COMPLETE", "o"), ("PRUNED", "x")):
        points = [
            (t["number"], t["value"])
            for t in trials
            if t["state"] == state and t["value"] is not None
        ]
        if points:
            ax.scatter(*zip(*points, strict=True), marker=marker, label=state.lower())
    for t in sorted(trials, key=lambda t: t["number"]):
        if t["state"] != "COMPLETE" or t["value"] is None:
            continue
        value = float(t["value"])
        better = current is None or (
            value < current if direction == "minimize" else value > current
        )
        current = value if better else current
        assert current is not None
        best.append((t["number"], current))
    if best:
        ax.step(*zip(*best, strict=True), where="post", color="black", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title("Optimisation history")
    ax.legend()
    return _png(fig)


def importance_figure(importances: Mapping[str, float]) -> bytes:
    """Horizontal bars of the parameter importances (they sum to 1)."""
    plt = _pyplot()
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(names) + 1.5))
    ax.barh(names, [importances[n] for n in names])
    ax.set_xlabel("importance (fANOVA)")
    ax.set_title("Parameter importances")
    return _png(fig)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return "" if value is None else str(value)


def write_tune_report(folder: str | Path, summary: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``report.md`` (figures under ``figures/``) and ``report.html`` from the JSON of
    ``tune.json``; return the two paths."""
    from lepton_platform.reports.document import save_report

    out = Path(folder)
    metric = str(summary["metric"])
    report = Report(f"Lepton search {summary['study']}")
    counts = summary["counts"]
    report.blocks.append(
        (
            "p",
            f"{counts.get('COMPLETE', 0)} complete, {counts.get('PRUNED', 0)} pruned, "
            f"{counts.get('FAIL', 0)} failed trials; objective: validation {metric} "
            f"({summary['direction']}). Storage: {summary['storage']}.",
        )
    )
    best = summary.get("best")
    if best:
        report.blocks.append(("h2", "Best trial"))
        report.blocks.append(
            ("p", f"trial {best['number']}: validation {metric} {_cell(best['value'])}")
        )
        report.blocks.append(
            ("table", ["key", "value"], [[k, v] for k, v in best["params"].items()])
        )
    final = summary.get("final")
    if final:
        report.blocks.append(("h2", "Final model (best config, test split evaluated once)"))
        rows = [
            [split, key, value]
            for split in ("validation", "test")
            for key, value in (final.get("metrics", {}).get(split) or {}).items()
            if isinstance(value, int | float)
        ]
        report.blocks.append(("table", ["split", "metric", "value"], rows))
    trials = summary["trials"]
    report.blocks.append(("h2", "Optimisation history"))
    report.blocks.append(
        (
            "figure",
            Figure(
                "history.png",
                "Optimisation history",
                history_figure(trials, str(summary["direction"]), metric),
            ),
        )
    )
    importances = summary.get("importances") or {}
    report.blocks.append(("h2", "Parameter importances"))
    if importances:
        report.blocks.append(
            (
                "figure",
                Figure("importances.png", "Parameter importances", importance_figure(importances)),
            )
        )
    else:
        report.blocks.append(("p", str(summary.get("importances_note") or "not computed")))
    report.blocks.append(("h2", "Trials"))
    keys = sorted({k for t in trials for k in t["params"]})
    report.blocks.append(
        (
            "table",
            ["trial", "state", "value", "epochs", *keys],
            [
                [
                    t["number"],
                    t["state"].lower(),
                    t["value"],
                    t.get("epochs_reported"),
                    *(t["params"].get(k) for k in keys),
                ]
                for t in trials
            ],
        )
    )
    return save_report(out, report)
