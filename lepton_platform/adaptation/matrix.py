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

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lepton_platform.errors import ConfigError

if TYPE_CHECKING:
    from lepton_platform.data import DataBundle
    from lepton_platform.domains import Domain
    from lepton_platform.engine.finetune import TrainConfig
    from lepton_platform.models import Backbone
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
        from lepton_platform.reports.figures import heat_map

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        (out / "matrix.json").write_text(json.dumps(self.to_json(), indent=2, default=str))
        png = heat_map(self.values, self.rows, self.columns, self.metric)
        files = {"json": str(out / "matrix.json")}
        if png is not None:
            (out / "matrix.png").write_bytes(png)
            files["png"] = str(out / "matrix.png")
        self.files = files
        return files


def _resolve_bundles(
    domain: str | Domain | None,
    sources_by_domain: Mapping[str, Any],
    split: Any,
    on_bad_record: str,
) -> dict[str, DataBundle]:
    from lepton_platform.data import DataBundle
    from lepton_platform.recipe import resolve_data

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
        from lepton_platform.domains import Domain
        from lepton_platform.registry import create_domain

        dom = domain if isinstance(domain, Domain) else create_domain(domain)
        bundles[name] = resolve_data(dom, sources, split, on_bad_record)
    return bundles


def _pool(bundles: Sequence[DataBundle], name: str) -> DataBundle:
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
        domain=name,
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
    leave_one_out: bool = True,
    output_dir: str | Path | None = None,
) -> CrossDomainMatrix:
    """Train one model per row (each domain; with ``leave_one_out`` also each "all but X")
    and test it on every domain's test split.

    ``sources_by_domain`` maps a domain name to a :class:`DataBundle` or to data sources that
    :func:`lepton_platform.data.load_data` reads for ``domain``. Every domain must have the same
    label names (the same task). ``backbone`` is a registered name (built with ``pretrained``
    and ``backbone_options``) or a callable returning a fresh :class:`Backbone`. ``strategy``
    is a registered name or a callable returning a fresh strategy. With ``output_dir`` the
    matrix is saved as JSON and PNG there."""
    from lepton_platform.data import prepare
    from lepton_platform.engine.evaluate import compute_metrics, headline_key
    from lepton_platform.models import TransferModel
    from lepton_platform.recipe import resolve_train_config
    from lepton_platform.registry import create_backbone, create_strategy, create_task
    from lepton_platform.strategies import TransferJob
    from lepton_platform.strategies.base import snapshot

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
    config = resolve_train_config(train)

    def fresh_backbone() -> Backbone:
        if isinstance(backbone, str):
            return create_backbone(backbone, pretrained=pretrained, **dict(backbone_options or {}))
        return backbone()

    def fresh_strategy() -> Strategy:
        if isinstance(strategy, str):
            made: Strategy = create_strategy(strategy, **dict(strategy_params or {}))
            return made
        return strategy()

    rows: list[tuple[str, DataBundle]] = [(n, bundles[n]) for n in names]
    if leave_one_out and len(names) > 2:
        rows += [
            (f"all but {n}", _pool([bundles[m] for m in names if m != n], f"all but {n}"))
            for n in names
        ]
    elif leave_one_out:
        # with two domains "all but A" is B: nothing new to train
        pass
    values: list[list[float]] = []
    details: dict[str, Any] = {}
    key = headline_key(metric)
    for row_name, bundle in rows:
        import torch

        torch.manual_seed(config.seed)
        bb = fresh_backbone()
        task = create_task("classification", label_names=bundle.label_names)
        model = TransferModel(bb, task.build_head(bb.feature_dim))
        strat = fresh_strategy()
        strat.check(model, pretrained=pretrained is not None)
        pre = bb.preprocessor()
        job = TransferJob(
            model=model,
            task=task,
            preprocessor=pre,
            train=prepare(bundle.train, pre, desc=f"preprocess ({row_name}, train)"),
            validation=prepare(bundle.validation, pre, desc=f"preprocess ({row_name}, val)"),
            config=config,
            pretrained_state=snapshot(bb) if pretrained is not None else None,
            output_dir=(
                Path(output_dir) / "rows" / row_name.replace(" ", "-") if output_dir else None
            ),
        )
        outcome = strat.run(job)
        line: list[float] = []
        for column in names:
            test = prepare(bundles[column].test, pre, desc=f"preprocess ({column}, test)")
            logits, labels = job.trainer(model=outcome.model).predict(test, pre)
            assert labels is not None
            line.append(float(compute_metrics(task, logits, labels, [metric])[key]))
        values.append(line)
        details[row_name] = {
            "train_rows": len(bundle.train),
            "best_epoch": outcome.fit.best_epoch if outcome.fit else None,
            "history": outcome.history,
        }
    matrix = CrossDomainMatrix(
        rows=[r for r, _ in rows], columns=names, values=values, metric=metric, details=details
    )
    if output_dir is not None:
        matrix.save(output_dir)
    return matrix
