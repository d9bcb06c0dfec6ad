"""``evaluate``: the metrics of a saved model on labelled data, with a bootstrap interval of
its headline.

    >>> import lepton_platform as lp
    >>> report = lp.evaluate("runs/digits/model", "held-out/", metrics=["accuracy", "f1"])
    ... # doctest: +SKIP
    >>> report.metrics["accuracy"], (report.ci_low, report.ci_high)        # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lepton_platform.errors import DataError

if TYPE_CHECKING:
    from lepton_platform.api.predictor import Predictor
    from lepton_platform.engine.evaluate import EvaluationReport

__all__ = ["Evaluation", "evaluate"]


@dataclass
class Evaluation:
    """A saved model's evaluation: the report, how many rows were read and the bad records
    skipped."""

    report: EvaluationReport
    rows: int
    bad_records: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.report.to_json(),
            "rows": self.rows,
            "bad_records": {"skipped": len(self.bad_records), "records": self.bad_records},
        }


def evaluate(
    model: str | os.PathLike[str] | Predictor,
    data: Any,
    *,
    metrics: Sequence[str] | None = None,
    split: str | None = None,
    bootstrap: int = 1000,
    on_bad_record: str = "error",
    seed: int = 0,
) -> Evaluation:
    """Evaluate a saved model (a folder or a loaded :class:`Predictor`) on ``data``: a path,
    a source mapping, or a dataset in the standard schema, read with the model's own domain.
    Labels are matched to the model's label names by name. When the data hold several splits,
    ``split`` chooses one (default: ``test``)."""
    import datasets
    import numpy as np

    from lepton_platform.api.job import resolve_metrics
    from lepton_platform.api.predictor import Predictor, load
    from lepton_platform.data import BadRecords, relabel, source_list
    from lepton_platform.data.loading import _load_source
    from lepton_platform.engine.evaluate import evaluate_predictions
    from lepton_platform.errors import ConfigError

    if bootstrap < 0:
        raise ConfigError(f"bootstrap must be >= 0, got {bootstrap}")
    predictor = model if isinstance(model, Predictor) else load(model)
    resolved = resolve_metrics(metrics, predictor.task)
    bad = BadRecords(on_bad_record)  # type: ignore[arg-type]
    sources = source_list(data)
    if len(sources) != 1:
        raise ConfigError("evaluate: give one data source")
    where = str(sources[0].get("path", "data"))
    if "path" in sources[0] and not Path(str(sources[0]["path"])).exists():
        raise DataError(f"{where!r} does not exist")
    loaded = _load_source(predictor.domain, sources[0], bad)
    if isinstance(loaded, datasets.DatasetDict):
        wanted = split or ("test" if "test" in loaded else None)
        if wanted is None or wanted not in loaded:
            raise DataError(f"{where} holds the splits {sorted(loaded)}; choose one with split")
        loaded = loaded[wanted]
    if "label" not in loaded.column_names:
        raise DataError(f"{where}: no labels to evaluate against (no 'label' column)")
    ds = relabel(loaded, predictor.label_names, source=where, bad_records=bad)
    if len(ds) == 0:
        raise DataError(f"{where}: no rows to evaluate")
    logits = predictor.logits(ds)
    labels = np.asarray(ds["label"])
    report = evaluate_predictions(
        predictor.task, logits, labels, resolved, n_resamples=bootstrap, seed=seed
    )
    return Evaluation(report=report, rows=len(ds), bad_records=bad.to_json())
