"""The frozen spec records that hooks return.

A spec is metadata plus a factory. The metadata is cheap to import and list; the factory imports
heavy libraries (torch, transformers) only when it is called, so ``lepton plugins`` stays fast.
The host fills in ``provider`` (which distribution and version supplied the spec); plugins leave it
unset.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import argparse

__all__ = [
    "KINDS",
    "BackboneSpec",
    "CommandSpec",
    "DomainSpec",
    "MetricSpec",
    "Provider",
    "Spec",
    "StrategySpec",
    "TaskSpec",
]

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

#: The kinds of spec, in the order ``lepton plugins`` shows them.
KINDS = ("domain", "backbone", "task", "strategy", "metric", "command")


@dataclass(frozen=True)
class Provider:
    """Where a spec came from: the distribution, its version and the plugin name it registered."""

    distribution: str
    version: str | None
    plugin: str

    def __str__(self) -> str:
        return f"{self.distribution} {self.version}" if self.version else self.distribution


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, kw_only=True)
class Spec:
    """Fields every spec has. Subclasses add what their kind needs."""

    kind: ClassVar[str] = "spec"

    name: str
    description: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    provider: Provider | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.metadata, Mapping):
            object.__setattr__(self, "metadata", _frozen(self.metadata))

    def problems(self) -> list[str]:
        """What is wrong with this record (empty when it is valid). The host calls this."""
        found: list[str] = []
        if not isinstance(self.name, str) or not self.name:
            found.append(f"{self.kind} spec has an empty or non-string name ({self.name!r})")
        elif not NAME_PATTERN.match(self.name):
            found.append(
                f"{self.kind} name {self.name!r} is malformed: use 1-64 lowercase letters, digits, "
                "'.', '_' or '-', starting with a letter or digit"
            )
        if not isinstance(self.description, str):
            found.append(f"{self.kind} {self.name!r}: description must be a string")
        if not isinstance(self.metadata, Mapping):
            found.append(f"{self.kind} {self.name!r}: metadata must be a mapping")
        return found

    def matches(self, pattern: str | None = None, **filters: Any) -> bool:
        """True when the name matches the glob and every filter equals a field or metadata value.

        A filter on a tuple field (``tags``, ``domains``) matches when the value is in the tuple.
        """
        if pattern is not None and not fnmatch.fnmatchcase(self.name, pattern):
            return False
        for key, wanted in filters.items():
            have = getattr(self, key) if hasattr(self, key) else self.metadata.get(key)
            if isinstance(have, tuple | list | frozenset | set):
                if wanted not in have:
                    return False
            elif have != wanted:
                return False
        return True

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (no factory), as ``lepton plugins --json`` prints it."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind}
        if self.description:
            out["description"] = self.description
        for key, value in self._extra_summary().items():
            out[key] = value
        if self.metadata:
            out["metadata"] = {k: _jsonable(v) for k, v in self.metadata.items()}
        return out

    def _extra_summary(self) -> dict[str, Any]:
        return {}


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return repr(value)


@dataclass(frozen=True, kw_only=True)
class _FactorySpec(Spec):
    factory: Callable[..., Any]

    def problems(self) -> list[str]:
        found = super().problems()
        if not callable(self.factory):
            found.append(
                f"{self.kind} {self.name!r}: factory must be callable, got "
                f"{type(self.factory).__name__}"
            )
        return found

    def create(self, **options: Any) -> Any:
        """Call the factory (this is where heavy imports happen)."""
        return self.factory(**options)


@dataclass(frozen=True, kw_only=True)
class DomainSpec(_FactorySpec):
    """A data domain: how to read a modality's sources into the standard dataset schema.

    ``factory(**options)`` returns a :class:`lepton_platform.domains.Domain`.
    ``modality`` groups domains that share inputs (``medical-image`` reads images too).
    """

    kind: ClassVar[str] = "domain"
    modality: str = ""

    def _extra_summary(self) -> dict[str, Any]:
        return {"modality": self.modality} if self.modality else {}


@dataclass(frozen=True, kw_only=True)
class BackboneSpec(_FactorySpec):
    """A backbone: ``factory(pretrained=None, **options)`` returns a
    :class:`lepton_platform.models.Backbone` mapping a batch to pooled features.

    ``domain`` is the domain whose inputs it reads. ``tiny_options`` are the options that build a
    tiny, fast version on CPU; the conformance suite uses them.
    """

    kind: ClassVar[str] = "backbone"
    domain: str
    family: str = ""
    tiny_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.tiny_options, Mapping):
            object.__setattr__(self, "tiny_options", _frozen(self.tiny_options))

    def problems(self) -> list[str]:
        found = super().problems()
        if not isinstance(self.domain, str) or not self.domain:
            found.append(f"backbone {self.name!r}: domain must be a non-empty string")
        if not isinstance(self.tiny_options, Mapping):
            found.append(f"backbone {self.name!r}: tiny_options must be a mapping")
        return found

    def _extra_summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"domain": self.domain}
        if self.family:
            out["family"] = self.family
        return out


@dataclass(frozen=True, kw_only=True)
class TaskSpec(_FactorySpec):
    """A task: ``factory(label_names=[...], **options)`` returns a
    :class:`lepton_platform.tasks.Task` (head, loss, predictions, default metrics)."""

    kind: ClassVar[str] = "task"


@dataclass(frozen=True, kw_only=True)
class StrategySpec(_FactorySpec):
    """A transfer strategy: ``factory(**params)`` returns a
    :class:`lepton_platform.strategies.Strategy`; it must reject bad parameters when built.

    ``parameters`` maps each parameter name to a one-line description (shown in docs and CLI).
    """

    kind: ClassVar[str] = "strategy"
    parameters: Mapping[str, str] = field(default_factory=dict)
    paper: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.parameters, Mapping):
            object.__setattr__(self, "parameters", _frozen(self.parameters))

    def _extra_summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.parameters:
            out["parameters"] = dict(self.parameters)
        if self.paper:
            out["paper"] = self.paper
        return out


@dataclass(frozen=True, kw_only=True)
class MetricSpec(_FactorySpec):
    """A metric: ``factory()`` returns an object with
    ``compute(predictions=..., references=..., **kwargs) -> dict`` (a Hugging Face
    ``evaluate`` module or anything shaped like one).

    The engines decide from these typed fields, never from the metric's name:

    - ``higher_is_better``: the direction (early stopping, best model, ``tune``, WiSE-FT's
      alpha, ``compare``'s best row and the negative-transfer guard all read it);
    - ``headline``: the key of ``compute()``'s result that holds the metric's single number
      (default: the name with ``-`` as ``_``); the result key everywhere is this one;
    - ``needs_scores``: ``compute`` reads class scores (AUROC), not predicted labels;
    - ``multi_label``: it accepts 0/1 label rows of multi-label tasks;
    - ``num_labels``: ``compute`` takes ``num_labels=`` (the size of the label space);
    - ``binary_only``: it is defined for two-class tasks only (sensitivity, specificity).
    """

    kind: ClassVar[str] = "metric"
    higher_is_better: bool = True
    needs_scores: bool = False
    headline: str = ""
    multi_label: bool = True
    num_labels: bool = False
    binary_only: bool = False

    @property
    def key(self) -> str:
        """The result key of the headline number (``balanced-accuracy`` -> ``balanced_accuracy``
        unless ``headline`` says otherwise)."""
        return self.headline or self.name.replace("-", "_")

    def problems(self) -> list[str]:
        found = super().problems()
        for flag in (
            "higher_is_better",
            "needs_scores",
            "multi_label",
            "num_labels",
            "binary_only",
        ):
            if not isinstance(getattr(self, flag), bool):
                found.append(f"metric {self.name!r}: {flag} must be True or False")
        if not isinstance(self.headline, str):
            found.append(f"metric {self.name!r}: headline must be a string (a result key)")
        return found

    def _extra_summary(self) -> dict[str, Any]:
        return {
            "higher_is_better": self.higher_is_better,
            "needs_scores": self.needs_scores,
            "headline": self.key,
            "multi_label": self.multi_label,
            "binary_only": self.binary_only,
        }


@dataclass(frozen=True, kw_only=True)
class CommandSpec(Spec):
    """A ``lepton`` sub-command. ``configure(parser)`` adds its arguments;
    ``run(args)`` does the work and returns the exit code (``None`` means 0)."""

    kind: ClassVar[str] = "command"
    run: Callable[[argparse.Namespace], int | None]
    configure: Callable[[argparse.ArgumentParser], None] | None = None

    def problems(self) -> list[str]:
        found = super().problems()
        if not callable(self.run):
            found.append(f"command {self.name!r}: run must be callable")
        if self.configure is not None and not callable(self.configure):
            found.append(f"command {self.name!r}: configure must be callable or None")
        return found


SPEC_TYPES: dict[str, type[Spec]] = {
    "domain": DomainSpec,
    "backbone": BackboneSpec,
    "task": TaskSpec,
    "strategy": StrategySpec,
    "metric": MetricSpec,
    "command": CommandSpec,
}
