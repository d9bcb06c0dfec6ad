"""The search's report: Optuna's optimisation history and parameter importances plots
(``optuna.visualization.matplotlib``, as PNG), the
trials table, the best parameters and the final model's test result, as ``report.md`` and a
self-contained ``report.html`` in the run folder."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lepton_platform.reports.document import Figure, Report

if TYPE_CHECKING:
    import optuna

__all__ = ["history_figure", "importance_figure", "write_tune_report"]


def _png(axes: Any) -> bytes:
    """The figure of an Optuna matplotlib plot's axes as PNG bytes (Agg: no display)."""
    import io

    import matplotlib.pyplot as plt

    fig = axes.figure
    fig.set_size_inches(7, 4)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def history_figure(study: optuna.Study, metric: str) -> bytes:
    """Optuna's optimisation history (each trial's value and the best so far)."""
    import optuna

    with _plotting():
        return _png(
            optuna.visualization.matplotlib.plot_optimization_history(
                study, target_name=f"validation {metric}"
            )
        )


def importance_figure(study: optuna.Study) -> bytes:
    """Optuna's parameter importances (fANOVA, seeded)."""
    import optuna

    with _plotting():
        return _png(
            optuna.visualization.matplotlib.plot_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0)
            )
        )


@contextlib.contextmanager
def _plotting() -> Iterator[None]:
    """matplotlib without a display, and without Optuna's experimental-API warnings."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return "" if value is None else str(value)


def write_tune_report(
    folder: str | Path, summary: Mapping[str, Any], study: optuna.Study
) -> tuple[Path, Path]:
    """Write ``report.md`` (figures under ``figures/``) and ``report.html`` from the JSON of
    ``tune.json`` and the study's plots; return the two paths."""
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
                history_figure(study, metric),
            ),
        )
    )
    importances = summary.get("importances") or {}
    report.blocks.append(("h2", "Parameter importances"))
    if importances:
        report.blocks.append(
            (
                "figure",
                Figure("importances.png", "Parameter importances", importance_figure(study)),
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
