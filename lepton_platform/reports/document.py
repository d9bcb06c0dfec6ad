"""Build a report as a list of blocks, then render it as Markdown and as self-contained HTML."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lepton_platform._io import atomic_write_bytes, atomic_write_text
from lepton_platform.reports import figures

__all__ = ["Report", "build_report", "confusion_from_predictions", "save_report", "write_report"]

MAX_BAD_RECORDS = 50


@dataclass
class Figure:
    """A PNG picture of the report; ``name`` is its file name under ``figures/``."""

    name: str
    title: str
    png: bytes


@dataclass
class Report:
    """The report's blocks in order: ``("h2", text)``, ``("p", text)``, ``("warning", text)``,
    ``("pre", text)``, ``("table", headers, rows)`` and ``("figure", Figure)``."""

    title: str
    blocks: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def figures(self) -> list[Figure]:
        return [b[1] for b in self.blocks if b[0] == "figure"]

    def to_markdown(self, figure_dir: str = "figures") -> str:
        """Markdown; pictures are linked as ``figures/<name>.png`` beside the file."""
        out = [f"# {self.title}", ""]
        for block in self.blocks:
            kind = block[0]
            if kind == "h2":
                out += [f"## {block[1]}", ""]
            elif kind == "p":
                out += [block[1], ""]
            elif kind == "warning":
                out += [f"> **Warning:** {block[1]}", ""]
            elif kind == "pre":
                out += ["```yaml", block[1].rstrip("\n"), "```", ""]
            elif kind == "table":
                out += [_md_table(block[1], block[2]), ""]
            elif kind == "figure":
                fig: Figure = block[1]
                out += [f"![{fig.title}]({figure_dir}/{fig.name})", ""]
        return "\n".join(out)

    def to_html(self) -> str:
        """One HTML file holding everything, pictures as base64 ``data:`` URIs."""
        body: list[str] = [f"<h1>{html.escape(self.title)}</h1>"]
        for block in self.blocks:
            kind = block[0]
            if kind == "h2":
                body.append(f"<h2>{html.escape(block[1])}</h2>")
            elif kind == "p":
                body.append(f"<p>{html.escape(block[1])}</p>")
            elif kind == "warning":
                body.append(f'<p class="warning"><b>Warning:</b> {html.escape(block[1])}</p>')
            elif kind == "pre":
                body.append(f"<pre>{html.escape(block[1])}</pre>")
            elif kind == "table":
                body.append(_html_table(block[1], block[2]))
            elif kind == "figure":
                fig = block[1]
                data = base64.b64encode(fig.png).decode("ascii")
                body.append(
                    f'<figure><img alt="{html.escape(fig.title)}" '
                    f'src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(fig.title)}</figcaption></figure>"
                )
        return _PAGE.format(title=html.escape(self.title), body="\n".join(body))


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
th {{ background: #f3f3f3; }}
pre {{ background: #f7f7f7; padding: 1em; overflow-x: auto; }}
.warning {{ background: #fff3cd; border-left: 4px solid #e0a800; padding: 0.6em; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; }}
figcaption {{ color: #555; font-size: 0.9em; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return "" if value is None else str(value)


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def clean(value: Any) -> str:
        return _cell(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(clean(h) for h in headers) + " |"]
    lines.append("| " + " | ".join("---" for _ in headers) + " |")
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ----------------------------------------------------------------------------- content


def confusion_from_predictions(
    logits: Sequence[Sequence[float]] | Any, labels: Sequence[int] | Any, label_names: Sequence[str]
) -> dict[str, Any]:
    """The confusion matrix and per-class precision, recall, F1 and support of single-label
    predictions (``argmax`` of ``logits``), for reports of tasks whose metrics lack them."""
    import numpy as np

    scores = np.asarray(logits)
    truth = np.asarray(labels).astype(int)
    n = len(label_names)
    if scores.ndim != 2 or truth.ndim != 1 or scores.shape[0] != truth.shape[0]:
        return {}
    predicted = scores.argmax(axis=1)
    matrix = np.zeros((n, n), dtype=int)
    for t, p in zip(truth, predicted, strict=True):
        matrix[t, p] += 1
    per_class: dict[str, dict[str, float]] = {}
    for i, name in enumerate(label_names):
        tp = float(matrix[i, i])
        predicted_i = float(matrix[:, i].sum())
        support = float(matrix[i, :].sum())
        precision = tp / predicted_i if predicted_i else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[str(name)] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": int(support),
        }
    return {"confusion_matrix": matrix.tolist(), "per_class": per_class}


def _scalars(values: Mapping[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in values.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _add_figure(report: Report, name: str, title: str, draw: Callable[[], bytes | None]) -> None:
    png = draw()
    if png:
        report.blocks.append(("figure", Figure(name, title, png)))


def _summary(report: Report, result: Mapping[str, Any]) -> None:
    strategy = result.get("strategy") or {}
    backbone = result.get("backbone") or {}
    test = (result.get("metrics") or {}).get("test") or {}
    ci = test.get("ci") or {}
    rows: list[list[Any]] = []
    if strategy:
        params = strategy.get("params") or {}
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        rows.append(["strategy", f"{strategy.get('name')}" + (f" ({shown})" if shown else "")])
    if backbone:
        rows.append(["backbone", f"{backbone.get('name')} (weights: {backbone.get('pretrained')})"])
    if ci:
        key = str(ci.get("metric", "")).replace("-", "_")
        value = test.get(key)
        rows.append(
            [
                f"test {key}",
                f"{_cell(value)} ({int(100 * ci.get('confidence', 0.95))}% bootstrap interval "
                f"{_cell(ci.get('low'))} to {_cell(ci.get('high'))})",
            ]
        )
    if result.get("seconds") is not None:
        rows.append(["time", f"{float(result['seconds']):.1f} s"])
    if result.get("peak_memory_mb") is not None:
        rows.append(["peak memory", f"{float(result['peak_memory_mb']):.0f} MB"])
    if result.get("artifact"):
        rows.append(["model", str(result["artifact"])])
    if rows:
        report.blocks += [("h2", "Summary"), ("table", ["", "value"], rows)]


def _data(report: Report, data: Mapping[str, Any]) -> None:
    report.blocks.append(("h2", "Data"))
    rows = data.get("rows") or {}
    splits = list(rows)
    if data.get("domain"):
        names = ", ".join(map(str, data.get("label_names") or []))
        report.blocks.append(("p", f"Domain {data['domain']!r}; classes: {names}."))
    if rows:
        report.blocks.append(("table", ["split", "rows"], [[s, rows[s]] for s in splits]))
    classes = data.get("classes") or {}
    if classes:
        labels = list(data.get("label_names") or next(iter(classes.values()), {}))
        table = [[label, *[classes.get(s, {}).get(label, 0) for s in splits]] for label in labels]
        report.blocks.append(("table", ["class", *splits], table))
        _add_figure(
            report,
            "class-counts.png",
            "Examples per class and split",
            lambda: figures.class_counts(classes),
        )
    domains = data.get("domains") or {}
    if domains:
        sources = sorted({d for counts in domains.values() for d in counts})
        table = [[d, *[domains.get(s, {}).get(d, 0) for s in splits]] for d in sources]
        report.blocks.append(("table", ["source domain", *splits], table))
    groups = data.get("groups") or {}
    if groups:
        report.blocks.append(
            ("table", ["split", "groups"], [[s, groups.get(s, 0)] for s in splits])
        )
    bad = data.get("bad_records") or {}
    skipped = int(bad.get("skipped", 0) or 0)
    if skipped:
        records = list(bad.get("records") or [])
        report.blocks.append(
            ("warning", f"{skipped} bad record(s) were skipped (on_bad_record: skip).")
        )
        shown = [[r.get("file"), r.get("row"), r.get("reason")] for r in records[:MAX_BAD_RECORDS]]
        report.blocks.append(("table", ["file", "row", "reason"], shown))
        if len(records) > MAX_BAD_RECORDS:
            report.blocks.append(
                ("p", f"... and {len(records) - MAX_BAD_RECORDS} more (see result.json).")
            )
    elif bad:
        report.blocks.append(("p", "No bad records."))


def _metrics(report: Report, result: Mapping[str, Any]) -> None:
    metrics = result.get("metrics") or {}
    history = result.get("history") or []
    if history:
        report.blocks.append(("h2", "Learning curves"))
        restored, sentence = _restored(history, (result.get("details") or {}).get("selection"))
        if sentence:
            report.blocks.append(("p", sentence))
        _add_figure(
            report,
            "learning-curves.png",
            "Loss and validation metrics per epoch (dashed: the epoch restored)",
            lambda: figures.learning_curves(history, restored),
        )
    scalars = {split: _scalars(values) for split, values in metrics.items() if values}
    if scalars:
        names = sorted({k for values in scalars.values() for k in values})
        report.blocks.append(("h2", "Metrics"))
        report.blocks.append(
            ("p", "The validation split chose the model; the test split was used only here.")
        )
        table = [[n, *[scalars[s].get(n) for s in scalars]] for n in names]
        report.blocks.append(("table", ["metric", *scalars], table))
    test = metrics.get("test") or {}
    label_names = list((result.get("data") or {}).get("label_names") or [])
    matrix = test.get("confusion_matrix")
    if matrix and label_names:
        report.blocks.append(("h2", "Confusion matrix (test)"))
        _add_figure(
            report,
            "confusion-matrix.png",
            "Confusion matrix on the test split",
            lambda: figures.confusion_matrix(matrix, label_names),
        )
    per_class = test.get("per_class") or {}
    if per_class:
        stats = [
            s
            for s in ("precision", "recall", "f1", "auroc", "support")
            if any(s in v for v in per_class.values())
        ]
        report.blocks.append(("h2", "Per-class metrics (test)"))
        table = [[name, *[values.get(s) for s in stats]] for name, values in per_class.items()]
        report.blocks.append(("table", ["class", *stats], table))


def _restored(
    history: Sequence[Mapping[str, Any]], selection: Mapping[str, Any] | None
) -> tuple[int | None, str]:
    """Where in ``history`` the kept model's epoch is (1-based; the last stage's when the
    strategy trained in stages) and a sentence naming it and what chose it."""
    if not selection or selection.get("chosen_epoch") is None:
        return None, ""
    chosen = int(selection["chosen_epoch"])
    positions = [i for i, h in enumerate(history) if h.get("epoch") == chosen]
    chooser = selection.get("validator") or selection.get("chosen_by") or "the monitor"
    where = positions[-1] + 1 if positions else None
    return where, (
        f"The model of epoch {chosen + 1} (counting from 1) was restored at the end, chosen by "
        f"{chooser} on the validation split."
        if selection.get("validator") is None
        else f"The model of epoch {chosen + 1} (counting from 1) was restored at the end, "
        f"chosen by the label-free validator {chooser!r}."
    )


def _comparison(report: Report, comparison: Mapping[str, Any]) -> None:
    metric = str(comparison.get("metric", "score"))
    rows = list(comparison.get("rows") or [])
    seeds = comparison.get("seeds") or []
    baselines = [str(r["name"]) for r in rows if r.get("kind") == "baseline"]
    against = [*baselines, *(["control"] if any(r.get("control") for r in rows) else [])]
    report.blocks.append(("h2", "Comparison with baselines"))
    split = (
        "each seed drew its own split, the same for every row"
        if comparison.get("resample_split")
        else "every row ran on the same split"
    )
    report.blocks.append(
        (
            "p",
            f"Seeds {list(seeds)}; {split}. {metric} on the test split, mean ± standard "
            "deviation over seeds. Δ is the row minus the baseline (or the row's control: the "
            "same training with the part under test switched off) on the same test rows, "
            "positive when the row is better, with a 95% paired bootstrap interval over test "
            "rows and seeds.",
        )
    )

    def delta(row: Mapping[str, Any], name: str) -> str:
        key = row.get("control") if name == "control" else name
        diff = (row.get("differences") or {}).get(key) if key else None
        if not diff:
            return ""
        return f"{diff['delta']:+.4f} [{diff['low']:+.4f}, {diff['high']:+.4f}]"

    table = [
        [
            r.get("name") if r.get("kind") == "strategy" else f"{r.get('name')} ({r.get('kind')})",
            f"{_cell(r.get('mean'))} ± {_cell(r.get('std'))}",
            *[delta(r, name) for name in against],
            f"{float(r['seconds']):.1f}" if _finite(r.get("seconds")) else "",
            f"{float(r['memory_added_mb']):.0f}" if _finite(r.get("memory_added_mb")) else "",
        ]
        for r in rows
    ]
    headers = ["row", metric, *[f"Δ vs {a}" for a in against], "time (s)", "memory added (MB)"]
    report.blocks.append(("table", headers, table))
    for warning in comparison.get("warnings") or []:
        report.blocks.append(("warning", str(warning)))
    for note in comparison.get("notes") or []:
        report.blocks.append(("p", f"Note: {note}"))
    if not comparison.get("warnings") and baselines:
        report.blocks.append(
            ("p", "No strategy's interval lies wholly below a baseline: no negative transfer.")
        )
    if comparison.get("disk_mb"):
        report.blocks.append(("p", f"Disk used by the comparison: {comparison['disk_mb']:.1f} MB."))
    _add_figure(
        report,
        "comparison.png",
        f"{metric} per row",
        lambda: figures.comparison_bars(rows, metric),
    )


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(float(value))


def _cross_domain(report: Report, cross: Mapping[str, Any]) -> None:
    values = cross.get("values") or []
    rows = list(cross.get("rows") or [])
    columns = list(cross.get("columns") or [])
    metric = str(cross.get("metric", "accuracy"))
    report.blocks.append(("h2", "Cross-domain matrix"))
    report.blocks.append(("p", "Trained on the row's domain, tested on the column's."))
    report.blocks.append(
        (
            "table",
            ["trained on \\ tested on", *columns],
            [[r, *row] for r, row in zip(rows, values, strict=False)],
        )
    )
    _add_figure(
        report,
        "cross-domain.png",
        f"Cross-domain {metric}",
        lambda: figures.heat_map(values, rows, columns, metric),
    )


def build_report(
    *,
    title: str = "Lepton run",
    config: Mapping[str, Any] | None = None,
    result: Mapping[str, Any] | None = None,
    comparison: Mapping[str, Any] | None = None,
    cross_domain: Mapping[str, Any] | None = None,
) -> Report:
    """The report of a run (``result``: the JSON of ``result.json``), a comparison
    (``comparison.json``) or both; ``cross_domain`` is what
    :meth:`lepton_platform.api.matrix.CrossDomainMatrix.to_json` writes (``rows``, ``columns``,
    ``values``, ``metric``)."""
    report = Report(title)
    if result:
        _summary(report, result)
    if comparison:
        _comparison(report, comparison)
    if result and result.get("data"):
        _data(report, result["data"])
    if result:
        _metrics(report, result)
    if cross_domain:
        _cross_domain(report, cross_domain)
    if config:
        report.blocks.append(("h2", "Config"))
        report.blocks.append(("pre", yaml.safe_dump(dict(config), sort_keys=False)))
    return report


def write_report(
    folder: str | Path,
    *,
    title: str = "Lepton run",
    config: Mapping[str, Any] | None = None,
    result: Mapping[str, Any] | None = None,
    comparison: Mapping[str, Any] | None = None,
    cross_domain: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``report.md`` (with ``figures/*.png``) and ``report.html`` into ``folder``, each
    file atomically; return the two paths."""
    report = build_report(
        title=title, config=config, result=result, comparison=comparison, cross_domain=cross_domain
    )
    return save_report(folder, report)


def save_report(folder: str | Path, report: Report) -> tuple[Path, Path]:
    """Write a built report as ``report.md`` (with ``figures/*.png``) and ``report.html`` into
    ``folder``, each file atomically; return the two paths."""
    out = Path(folder)
    for fig in report.figures:
        atomic_write_bytes(out / "figures" / fig.name, fig.png)
    markdown = atomic_write_text(out / "report.md", report.to_markdown())
    page = atomic_write_text(out / "report.html", report.to_html())
    return markdown, page
