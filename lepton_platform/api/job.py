"""The one composition root: names or objects in, a ready transfer job out.

Every feature builds its jobs here (``transfer``, ``compare`` and its baselines, ``evaluate``,
a tuning trial, ``rank``, the cross-domain matrix, multi-domain training, ``load``), so the
domain, the data, the backbone with its weights, the task and its head, the strategy, the
metrics and what chooses on validation are put together the same way everywhere, and every
check runs before anything trains::

    >>> from lepton_platform.api.job import build_job
    >>> job = build_job(domain="tabular", data="train.csv", backbone="mlp",     # doctest: +SKIP
    ...                 backbone_options={"num_features": 4}, strategy="lp-ft")
    >>> outcome = job.strategy.run(job.transfer)                                 # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from lepton_platform.errors import ConfigError, LeptonError, PluginError
from lepton_platform.registry import (
    create_backbone,
    create_domain,
    create_strategy,
    create_task,
    get_backbone,
    get_metric,
    plugin_of_exception,
)
from lepton_platform.settings import SplitConfig, TrainConfig, resolve

if TYPE_CHECKING:
    import datasets

    from lepton_platform.data import DataBundle, Sources
    from lepton_platform.domains import Domain
    from lepton_platform.engine.callbacks import Callback
    from lepton_platform.engine.evaluate import Metric, Monitor
    from lepton_platform.models import Backbone, Preprocessor, TransferModel
    from lepton_platform.strategies import Strategy, TransferJob
    from lepton_platform.tasks import Task

__all__ = [
    "DataArgument",
    "Job",
    "build_backbone",
    "build_job",
    "build_model",
    "load_data",
    "resolve_data",
    "resolve_domain",
    "resolve_metrics",
    "resolve_monitor",
    "resolve_strategy",
    "resolve_train",
    "scratch_architecture",
    "unlabelled_data",
]

#: What ``data=`` accepts: a data bundle, a path, a list of paths, a source mapping (or a
#: list of them), a ``datasets.Dataset`` or a ``DatasetDict`` in the standard schema.
DataArgument = Any


@dataclass
class Job:
    """A transfer job, ready to run, and what it was built from (``domain`` is ``None`` when the
    data came as a ready :class:`~lepton_platform.data.DataBundle` without one)."""

    domain: Domain | None
    bundle: DataBundle
    task: Task
    task_name: str
    backbone: Backbone
    backbone_name: str
    pretrained: Any
    model: TransferModel
    strategy: Strategy
    preprocessor: Preprocessor
    prepared: dict[str, datasets.Dataset]
    transfer: TransferJob
    metrics: list[Metric]
    monitor: Monitor
    config: TrainConfig
    options: dict[str, Any] = field(default_factory=dict)
    #: The backbone is ``pretrained``'s architecture with random weights (the baseline).
    scratch: bool = False

    @property
    def domain_name(self) -> str:
        """The registered name of the data's domain."""
        return self.domain.name if self.domain is not None else self.bundle.domain

    @property
    def headline(self) -> Metric:
        """The metric a single number is reported by (the first of ``metrics``)."""
        return self.metrics[0]

    def record(self) -> dict[str, Any]:
        """What ran, JSON-ready (the result's and the manifest's entries)."""
        return {
            "strategy": {"name": self.strategy.name, "params": self.strategy.config()},
            "backbone": {
                "name": self.backbone_name,
                "config": self.backbone.config(),
                "pretrained": None if self.pretrained is None else str(self.pretrained),
                "scratch": self.scratch,
                "load_report": (
                    None
                    if self.backbone.load_report is None
                    else self.backbone.load_report.to_json()
                ),
            },
            "task": {"name": self.task_name, "config": self.task.config()},
        }


# -- the pieces, each usable alone --------------------------------------------------------------

P = ParamSpec("P")
R = TypeVar("R")


def names_plugins(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A decorator: the function runs under :func:`naming_plugins`."""

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with naming_plugins(what):
                return function(*args, **kwargs)

        return wrapper

    return decorate


@contextlib.contextmanager
def naming_plugins(what: str) -> Iterator[None]:
    """While the block runs, an error raised in a plugin's code (a domain's reader, a
    backbone's ``forward``, a strategy) that is not one of Lepton's reaches the user as a
    :class:`PluginError` naming the plugin, its distribution and where, the original chained."""
    try:
        yield
    except LeptonError:
        raise
    except Exception as exc:
        found = plugin_of_exception(exc)
        if found is None or found[0].builtin:
            raise
        info, where = found
        version = f" {info.version}" if info.version else ""
        raise PluginError(
            f"{what} failed in the code of plugin {info.name!r} (distribution "
            f"{info.distribution}{version}) at {where}: {type(exc).__name__}: {exc}. The error "
            "is in that plugin: update it, or report it to its authors"
        ) from exc


def resolve_domain(domain: str | Domain, options: Mapping[str, Any] | None = None) -> Domain:
    """A domain object from a registered name (with its reader's options) or as given."""
    from lepton_platform.domains import Domain

    if isinstance(domain, Domain):
        if options:
            raise ConfigError("domain options go with a domain name, not a Domain object")
        return domain
    if not isinstance(domain, str):
        raise ConfigError(
            f"domain must be a registered name or a lepton_platform.domains.Domain, got "
            f"{type(domain).__name__}"
        )
    return create_domain(domain, **dict(options or {}))


def resolve_train(train: TrainConfig | Mapping[str, Any] | None) -> TrainConfig:
    """A :class:`TrainConfig` from one, a mapping (``train:`` of a config) or the defaults."""
    config: TrainConfig = resolve(TrainConfig, train, "train")
    return config


def resolve_split(split: SplitConfig | Mapping[str, Any] | None) -> SplitConfig:
    config: SplitConfig = resolve(SplitConfig, split, "split")
    return config


def resolve_data(
    domain: Domain,
    data: DataArgument,
    split: SplitConfig | Mapping[str, Any] | None = None,
    on_bad_record: str = "error",
) -> DataBundle:
    """The checked splits of ``data`` (see :data:`DataArgument`), read with ``domain``."""
    from lepton_platform.data import DataBundle, load_data

    if isinstance(data, DataBundle):
        return data
    if on_bad_record not in ("error", "skip"):
        raise ConfigError(f"on_bad_record must be 'error' or 'skip', got {on_bad_record!r}")
    return load_data(
        domain,
        data,
        split=resolve_split(split),
        on_bad_record=on_bad_record,  # type: ignore[arg-type]
    )


def load_data(
    domain: str | Domain,
    sources: Sources,
    *,
    split: SplitConfig | Mapping[str, Any] | None = None,
    on_bad_record: str = "error",
    label_names: Sequence[str] | None = None,
    domain_options: Mapping[str, Any] | None = None,
) -> DataBundle:
    """:func:`lepton_platform.data.load_data` with the domain given by its registered name (or
    as an object): the checked train, validation and test splits of ``sources``."""
    from lepton_platform.data import load_data as load

    return load(
        resolve_domain(domain, domain_options),
        sources,
        split=resolve_split(split),
        on_bad_record=on_bad_record,  # type: ignore[arg-type]
        label_names=label_names,
    )


def unlabelled_data(
    domain: Domain, data: datasets.Dataset | Sources, on_bad_record: str = "error"
) -> datasets.Dataset:
    """Unlabelled target data for adaptation: a dataset, or sources read with ``domain`` like
    ``data`` (every row of every source; a label column, if any, is dropped unread)."""
    import datasets as hf

    from lepton_platform.data import load_unlabelled

    if isinstance(data, hf.Dataset):
        return data
    return load_unlabelled(domain, data, on_bad_record=on_bad_record)  # type: ignore[arg-type]


def resolve_strategy(strategy: str | Strategy, params: Mapping[str, Any] | None = None) -> Strategy:
    """A strategy from a registered name and its parameters (checked now), or as given."""
    from lepton_platform.strategies import Strategy

    if isinstance(strategy, Strategy):
        if params:
            raise ConfigError("strategy parameters go with a strategy name, not a Strategy object")
        return strategy
    if not isinstance(strategy, str):
        raise ConfigError(
            f"strategy must be a registered name or a Strategy, got {type(strategy).__name__}"
        )
    return create_strategy(strategy, **dict(params or {}))


def build_backbone(
    backbone: str | Backbone,
    pretrained: Any = None,
    options: Mapping[str, Any] | None = None,
    *,
    min_loaded: float = 0.5,
) -> tuple[Backbone, str]:
    """The backbone object and its registered name (a ``Backbone`` object is taken as it is;
    its registered name is the one it records, or its class name).

    Built from pretrained weights, it must have been filled by them for at least
    ``min_loaded`` of its tensors (its load report says); less is an error naming what
    loaded, unless ``min_loaded`` is lowered (0 allows partial loading)."""
    from lepton_platform.models import Backbone

    if isinstance(backbone, Backbone):
        if options:
            raise ConfigError("backbone options go with a backbone name, not a Backbone object")
        return backbone, backbone.registered_name or type(backbone).__name__.lower()
    if not isinstance(backbone, str):
        raise ConfigError(
            f"backbone must be a registered name or a Backbone, got {type(backbone).__name__}"
        )
    if not 0.0 <= min_loaded <= 1.0:
        raise ConfigError(f"backbone.min_loaded must be in [0, 1], got {min_loaded}")
    built = create_backbone(backbone, pretrained=pretrained, **dict(options or {}))
    report = built.load_report
    if has_weights(pretrained) and report is not None and report.share < min_loaded:
        raise ConfigError(
            f"backbone {backbone!r}: the pretrained weights {pretrained} filled only "
            f"{report.share:.0%} of it, less than backbone.min_loaded ({min_loaded:.0%}): "
            f"{report.summary()}; missing {report.missing[:5]}, with other shapes "
            f"{[k for k, _, _ in report.mismatched][:5]}. Check that the weights are for this "
            "architecture, or set backbone.min_loaded lower to train from partial weights"
        )
    return built, backbone


def scratch_architecture(
    backbone: str | Backbone, pretrained: Any = None, options: Mapping[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """The registered name and the options that build the same architecture as
    ``build_backbone(backbone, pretrained, options)`` gives, with random weights (the
    from-scratch baseline): ``create_backbone(name, pretrained=None, **options)``. The
    architecture comes from the backbone's own ``config()`` (a Hub id's or local folder's
    config, a torchvision name's shape) or, for a Lepton model folder, from its manifest,
    without loading its weights."""
    from lepton_platform.artifacts import is_model_folder, read_manifest
    from lepton_platform.models import Backbone

    if isinstance(backbone, Backbone):
        if not backbone.registered_name:
            raise ConfigError(
                "the from-scratch baseline rebuilds the backbone through the registry: give "
                "its registered name rather than an unregistered Backbone object"
            )
        return backbone.registered_name, backbone.config()
    if not has_weights(pretrained):
        return backbone, dict(options or {})
    if isinstance(pretrained, str | os.PathLike) and is_model_folder(pretrained):
        recorded = read_manifest(pretrained)["backbone"].get("config", {})
        return backbone, {**recorded, **dict(options or {})}
    built, _ = build_backbone(backbone, pretrained, options, min_loaded=0.0)
    return backbone, built.config()


def build_model(backbone: Backbone, task: Task) -> TransferModel:
    """The backbone with the task's head on its pooled features: the model every engine
    trains, predicts with and saves."""
    from lepton_platform.models import TransferModel

    return TransferModel(backbone, task.build_head(backbone.feature_dim))


def resolve_metrics(names: Sequence[str] | None, task: Task) -> list[Metric]:
    """Registered metrics by name (default: the task's own), the first being the headline."""
    from lepton_platform.engine.evaluate import Metric

    chosen = list(task.default_metrics if names is None else names)
    if not chosen:
        raise ConfigError(
            f"no metrics: task {task.name!r} has no default metrics; name some in "
            "evaluation.metrics (metrics=[...])"
        )
    return [Metric(get_metric(name)) for name in chosen]


def resolve_monitor(config: TrainConfig) -> Monitor:
    """What chooses on validation: the loss, or the registered metric ``config.monitor``
    (its spec says whether higher is better; ``monitor_mode`` may override it)."""
    from lepton_platform.engine.evaluate import Metric, Monitor

    mode = None if config.monitor_mode == "auto" else config.monitor_mode
    if config.monitor == "loss":
        return Monitor(None, mode)
    try:
        spec = get_metric(config.monitor)
    except KeyError as exc:
        raise ConfigError(f"train.monitor: {exc}; or 'loss' for the validation loss") from None
    return Monitor(Metric(spec), mode)


def _is_dataset(value: Any) -> bool:
    import datasets

    return isinstance(value, datasets.Dataset)


def has_weights(pretrained: Any) -> bool:
    """Whether ``pretrained`` asks for weights (``None`` and ``False`` mean random)."""
    return pretrained is not None and pretrained is not False


# -- the whole job --------------------------------------------------------------------------


@names_plugins("building the job")
def build_job(
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
    resume: bool = False,
    splits: Sequence[str] = ("train", "validation", "test"),
    callbacks: Sequence[Callback] = (),
    domain_options: Mapping[str, Any] | None = None,
    min_loaded: float = 0.5,
    scratch: bool = False,
) -> Job:
    """Build a ready job from names or objects (see :func:`lepton_platform.transfer` for the
    arguments). Cheap checks come first (settings, the strategy's parameters, the metric
    names), then the data are read, the model is built and checked by the strategy, and the
    ``splits`` are prepared with the backbone's preprocessing, and the strategy checks the job
    (:meth:`~lepton_platform.strategies.Strategy.check_job`): nothing trains before every check
    passed. ``scratch=True`` builds the backbone's architecture with random weights (the
    from-scratch baseline)."""
    import torch

    from lepton_platform.adaptation._common import strip_labels
    from lepton_platform.artifacts import is_model_folder, source_head
    from lepton_platform.data import prepare
    from lepton_platform.strategies import TransferJob
    from lepton_platform.strategies.base import snapshot
    from lepton_platform.strategies.jobs import Engine

    config = resolve_train(train)
    monitor = resolve_monitor(config)
    strategy_obj = resolve_strategy(strategy, strategy_params)
    if isinstance(backbone, str):
        get_backbone(backbone)  # an unknown name fails before the data are read
    from lepton_platform.data import DataBundle

    if domain is None:
        if not isinstance(data, DataBundle):
            raise ConfigError("domain: which registered domain reads this data? (give its name)")
        domain_obj, bundle = None, data
    else:
        domain_obj = resolve_domain(domain, domain_options)
        bundle = resolve_data(domain_obj, data, split, on_bad_record)
    task_obj = create_task(task, label_names=bundle.label_names, **dict(task_options or {}))
    metric_objs = resolve_metrics(metrics, task_obj)

    torch.manual_seed(config.seed)
    if scratch:
        backbone_name, architecture = scratch_architecture(backbone, pretrained, backbone_options)
        torch.manual_seed(config.seed)  # the same initialisation whatever reading it took
        backbone_obj = create_backbone(backbone_name, pretrained=None, **architecture)
        recorded_weights: Any = None
    else:
        backbone_obj, backbone_name = build_backbone(
            backbone, pretrained, backbone_options, min_loaded=min_loaded
        )
        recorded_weights = pretrained
    model = build_model(backbone_obj, task_obj)
    strategy_obj.check(model, pretrained=has_weights(recorded_weights))

    preprocessor = backbone_obj.preprocessor()
    prepared = {
        name: prepare(bundle[name], preprocessor, desc=f"preprocess ({name})")
        for name in splits
        if bundle[name] is not None and len(bundle[name])
    }
    if "train" not in prepared:
        raise ConfigError("the training split is empty: nothing to train on")
    target = None
    if unlabelled_target is not None:
        if domain_obj is None and not _is_dataset(unlabelled_target):
            raise ConfigError("unlabelled_target sources need the domain that reads them")
        raw = unlabelled_data(domain_obj, unlabelled_target, on_bad_record)  # type: ignore[arg-type]
        target = prepare(
            strip_labels(raw, "transfer(unlabelled_target=...)"),
            preprocessor,
            desc="preprocess (unlabelled target)",
        )
    out = Path(output_dir) if output_dir is not None else None
    transfer_job = TransferJob(
        model=model,
        task=task_obj,
        preprocessor=preprocessor,
        train=prepared["train"],
        validation=prepared.get("validation"),
        config=config,
        output_dir=out / "training" if out else None,
        pretrained_state=snapshot(backbone_obj) if has_weights(recorded_weights) else None,
        source_model=(
            Path(recorded_weights).expanduser().absolute()
            if isinstance(recorded_weights, str | os.PathLike) and is_model_folder(recorded_weights)
            else None
        ),
        unlabelled_target=target,
        metrics=metric_objs,
        monitor=monitor,
        resume=resume,
        engine=Engine(callbacks),
    )
    if strategy_obj.needs_source_head:
        if transfer_job.source_model is None:
            transfer_job.source_head_note = (
                "the backbone's weights are not a Lepton model folder (a source model saved "
                "by Lepton), so there is no source head"
            )
        else:
            transfer_job.source_head, transfer_job.source_head_note = source_head(
                transfer_job.source_model, task_obj.config(), task_obj.label_names
            )
    strategy_obj.check_job(transfer_job)
    return Job(
        domain=domain_obj,
        bundle=bundle,
        task=task_obj,
        task_name=task,
        backbone=backbone_obj,
        backbone_name=backbone_name,
        pretrained=recorded_weights,
        model=model,
        strategy=strategy_obj,
        preprocessor=preprocessor,
        prepared=prepared,
        transfer=transfer_job,
        metrics=metric_objs,
        monitor=monitor,
        config=config,
        scratch=scratch,
    )
