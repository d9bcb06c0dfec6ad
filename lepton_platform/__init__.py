"""Lepton: plugin-based, multi-modal transfer learning.

The top level is light (no torch): hook markers, spec records, the registry and errors. The
engines live in sub-modules that import torch when you use them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lepton_platform._host import PluginHost, PluginInfo, get_host, set_host
from lepton_platform._version import __version__
from lepton_platform.errors import (
    ArtifactError,
    ConfigError,
    DataError,
    LeptonError,
    PluginError,
    TrainingError,
    UnknownNameError,
)
from lepton_platform.hookspecs import hookimpl
from lepton_platform.registry import (
    create_backbone,
    create_domain,
    create_metric,
    create_strategy,
    create_task,
    get_backbone,
    get_domain,
    get_metric,
    get_strategy,
    get_task,
    list_backbones,
    list_commands,
    list_domains,
    list_metrics,
    list_plugins,
    list_strategies,
    list_tasks,
    register_plugin,
    unregister_plugin,
)
from lepton_platform.specs import (
    BackboneSpec,
    CommandSpec,
    DomainSpec,
    MetricSpec,
    Provider,
    StrategySpec,
    TaskSpec,
)

if TYPE_CHECKING:  # the lazy names below, typed for type checkers and IDEs
    from lepton_platform.api.compare import Comparison as Comparison
    from lepton_platform.api.compare import compare as compare
    from lepton_platform.api.evaluate import evaluate as evaluate
    from lepton_platform.api.export import export as export
    from lepton_platform.api.job import build_job as build_job
    from lepton_platform.api.job import load_data as load_data
    from lepton_platform.api.matrix import cross_domain_matrix as cross_domain_matrix
    from lepton_platform.api.multidomain import sequential_transfer as sequential_transfer
    from lepton_platform.api.multidomain import train_multidomain as train_multidomain
    from lepton_platform.api.predictor import Predictor as Predictor
    from lepton_platform.api.predictor import load as load
    from lepton_platform.api.predictor import predict as predict
    from lepton_platform.api.predictor import save_model as save_model
    from lepton_platform.api.rank import rank as rank
    from lepton_platform.api.run import run as run
    from lepton_platform.api.run import run_comparison as run_comparison
    from lepton_platform.api.runs import RunFolder as RunFolder
    from lepton_platform.api.runs import list_runs as list_runs
    from lepton_platform.api.transfer import TransferResult as TransferResult
    from lepton_platform.api.transfer import transfer as transfer
    from lepton_platform.api.tuning.search import tune as tune
    from lepton_platform.engine.finetune import Trainer as Trainer
    from lepton_platform.settings import SplitConfig as SplitConfig
    from lepton_platform.settings import TrainConfig as TrainConfig

#: Heavy parts of the public API, imported on first use. The application layer lives in
#: ``lepton_platform.api``; no top-level name here is also a top-level module, so ``lp.transfer``
#: is the function whatever was imported before. The ``TYPE_CHECKING`` imports above name the same
#: objects (a test checks it).
_LAZY = {
    "transfer": ("lepton_platform.api.transfer", "transfer"),
    "TransferResult": ("lepton_platform.api.transfer", "TransferResult"),
    "compare": ("lepton_platform.api.compare", "compare"),
    "Comparison": ("lepton_platform.api.compare", "Comparison"),
    "evaluate": ("lepton_platform.api.evaluate", "evaluate"),
    "export": ("lepton_platform.api.export", "export"),
    "predict": ("lepton_platform.api.predictor", "predict"),
    "run": ("lepton_platform.api.run", "run"),
    "run_comparison": ("lepton_platform.api.run", "run_comparison"),
    "build_job": ("lepton_platform.api.job", "build_job"),
    "load": ("lepton_platform.api.predictor", "load"),
    "save_model": ("lepton_platform.api.predictor", "save_model"),
    "Predictor": ("lepton_platform.api.predictor", "Predictor"),
    "tune": ("lepton_platform.api.tuning.search", "tune"),
    "rank": ("lepton_platform.api.rank", "rank"),
    "cross_domain_matrix": ("lepton_platform.api.matrix", "cross_domain_matrix"),
    "train_multidomain": ("lepton_platform.api.multidomain", "train_multidomain"),
    "sequential_transfer": ("lepton_platform.api.multidomain", "sequential_transfer"),
    "RunFolder": ("lepton_platform.api.runs", "RunFolder"),
    "list_runs": ("lepton_platform.api.runs", "list_runs"),
    "TrainConfig": ("lepton_platform.settings", "TrainConfig"),
    "SplitConfig": ("lepton_platform.settings", "SplitConfig"),
    "Trainer": ("lepton_platform.engine.finetune", "Trainer"),
    "load_data": ("lepton_platform.api.job", "load_data"),
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lepton_platform' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "ArtifactError",
    "BackboneSpec",
    "CommandSpec",
    "Comparison",
    "ConfigError",
    "DataError",
    "DomainSpec",
    "LeptonError",
    "MetricSpec",
    "PluginError",
    "PluginHost",
    "PluginInfo",
    "Predictor",
    "Provider",
    "RunFolder",
    "SplitConfig",
    "StrategySpec",
    "TaskSpec",
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "TransferResult",
    "UnknownNameError",
    "__version__",
    "build_job",
    "compare",
    "create_backbone",
    "create_domain",
    "create_metric",
    "create_strategy",
    "create_task",
    "cross_domain_matrix",
    "evaluate",
    "export",
    "get_backbone",
    "get_domain",
    "get_host",
    "get_metric",
    "get_strategy",
    "get_task",
    "hookimpl",
    "list_backbones",
    "list_commands",
    "list_domains",
    "list_metrics",
    "list_plugins",
    "list_runs",
    "list_strategies",
    "list_tasks",
    "load",
    "load_data",
    "predict",
    "rank",
    "register_plugin",
    "run",
    "run_comparison",
    "save_model",
    "sequential_transfer",
    "set_host",
    "train_multidomain",
    "transfer",
    "tune",
    "unregister_plugin",
]
