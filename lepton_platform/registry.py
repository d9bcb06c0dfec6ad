"""The registry: ``list_*``, ``get_*`` and ``create_*`` for every kind of spec.

Everything here reads the process-wide plugin host, loading plugins on first use::

    >>> import lepton_platform as lp
    >>> [s.name for s in lp.list_backbones("resnet*", domain="image")]   # doctest: +SKIP
    ['resnet101', 'resnet152', 'resnet18', 'resnet34', 'resnet50']
    >>> model = lp.create_backbone("resnet18", pretrained=None)          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from lepton_platform._host import PluginInfo, get_host
from lepton_platform.errors import ConfigError, LeptonError, PluginError, did_you_mean
from lepton_platform.specs import (
    BackboneSpec,
    CommandSpec,
    DomainSpec,
    MetricSpec,
    Spec,
    StrategySpec,
    TaskSpec,
    _FactorySpec,
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


def check_options(what: str, accepted: Sequence[str] | None, options: Mapping[str, Any]) -> None:
    """Refuse options not in ``accepted`` (``None``: nothing to check against), naming them,
    the closest accepted name and every accepted one."""
    if accepted is None:
        return
    for key in options:
        if key not in accepted:
            raise ConfigError(
                f"{what} has no option {key!r}{did_you_mean(key, accepted)} "
                f"(accepted: {', '.join(accepted) or 'none'})"
            )


def _create(kind: str, spec: Spec, options: dict[str, Any]) -> Any:
    assert isinstance(spec, _FactorySpec)
    what = f"{kind} {spec.name!r} (from {spec.provider})"
    check_options(what, spec.accepted_options(), options)
    try:
        return spec.factory(**options)
    except LeptonError:
        raise
    except Exception as exc:  # a plugin's factory failed: say whose
        raise PluginError(
            f"{what} failed while being built: {type(exc).__name__}: {exc}"
            f"{_where(exc)}; the error is in that plugin (update it, or report it to its authors)"
        ) from exc


def _where(exc: BaseException) -> str:
    """`` (at file.py:line)``: the innermost frame of the traceback."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" (at {last.filename}:{last.lineno})"


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
    """The backbone spec called ``name``; ``<spec>/<value>`` names the spec of a backbone whose
    ``name_option`` the value sets (``timm/convnext_tiny``: the ``timm`` spec)."""
    return _named_backbone(name)[0]


def _named_backbone(name: str) -> tuple[BackboneSpec, dict[str, Any]]:
    """The spec a backbone name resolves to, and the option the name sets."""
    if "/" not in name:
        return _get("backbone", BackboneSpec, name), {}
    prefix, value = name.split("/", 1)
    spec = _get("backbone", BackboneSpec, prefix)
    if spec.name_option is None:
        raise ConfigError(f"backbone {name!r}: {prefix!r} does not take a name after '/'")
    if not value:
        raise ConfigError(
            f"backbone {name!r}: give the {spec.name_option} after '/' "
            f"({prefix}/<{spec.name_option}>)"
        )
    return spec, {spec.name_option: value}


def create_backbone(name: str, **options: Any) -> Backbone:
    """Build a backbone, e.g. ``create_backbone("resnet18", pretrained=None)`` or
    ``create_backbone("timm/convnext_tiny")``; it records the name it was built under
    (``registered_name``)."""
    spec, named = _named_backbone(name)
    for key, value in named.items():
        if key in options and options[key] != value:
            raise ConfigError(
                f"backbone {name!r} sets {key}={value!r}, but the options give "
                f"{key}={options[key]!r}; give one of them"
            )
    backbone = cast("Backbone", _create("backbone", spec, {**options, **named}))
    with contextlib.suppress(AttributeError):
        backbone.registered_name = name
    return backbone


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


def plugin_of_exception(exc: BaseException) -> tuple[PluginInfo, str] | None:
    """The plugin whose code raised ``exc`` (the innermost frame in a plugin's package) and
    ``file:line`` of that frame; ``None`` when no plugin's code is in the traceback."""
    import traceback

    host = get_host()
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        info = host.plugin_of_file(frame.filename)
        if info is not None:
            return info, f"{frame.filename}:{frame.lineno}"
    return None


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
