"""Run reports: ``report.md`` and a self-contained ``report.html`` (pictures embedded as
base64 data URIs, no outside file or network needed) from what a run wrote.

    >>> from lepton_platform.reports import write_report                 # doctest: +SKIP
    >>> write_report("runs/digits", config=snapshot, result=result_json)  # doctest: +SKIP

Everything is read from JSON-ready mappings (``result.json``, ``comparison.json``), so a report
can be rebuilt from a run folder without torch. Sections appear when their data exists: the
config, the data summary (counts per class, domain and split; skipped bad records), learning
curves, metrics per split, the confusion matrix and per-class metrics of the test split, the
comparison with baselines and its negative-transfer warnings, and the cross-domain heat map.
"""

from __future__ import annotations

from lepton_platform.reports.document import (
    Report,
    build_report,
    confusion_from_predictions,
    save_report,
    write_report,
)

__all__ = ["Report", "build_report", "confusion_from_predictions", "save_report", "write_report"]
