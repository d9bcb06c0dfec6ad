"""The cross-domain matrix: train on each domain (and on all but one), test on every domain.

Row ``A`` is a model trained on domain A's training split, row ``all but A`` one trained on
every other domain's training splits pooled (leave-one-domain-out); column ``B`` is the test
split of domain B. The test splits choose nothing: epochs are chosen on the row's own
validation split. The matrix is saved as ``matrix.json`` and drawn as ``matrix.png`` with the
reports package's heat map (rows: trained on, columns: tested on).

    >>> m = cross_domain_matrix("image", {"digits": bundle_a, "mnist": bundle_b},
    ...                         backbone="resnet18", backbone_options={...},
    ...                         output_dir="runs/matrix")   # doctest: +SKIP
    >>> m.values[0][1]                                      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lepton_platform.errors import ConfigError

if TYPE_CHECKING:
    from lepton_platform.data import DataBundle
    from lepton_platform.domains import Domain
    from lepton_platform.models import Backbone
    from lepton_platform.settings import TrainConfig
    from lepton_platform.strategies import Strategy

__all__ = ["CrossDomainMatrix", "cross_domain_matrix"]


@dataclass
class CrossDomainMatrix:
    """``values[i][j]``: ``metric`` of the model trained on ``rows[i]``, tested on
    ``columns[j]``. ``details`` holds each row's training history and chosen epoch."""

    rows: list[str]
    columns: list[str]
    values: list[list[float]]
    metric: str
    details: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The shape the reports package reads (``rows``, ``columns``, ``values``, ``metric``)."""
        return {
            "rows": self.rows,
            "columns": self.columns,
            "values": self.values,
            "metric": self.metric,
            "details": self.details,
        }

    def save(self, folder: str | Path) -> dict[str, str]:
        """Write ``matrix.json`` and ``matrix.png`` (the heat map) into ``folder``."""
        from lepton_platform._io import atomic_write_bytes, atomic_write_json
        from lepton_platform.reports.figures import heat_map

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "matrix.json", self.to_json())
        png = heat_map(self.values, self.rows, self.columns, self.metric)
        files = {"json": str(out / "matrix.json")}
        if png is not None:
            atomic_write_bytes(out / "matrix.png", png)
            files["png"] = str(out / "matrix.png")
        self.files = files
        return files


def _resolve_bundles(
    domain: str | Domain | None,
    sources_by_domain: Mapping[str, Any],
    split: Any,
    on_bad_record: str,
) -> dict[str, DataBundle]:
    from lepton_platform.api.job import resolve_data, resolve_domain
    from lepton_platform.data import DataBundle

    bundles: dict[str, DataBundle] = {}
    for name, sources in sources_by_domain.items():
        if isinstance(sources, DataBundle):
            bundles[name] = sources
            continue
        if domain is None:
            raise ConfigError(
                f"cross_domain_matrix: domain {name!r} is given as sources, so `domain` (the "
                "registered modality, e.g. 'image') is needed to load them"
            )
        bundles[name] = resolve_data(resolve_domain(domain), sources, split, on_bad_record)
    return bundles


def _pool(bundles: list[DataBundle], name: str) -> DataBundle:
    import datasets

    from lepton_platform.data import DataBundle

    def cat(split: str) -> datasets.Dataset:
        parts = [b[split] for b in bundles]
        features = parts[0].features
        return datasets.concatenate_datasets([p.cast(features) for p in parts])

    first = bundles[0]
    return DataBundle(
        train=cat("train"),
        validation=cat("validation"),
        test=cat("test"),
        label_names=list(first.label_names),
        input_columns=first.input_columns,
        domain=first.domain,
    )


def cross_domain_matrix(
    domain: str | Domain | None,
    sources_by_domain: Mapping[str, Any],
    backbone: str | Callable[[], Backbone],
    *,
    pretrained: Any = None,
    backbone_options: Mapping[str, Any] | None = None,
    strategy: str | Callable[[], Strategy] = "finetune",
    strategy_params: Mapping[str, Any] | None = None,
    train: TrainConfig | Mapping[str, Any] | None = None,
    split: Any = None,
    on_bad_record: str = "error",
    metric: str = "accuracy",
    task: str = "classification",
    task_options: Mapping[str, Any] | None = None,
    leave_one_out: bool = True,
    output_dir: str | Path | None = None,
) -> CrossDomainMatrix:
    """Train one model per row (each domain; with ``leave_one_out`` also each "all but X")
    and test it on every domain's test split.

    ``sources_by_domain`` maps a domain name to a :class:`DataBundle` or to data sources that
    the data layer reads for ``domain``. Every domain must have the same label names (the same
    ``task``); ``metric`` is a registered metric, whose spec's result key fills the matrix.
    ``backbone`` is a registered name (built with ``pretrained`` and ``backbone_options``) or a
    callable returning a fresh :class:`Backbone`. ``strategy`` is a registered name or a
    callable returning a fresh strategy. Each row is a job of the one composition root
    (:func:`lepton_platform.api.job.build_job`). With ``output_dir`` the matrix is saved as
    JSON and PNG there."""
    from lepton_platform.api.job import build_job, resolve_metrics
    from lepton_platform.data import prepare
    from lepton_platform.engine.evaluate import compute_metrics

    if len(sources_by_domain) < 2:
        raise ConfigError(
            f"cross_domain_matrix needs at least 2 domains, got {list(sources_by_domain)}"
        )
    bundles = _resolve_bundles(domain, sources_by_domain, split, on_bad_record)
    names = list(bundles)
    spaces = {n: list(b.label_names) for n, b in bundles.items()}
    if any(spaces[n] != spaces[names[0]] for n in names):
        raise ConfigError(
            f"cross_domain_matrix: the domains' label names differ ({spaces}); testing a model "
            "on another domain needs one label space (relabel, or use train_multidomain)"
        )

    rows: list[tuple[str, DataBundle]] = [(n, bundles[n]) for n in names]
    if leave_one_out and len(names) > 2:  # with two domains "all but A" is B: nothing new
        rows += [
            (f"all but {n}", _pool([bundles[m] for m in names if m != n], f"all but {n}"))
            for n in names
        ]
    values: list[list[float]] = []
    details: dict[str, Any] = {}
    key = ""
    for row_name, bundle in rows:
        job = build_job(
            domain=domain,
            data=bundle,
            backbone=backbone if isinstance(backbone, str) else backbone(),
            pretrained=pretrained,
            backbone_options=backbone_options if isinstance(backbone, str) else None,
            strategy=strategy if isinstance(strategy, str) else strategy(),
            strategy_params=strategy_params if isinstance(strategy, str) else None,
            train=train,
            task=task,
            task_options=task_options,
            metrics=[metric],
            splits=("train", "validation"),
            output_dir=(
                Path(output_dir) / "rows" / row_name.replace(" ", "-") if output_dir else None
            ),
        )
        outcome = job.strategy.run(job.transfer)
        (head,) = resolve_metrics([metric], job.task)
        key = head.key
        line: list[float] = []
        for column in names:
            test = prepare(bundles[column].test, job.preprocessor, desc=f"preprocess ({column})")
            logits, labels = job.transfer.predict(outcome.model, test)
            assert labels is not None
            line.append(float(compute_metrics(job.task, logits, labels, [head])[key]))
        values.append(line)
        details[row_name] = {
            "train_rows": len(bundle.train),
            "best_epoch": outcome.fit.best_epoch if outcome.fit else None,
            "history": outcome.history,
        }
    matrix = CrossDomainMatrix(
        rows=[r for r, _ in rows], columns=names, values=values, metric=key or metric,
        details=details,
    )  # fmt: skip
    if output_dir is not None:
        matrix.save(output_dir)
    return matrix
