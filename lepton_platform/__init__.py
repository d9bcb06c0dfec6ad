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

__all__ = [
    "ArtifactError",
    "BackboneSpec",
    "CommandSpec",
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
    "TrainingError",
    "UnknownNameError",
    "__version__",
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
    "register_plugin",
    "set_host",
    "unregister_plugin",
]
