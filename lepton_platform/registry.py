"""The registry: ``list_*``, ``get_*`` and ``create_*`` for every kind of spec.

Everything here reads the process-wide plugin host, loading plugins on first use::

    >>> import lepton_platform as lp
    >>> [s.name for s in lp.list_backbones("resnet*", domain="image")]   # doctest: +SKIP
    ['resnet101', 'resnet152', 'resnet18', 'resnet34', 'resnet50']
    >>> model = lp.create_backbone("resnet18", pretrained=None)          # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from lepton_platform._host import PluginInfo, get_host
from lepton_platform.errors import ConfigError, did_you_mean
from lepton_platform.specs import (
    BackboneSpec,
    CommandSpec,
    DomainSpec,
    MetricSpec,
    Spec,
    StrategySpec,
    TaskSpec,
)

if TYPE_CHECKING:
    from lepton_platform.domains import Domain
    from lepton_platform.models import Backbone
    from lepton_platform.strategies import Strategy
    from lepton_platform.tasks import Task

S = TypeVar("S", bound=Spec)


def _list(kind: str, cls: type[S], pattern: str | None, filters: dict[str, Any]) -> list[S]:
    return cast(list[S], get_host().list(kind, pattern, **filters))


def _get(kind: str, cls: type[S], name: str) -> S:
    return cast(S, get_host().get(kind, name))


def check_options(what: str, factory: Callable[..., Any], options: dict[str, Any]) -> None:
    """Refuse options the factory does not accept, naming them and what it does accept."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [
        n
        for n, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    for key in options:
        if key not in accepted:
            raise ConfigError(
                f"{what} has no option {key!r}{did_you_mean(key, accepted)} "
                f"(accepted: {', '.join(accepted) or 'none'})"
            )


def _create(kind: str, spec: Spec, options: dict[str, Any]) -> Any:
    factory = cast(Callable[..., Any], getattr(spec, "factory"))  # noqa: B009
    check_options(f"{kind} {spec.name!r} (from {spec.provider})", factory, options)
    return factory(**options)


# -- domains ---------------------------------------------------------------------------------


def list_domains(pattern: str | None = None, **filters: Any) -> list[DomainSpec]:
    """Registered domains whose name matches the glob and whose fields match ``filters``."""
    return _list("domain", DomainSpec, pattern, filters)


def get_domain(name: str) -> DomainSpec:
    """The domain spec called ``name``; an unknown name suggests the closest ones."""
    return _get("domain", DomainSpec, name)


def create_domain(name: str, **options: Any) -> Domain:
    """Build the domain called ``name`` (its reader of sources)."""
    return cast("Domain", _create("domain", get_domain(name), options))


# -- backbones -------------------------------------------------------------------------------


def list_backbones(pattern: str | None = None, **filters: Any) -> list[BackboneSpec]:
    """Registered backbones, e.g. ``list_backbones("resnet*", domain="image")``."""
    return _list("backbone", BackboneSpec, pattern, filters)


def get_backbone(name: str) -> BackboneSpec:
    """The backbone spec called ``name``."""
    return _get("backbone", BackboneSpec, name)


def create_backbone(name: str, **options: Any) -> Backbone:
    """Build a backbone, e.g. ``create_backbone("resnet18", pretrained=None)``."""
    return cast("Backbone", _create("backbone", get_backbone(name), options))


# -- tasks -----------------------------------------------------------------------------------


def list_tasks(pattern: str | None = None, **filters: Any) -> list[TaskSpec]:
    """Registered tasks."""
    return _list("task", TaskSpec, pattern, filters)


def get_task(name: str) -> TaskSpec:
    """The task spec called ``name``."""
    return _get("task", TaskSpec, name)


def create_task(name: str, **options: Any) -> Task:
    """Build a task, e.g. ``create_task("classification", label_names=["cat", "dog"])``."""
    return cast("Task", _create("task", get_task(name), options))


# -- strategies ------------------------------------------------------------------------------


def list_strategies(pattern: str | None = None, **filters: Any) -> list[StrategySpec]:
    """Registered transfer strategies."""
    return _list("strategy", StrategySpec, pattern, filters)


def get_strategy(name: str) -> StrategySpec:
    """The strategy spec called ``name``."""
    return _get("strategy", StrategySpec, name)


def create_strategy(name: str, **params: Any) -> Strategy:
    """Build a strategy with its parameters; bad parameters raise before any training."""
    return cast("Strategy", _create("strategy", get_strategy(name), params))


# -- metrics ---------------------------------------------------------------------------------


def list_metrics(pattern: str | None = None, **filters: Any) -> list[MetricSpec]:
    """Registered metrics."""
    return _list("metric", MetricSpec, pattern, filters)


def get_metric(name: str) -> MetricSpec:
    """The metric spec called ``name``."""
    return _get("metric", MetricSpec, name)


def create_metric(name: str, **options: Any) -> Any:
    """Load a metric module (an ``evaluate`` module or one shaped like it)."""
    return _create("metric", get_metric(name), options)


# -- commands and plugins --------------------------------------------------------------------


def list_commands(pattern: str | None = None, **filters: Any) -> list[CommandSpec]:
    """Registered ``lepton`` sub-commands."""
    return _list("command", CommandSpec, pattern, filters)


def list_plugins() -> list[PluginInfo]:
    """Every plugin the host tried to load, with what it provides and its errors."""
    return get_host().plugins


def register_plugin(
    plugin: object,
    name: str | None = None,
    *,
    distribution: str | None = None,
    version: str | None = None,
) -> PluginInfo:
    """Register a plugin object in this process (Python API users, notebooks, tests)."""
    return get_host().register(plugin, name, distribution=distribution, version=version)


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin`."""
    get_host().unregister(name)
