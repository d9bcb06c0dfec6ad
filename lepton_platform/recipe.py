"""The transfer recipe: data, backbone, task and strategy in one call.

``transfer(...)`` loads the data into the standard schema, builds the backbone through the
registry with its pretrained weights, puts the task's head on it, lets the strategy train it,
evaluates it on validation and test (the test split never chooses anything), and saves the model
as one artifact folder. Every piece is a registered name or an object::

    import lepton_platform as lp

    result = lp.transfer(
        domain="image",
        data=[{"path": "digits/", "format": "folder"}],
        backbone="resnet18",
        pretrained="IMAGENET1K_V1",
        strategy="lp-ft",
        train={"epochs": 5, "lr": 1e-3},
        output_dir="runs/digits",
    )
    print(result.metrics["test"]["accuracy"])
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lepton_platform.errors import ConfigError

if TYPE_CHECKING:
    import datasets

    from lepton_platform.data import DataBundle, SplitConfig
    from lepton_platform.domains import Domain
    from lepton_platform.engine.finetune import TrainConfig
    from lepton_platform.models import Backbone, TransferModel
    from lepton_platform.strategies import Strategy
    from lepton_platform.tasks import Task

__all__ = ["TransferResult", "transfer"]


@dataclass
class TransferResult:
    """What one transfer produced: the model, metrics per split, the strategy's history and
    details, the data summary, and where the artifact was saved."""

    model: TransferModel
    task: Task
    metrics: dict[str, dict[str, Any]]
    history: list[dict[str, Any]]
    details: dict[str, Any]
    data_summary: dict[str, Any]
    strategy: dict[str, Any]
    backbone: dict[str, Any]
    seconds: float
    peak_memory_mb: float
    artifact: Path | None = None
    predictions: dict[str, Any] = field(default_factory=dict, repr=False)

    def headline(self, split: str = "test") -> float | None:
        """The task's first default metric on ``split`` (``None`` when not evaluated)."""
        from lepton_platform.engine.evaluate import headline_key

        values = self.metrics.get(split) or {}
        key = headline_key(self.task.default_metrics[0]) if self.task.default_metrics else ""
        return float(values[key]) if key in values else None


def resolve_train_config(train: TrainConfig | Mapping[str, Any] | None) -> TrainConfig:
    from lepton_platform.engine.finetune import TrainConfig

    if train is None:
        return TrainConfig()
    if isinstance(train, TrainConfig):
        return train
    try:
        return TrainConfig(**dict(train))
    except TypeError as exc:
        raise ConfigError(f"train: {exc}") from None


def resolve_data(
    domain: Domain,
    data: DataBundle | Sequence[Mapping[str, Any]] | Mapping[str, Any],
    split: SplitConfig | Mapping[str, Any] | None,
    on_bad_record: str,
) -> DataBundle:
    from lepton_platform.data import DataBundle, SplitConfig, load_data

    if isinstance(data, DataBundle):
        return data
    sources = [data] if isinstance(data, Mapping) else list(data)
    if split is None:
        split_config = SplitConfig()
    elif isinstance(split, SplitConfig):
        split_config = split
    else:
        split_config = SplitConfig(**dict(split))
    return load_data(domain, sources, split=split_config, on_bad_record=on_bad_record)  # type: ignore[arg-type]


def build_backbone(
    backbone: str | Backbone, pretrained: Any, options: Mapping[str, Any]
) -> tuple[Backbone, str]:
    """The backbone object and its registered name."""
    from lepton_platform.models import Backbone
    from lepton_platform.registry import create_backbone

    if isinstance(backbone, Backbone):
        name = getattr(backbone, "registered_name", type(backbone).__name__.lower())
        return backbone, name
    return create_backbone(backbone, pretrained=pretrained, **dict(options)), backbone


def transfer(
    *,
    domain: str | Domain,
    data: DataBundle | Sequence[Mapping[str, Any]] | Mapping[str, Any],
    backbone: str | Backbone,
    pretrained: Any = None,
    backbone_options: Mapping[str, Any] | None = None,
    task: str = "classification",
    task_options: Mapping[str, Any] | None = None,
    strategy: str | Strategy = "finetune",
    strategy_params: Mapping[str, Any] | None = None,
    train: TrainConfig | Mapping[str, Any] | None = None,
    split: SplitConfig | Mapping[str, Any] | None = None,
    on_bad_record: str = "error",
    metrics: Sequence[str] | None = None,
    unlabelled_target: datasets.Dataset | None = None,
    output_dir: str | Path | None = None,
    save: bool = True,
    bootstrap: int = 1000,
    resume: bool = False,
) -> TransferResult:
    """Run one transfer and return its :class:`TransferResult` (see the module docstring).

    ``resume=True`` continues a killed run from the checkpoints under ``output_dir``."""
    from lepton_platform._memory import PeakMemory
    from lepton_platform.data import prepare
    from lepton_platform.domains import Domain
    from lepton_platform.engine.evaluate import bootstrap_ci, compute_metrics
    from lepton_platform.models import TransferModel
    from lepton_platform.registry import create_domain, create_strategy, create_task
    from lepton_platform.strategies import Strategy, TransferJob
    from lepton_platform.strategies.base import snapshot

    with PeakMemory() as memory:
        started = time.perf_counter()
        config = resolve_train_config(train)
        domain_obj = domain if isinstance(domain, Domain) else create_domain(domain)
        strategy_obj = (
            strategy
            if isinstance(strategy, Strategy)
            else create_strategy(strategy, **dict(strategy_params or {}))
        )
        bundle = resolve_data(domain_obj, data, split, on_bad_record)
        task_obj = create_task(task, label_names=bundle.label_names, **dict(task_options or {}))

        import torch

        torch.manual_seed(config.seed)
        backbone_obj, backbone_name = build_backbone(backbone, pretrained, backbone_options or {})
        model = TransferModel(backbone_obj, task_obj.build_head(backbone_obj.feature_dim))
        strategy_obj.check(model, pretrained=pretrained is not None)

        preprocessor = backbone_obj.preprocessor()
        prepared = {
            name: prepare(ds, preprocessor, desc=f"preprocess ({name})")
            for name, ds in (
                ("train", bundle.train),
                ("validation", bundle.validation),
                ("test", bundle.test),
            )
            if ds is not None
        }
        target = None
        if unlabelled_target is not None:
            from lepton_platform.adaptation._common import strip_labels

            target = prepare(
                strip_labels(unlabelled_target, "transfer(unlabelled_target=...)"),
                preprocessor,
                desc="preprocess (unlabelled target)",
            )
        out = Path(output_dir) if output_dir is not None else None
        job = TransferJob(
            model=model,
            task=task_obj,
            preprocessor=preprocessor,
            train=prepared["train"],
            validation=prepared.get("validation"),
            config=config,
            output_dir=out / "training" if out else None,
            pretrained_state=snapshot(backbone_obj) if pretrained is not None else None,
            unlabelled_target=target,
            metrics=metrics,
            resume=resume,
        )
        outcome = strategy_obj.run(job)

        scores: dict[str, dict[str, Any]] = {}
        predictions: dict[str, Any] = {}
        for split_name in ("validation", "test"):
            ds = prepared.get(split_name)
            if ds is None:
                continue
            logits, labels = job.trainer(model=outcome.model).predict(ds, preprocessor)
            assert labels is not None
            values = compute_metrics(task_obj, logits, labels, metrics)
            predictions[split_name] = {"logits": logits, "labels": labels}
            if split_name == "test" and bootstrap:
                headline = (metrics or task_obj.default_metrics)[0]
                low, high = bootstrap_ci(
                    headline, task_obj, logits, labels, n_resamples=bootstrap, seed=config.seed
                )
                values["ci"] = {"metric": headline, "low": low, "high": high, "confidence": 0.95}
            scores[split_name] = values

        strategy_record = {"name": strategy_obj.name, "params": strategy_obj.config()}
        backbone_record = {
            "name": backbone_name,
            "config": backbone_obj.config(),
            "pretrained": None if pretrained is None else str(pretrained),
        }
        artifact = None
        if out is not None and save:
            from lepton_platform.artifacts import save_model

            artifact = save_model(
                out / "model",
                outcome.model,
                domain=domain_obj.name,
                backbone=backbone_name,
                backbone_config=backbone_obj.config(),
                task=task,
                task_config=task_obj.config(),
                label_names=bundle.label_names,
                preprocessing=preprocessor.config(),
                strategy=strategy_record,
                metrics=scores,
                data_fingerprints=bundle.fingerprints,
            )
        result = TransferResult(
            model=outcome.model,
            task=task_obj,
            metrics=scores,
            history=outcome.history,
            details=outcome.details,
            data_summary=bundle.summary(),
            strategy=strategy_record,
            backbone=backbone_record,
            seconds=time.perf_counter() - started,
            peak_memory_mb=memory.peak_mb,
            artifact=artifact,
            predictions=predictions,
        )
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)  # a probe without the engine made none
            (out / "result.json").write_text(
                json.dumps(summary_json(result), indent=2, default=str)
            )
        return result


def summary_json(result: TransferResult) -> dict[str, Any]:
    """The JSON-ready part of a result (no model, no raw predictions)."""
    return {
        "metrics": result.metrics,
        "history": result.history,
        "details": result.details,
        "data": result.data_summary,
        "strategy": result.strategy,
        "backbone": result.backbone,
        "seconds": result.seconds,
        "peak_memory_mb": result.peak_memory_mb,
        "artifact": str(result.artifact) if result.artifact else None,
    }
