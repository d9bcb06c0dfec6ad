"""Lepton: plugin-based, multi-modal transfer learning.

The top level is light (no torch): hook markers, spec records, the registry and errors. The
engines live in sub-modules that import torch when you use them.
"""

from __future__ import annotations

from lepton_platform._host import PluginHost, PluginInfo, get_host, set_host
from lepton_platform._version import __version__
from lepton_platform.errors import (
    ArtifactError,
    ConfigError,
    DataError,
    LeptonError,
    PluginError,
    SpecError,
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

#: Heavy parts of the public API, imported on first use (``lepton_platform.recipe`` ...).
_LAZY = {
    "transfer": ("lepton_platform.recipe", "transfer"),
    "TransferResult": ("lepton_platform.recipe", "TransferResult"),
    "compare": ("lepton_platform.comparison", "compare"),
    "Comparison": ("lepton_platform.comparison", "Comparison"),
    "load": ("lepton_platform.artifacts", "load"),
    "save_model": ("lepton_platform.artifacts", "save_model"),
    "TrainConfig": ("lepton_platform.engine.finetune", "TrainConfig"),
    "Trainer": ("lepton_platform.engine.finetune", "Trainer"),
    "load_data": ("lepton_platform.data", "load_data"),
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
    "Provider",
    "SpecError",
    "StrategySpec",
    "TaskSpec",
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "TransferResult",
    "UnknownNameError",
    "__version__",
    "compare",
    "create_backbone",
    "create_domain",
    "create_metric",
    "create_strategy",
    "create_task",
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
    "list_strategies",
    "list_tasks",
    "load",
    "load_data",
    "register_plugin",
    "save_model",
    "set_host",
    "transfer",
    "unregister_plugin",
]
