"""``transfer``: data, backbone, task and strategy in one call.

``transfer(...)`` builds the job (:mod:`lepton_platform.api.job`), lets the strategy train it,
evaluates it on validation and test (the test split never chooses anything), saves the model as
one artifact folder and writes ``result.json``. Every piece is a registered name or an object::

    import lepton_platform as lp

    result = lp.transfer(
        domain="image",
        data="digits/",                       # a path, paths, source mappings or a dataset
        backbone="resnet18",
        pretrained="IMAGENET1K_V1",
        strategy="lp-ft",
        train={"epochs": 5, "lr": 1e-3},
        output_dir="runs/digits",
    )
    print(result.metrics["test"]["accuracy"])

Beside the metrics, ``result.json`` records the model's size (``parameters``: the model's, the
backbone's and how many trained; ``model_size_mb``) and its prediction speed on the test split
(``prediction``), so that ``compare`` can set a small model beside a large one. A strategy that
trained an adapter (``lora``, ``ia3``) saves the merged weights as the model and, with
``save_adapter``, the adapter alone in peft's format in the model folder's ``adapter/``, its
base weights' fingerprint recorded in the manifest (``extra.adapter``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lepton_platform.api.job import DataArgument, Job, build_job, naming_plugins

if TYPE_CHECKING:
    import datasets

    from lepton_platform.data import Sources
    from lepton_platform.domains import Domain
    from lepton_platform.engine.callbacks import Callback
    from lepton_platform.models import Backbone, TransferModel
    from lepton_platform.settings import SplitConfig, TrainConfig
    from lepton_platform.strategies import Strategy
    from lepton_platform.tasks import Task

__all__ = [
    "TransferResult",
    "evaluate_splits",
    "parameter_counts",
    "prediction_speed",
    "result_json",
    "run_job",
    "size_mb",
    "transfer",
]


@dataclass
class TransferResult:
    """What one transfer produced: the model, metrics per split, the strategy's history and
    details, the data summary, and where the artifact was saved. ``headline_key`` is the
    result key of the run's headline metric."""

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
    #: How far memory (RSS) rose above its level when training started: the run's own.
    memory_added_mb: float = 0.0
    predictions: dict[str, Any] = field(default_factory=dict, repr=False)
    #: ``model``, ``backbone`` and ``trainable`` parameter counts (``trainable``: what the
    #: strategy trained, as it reports it, else what requires gradients at the end).
    parameters: dict[str, int] = field(default_factory=dict)
    #: Megabytes of the model's tensors as saved (parameters and buffers).
    model_size_mb: float = 0.0
    #: Prediction speed on the test split (else validation): ``examples``, ``seconds``,
    #: ``examples_per_second``, ``batch_size``, ``device``.
    prediction: dict[str, Any] = field(default_factory=dict)
    headline_metric: str = ""
    headline_key: str = ""
    higher_is_better: bool = True

    def headline(self, split: str = "test") -> float | None:
        """The headline metric on ``split`` (``None`` when not evaluated)."""
        values = self.metrics.get(split) or {}
        value = values.get(self.headline_key)
        return float(value) if isinstance(value, int | float) else None


def evaluate_splits(
    job: Job,
    model: TransferModel,
    *,
    splits: Sequence[str] = ("validation", "test"),
    bootstrap: int = 1000,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Metrics of ``model`` on the job's prepared ``splits`` (with a bootstrap interval of the
    headline on test), and the raw predictions (with the ``seconds`` each split's prediction
    took). Several processes share the rows."""
    from lepton_platform.engine.distributed import processes
    from lepton_platform.engine.evaluate import bootstrap_ci, compute_metrics
    from lepton_platform.engine.predict import predict

    config = job.config
    scores: dict[str, dict[str, Any]] = {}
    predictions: dict[str, Any] = {}
    procs = processes()
    for name in splits:
        ds = job.prepared.get(name)
        if ds is None:
            continue
        started = time.perf_counter()
        out = predict(
            model,
            ds,
            job.preprocessor,
            batch_size=config.eval_batch_size or config.batch_size,
            accelerator=procs if procs.num_processes > 1 else None,
            num_labels=job.task.num_labels if job.task.multi_label else None,
        )
        seconds = time.perf_counter() - started
        assert out.labels is not None
        values = compute_metrics(job.task, out.outputs, out.labels, job.metrics)
        predictions[name] = {"logits": out.outputs, "labels": out.labels, "seconds": seconds}
        if name == "test" and bootstrap:
            low, high = bootstrap_ci(
                job.headline,
                job.task,
                out.outputs,
                out.labels,
                n_resamples=bootstrap,
                seed=config.seed,
            )
            values["ci"] = {
                "metric": job.headline.name,
                "key": job.headline.key,
                "low": low,
                "high": high,
                "confidence": 0.95,
            }
        scores[name] = values
    return scores, predictions


def run_job(
    job: Job,
    *,
    output_dir: str | Path | None = None,
    save: bool = True,
    bootstrap: int = 1000,
    on_training: Callable[[], None] | None = None,
) -> TransferResult:
    """Train ``job`` with its strategy, evaluate, save the model and write ``result.json``
    into ``output_dir`` (the main process writes; the others only compute).
    ``on_training()`` is called just before the strategy starts."""
    from lepton_platform._memory import PeakMemory
    from lepton_platform.api.predictor import save_model
    from lepton_platform.engine.distributed import is_main_process, wait_for_everyone

    with PeakMemory() as memory:
        started = time.perf_counter()
        if on_training is not None:
            on_training()
        with naming_plugins(f"strategy {job.strategy.name!r}"):
            outcome = job.strategy.run(job.transfer)
            scores, predictions = evaluate_splits(job, outcome.model, bootstrap=bootstrap)
        record = job.record()
        adapter = _adapter_record(outcome, record)
        out = Path(output_dir) if output_dir is not None else None
        artifact = None
        if out is not None and save:
            if is_main_process():
                artifact = save_model(
                    out / "model",
                    outcome.model,
                    domain=job.domain_name,
                    backbone=job.backbone_name,
                    backbone_config=record["backbone"]["config"],
                    task=job.task_name,
                    task_config=job.task.config(),
                    label_names=job.bundle.label_names,
                    preprocessing=job.preprocessor.config(),
                    strategy=record["strategy"],
                    metrics=scores,
                    data_fingerprints=job.bundle.fingerprints,
                    extra=None if adapter is None else {"adapter": adapter},
                )
                if adapter is not None:
                    _save_adapter(artifact, outcome, adapter)
            else:
                artifact = (out / "model").absolute()
            wait_for_everyone()
        if is_main_process():
            _end_training_folder(job, scores, artifact)
        result = TransferResult(
            model=outcome.model,
            task=job.task,
            metrics=scores,
            history=outcome.history,
            details=_details(outcome),
            data_summary=job.bundle.summary(),
            strategy=record["strategy"],
            backbone=record["backbone"],
            seconds=time.perf_counter() - started,
            peak_memory_mb=memory.peak_mb,
            memory_added_mb=memory.added_mb,
            artifact=artifact,
            predictions=predictions,
            parameters=parameter_counts(outcome.model, _trained(outcome)),
            model_size_mb=size_mb(outcome.model),
            prediction=_speed(job, outcome.model, predictions),
            headline_metric=job.headline.name,
            headline_key=job.headline.key,
            higher_is_better=job.headline.higher_is_better,
        )
    if out is not None and is_main_process():
        from lepton_platform._io import atomic_write_json

        atomic_write_json(out / "result.json", result_json(result))
    return result


def _end_training_folder(job: Job, metrics: Mapping[str, Any], model: Path | None) -> None:
    """A finished run's training folder: the final metrics and the model folder go to the
    MLflow runs its training logged to, and the optimiser state and mid-run checkpoints are
    removed (the model folder holds the trained model) unless
    ``train.keep_checkpoints_after_run``."""
    import shutil

    from lepton_platform.engine.callbacks import TRACKING_FILE, log_run_end

    training = job.transfer.output_dir
    if training is None or not training.is_dir():
        return
    for file in sorted(training.rglob(TRACKING_FILE)):
        log_run_end(file.parent, metrics, model)
    if not job.transfer.config.keep_checkpoints_after_run:
        for folder in sorted(training.rglob("checkpoints"), reverse=True):
            if folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)


def _adapter_record(outcome: Any, record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The manifest's record of the adapter a strategy trained and merged (``lora``, ``ia3``
    with ``save_adapter``): what it is, its files' digests, the base weights it needs."""
    from lepton_platform.strategies.adapters import ADAPTER_FOLDER, AdapterOutcome

    if not isinstance(outcome, AdapterOutcome) or outcome.adapter is None:
        return None
    base = {"backbone": record["backbone"]["name"], "pretrained": record["backbone"]["pretrained"]}
    return {**outcome.adapter.full_record({"base": base}), "folder": ADAPTER_FOLDER}


def _save_adapter(artifact: Path, outcome: Any, adapter: Mapping[str, Any]) -> None:
    """The adapter alone, in peft's format, in the model folder's ``adapter/``."""
    from lepton_platform.strategies.adapters import write_adapter

    write_adapter(artifact / str(adapter["folder"]), outcome.adapter, adapter)


def parameter_counts(model: Any, trainable: int | None = None) -> dict[str, int]:
    """``model``, ``backbone`` and ``trainable`` parameter counts of a :class:`TransferModel`
    (``trainable``: as given, e.g. what a strategy reports it trained, else the parameters
    that require gradients)."""
    if trainable is None:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {
        "model": sum(p.numel() for p in model.parameters()),
        "backbone": sum(p.numel() for p in model.backbone.parameters()),
        "trainable": int(trainable),
    }


def size_mb(model: Any) -> float:
    """Megabytes of a module's tensors (each storage once: tied weights are saved once)."""
    seen: set[tuple[Any, int]] = set()
    total = 0
    for tensor in model.state_dict().values():
        key = (tensor.device, tensor.untyped_storage().data_ptr())
        if key in seen:
            continue
        seen.add(key)
        total += tensor.numel() * tensor.element_size()
    return total / 2**20


def prediction_speed(
    model: Any, split: str, examples: int, seconds: float, batch_size: int
) -> dict[str, Any]:
    """The record of how fast ``model`` predicted ``examples`` rows of ``split`` (prepared,
    through the one prediction function) in ``seconds``."""
    device = next(iter(model.parameters()), None)
    return {
        "split": split,
        "examples": examples,
        "seconds": seconds,
        "examples_per_second": examples / seconds if seconds > 0 else None,
        "batch_size": batch_size,
        "device": None if device is None else str(device.device),
    }


def _trained(outcome: Any) -> int | None:
    trained = outcome.details.get("trainable_parameters")
    return trained if isinstance(trained, int) and not isinstance(trained, bool) else None


def _speed(job: Job, model: Any, predictions: Mapping[str, Any]) -> dict[str, Any]:
    """Examples per second of the evaluation's prediction on test (else validation)."""
    name = "test" if "test" in predictions else next(iter(predictions), None)
    if name is None:
        return {}
    entry = predictions[name]
    batch_size = job.config.eval_batch_size or job.config.batch_size
    return prediction_speed(model, name, len(entry["labels"]), entry["seconds"], batch_size)


def _details(outcome: Any) -> dict[str, Any]:
    details = dict(outcome.details)
    if outcome.fit is not None and outcome.fit.selection and "selection" not in details:
        details["selection"] = outcome.fit.selection
    if outcome.fit is not None and outcome.fit.speed and "speed" not in details:
        details["speed"] = outcome.fit.speed
    return details


def result_json(result: TransferResult) -> dict[str, Any]:
    """The JSON-ready part of a result (no model, no raw predictions): what ``result.json``
    holds. The test split's confusion matrix and per-class metrics are added when the metrics
    did not produce them (single-label tasks), so that the report can show them."""
    from lepton_platform.reports import confusion_from_predictions

    metrics = {split: dict(values) for split, values in result.metrics.items()}
    test = metrics.get("test")
    pred = result.predictions.get("test")
    names = result.data_summary.get("label_names") or []
    if test is not None and pred and names and not result.task.multi_label:
        extra = confusion_from_predictions(pred["logits"], pred["labels"], names)
        if "confusion_matrix" in extra:
            test.setdefault("confusion_matrix", extra["confusion_matrix"])
        per_class = {k: dict(v) for k, v in (test.get("per_class") or {}).items()}
        for name, stats in (extra.get("per_class") or {}).items():
            for stat, value in stats.items():
                per_class.setdefault(name, {}).setdefault(stat, value)
        test["per_class"] = per_class
    return {
        "metrics": metrics,
        "headline": {
            "metric": result.headline_metric,
            "key": result.headline_key,
            "higher_is_better": result.higher_is_better,
        },
        "history": result.history,
        "details": result.details,
        "data": result.data_summary,
        "strategy": result.strategy,
        "backbone": result.backbone,
        "seconds": result.seconds,
        "peak_memory_mb": result.peak_memory_mb,
        "memory_added_mb": result.memory_added_mb,
        "parameters": result.parameters,
        "model_size_mb": result.model_size_mb,
        "prediction": result.prediction,
        "artifact": str(result.artifact) if result.artifact else None,
    }


def transfer(
    *,
    domain: str | Domain | None,
    data: DataArgument,
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
    unlabelled_target: datasets.Dataset | Sources | None = None,
    output_dir: str | Path | None = None,
    save: bool = True,
    bootstrap: int = 1000,
    resume: bool = False,
    callbacks: Sequence[Callback] = (),
    domain_options: Mapping[str, Any] | None = None,
    min_loaded: float = 0.5,
    scratch: bool = False,
) -> TransferResult:
    """Run one transfer and return its :class:`TransferResult` (see the module docstring).

    ``data`` is a path, a list of paths, a source mapping (or a list of them), a
    ``datasets.Dataset`` or a ``DatasetDict`` in the standard schema, or a data bundle.
    ``unlabelled_target`` (for adaptation strategies) is a dataset or sources written like
    ``data``. ``resume=True`` continues a killed run from the checkpoints under
    ``output_dir``. Pretrained weights must fill at least ``min_loaded`` of the backbone's
    tensors (0 allows partial loading); ``scratch=True`` trains the same architecture from
    random weights (the baseline)."""
    job = build_job(
        domain=domain,
        data=data,
        backbone=backbone,
        pretrained=pretrained,
        backbone_options=backbone_options,
        task=task,
        task_options=task_options,
        strategy=strategy,
        strategy_params=strategy_params,
        train=train,
        split=split,
        on_bad_record=on_bad_record,
        metrics=metrics,
        unlabelled_target=unlabelled_target,
        output_dir=output_dir,
        resume=resume,
        callbacks=callbacks,
        domain_options=domain_options,
        min_loaded=min_loaded,
        scratch=scratch,
    )
    return run_job(job, output_dir=output_dir, save=save, bootstrap=bootstrap)
