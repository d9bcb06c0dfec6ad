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


def signature_options(function: Callable[..., Any]) -> list[str] | None:
    """The keyword arguments ``function`` accepts, or ``None`` when it takes ``**kwargs`` (or
    its signature cannot be read)."""
    import inspect

    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return [
        n
        for n, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]


def _doc(text: str) -> dict[str, str]:
    """A field's one-line meaning, as the generated table of spec fields in docs/plugins.md
    shows it (:func:`spec_fields`)."""
    return {"doc": text}


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, kw_only=True)
class Spec:
    """Fields every spec has. Subclasses add what their kind needs."""

    kind: ClassVar[str] = "spec"

    name: str = field(
        metadata=_doc(
            "unique per kind across all plugins: 1-64 lowercase letters, digits, `.`, `_`, `-`, "
            "starting with a letter or digit"
        )
    )
    description: str = field(
        default="",
        metadata=_doc("one line; `lepton plugins` shows it (the conformance kit requires one)"),
    )
    metadata: Mapping[str, Any] = field(
        default_factory=dict,
        metadata=_doc('free key/value pairs to filter on: `lp.list_backbones(size="small")`'),
    )
    provider: Provider | None = field(
        default=None,
        compare=False,
        metadata=_doc("filled in by the host (distribution, version, plugin name); leave it unset"),
    )

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
    """A spec built by calling ``factory(**options)``.

    ``options`` declares the options the factory takes (name -> one-line meaning): the registry
    refuses any other by name with the closest one suggested, whatever the factory's signature
    (a ``**options`` factory included), and ``lepton plugins --json`` and the docs list them.
    Without a declaration the registry reads the factory's signature (and cannot check a
    ``**options`` one: the conformance kit fails such a spec)."""

    factory: Callable[..., Any] = field(
        metadata=_doc("builds the object; heavy imports happen inside it, never at module level")
    )
    options: Mapping[str, str] = field(
        default_factory=dict,
        metadata=_doc(
            "the options the factory takes (name -> one-line meaning); `create_*` refuses any "
            "other by name, whatever the factory's signature"
        ),
    )

    #: Arguments every factory of this kind takes, besides its options.
    implicit: ClassVar[tuple[str, ...]] = ()
    #: What the factory returns.
    product: ClassVar[str] = "object"

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.options, Mapping):
            object.__setattr__(self, "options", _frozen(self.options))

    def declared_options(self) -> Mapping[str, str]:
        """The options this spec declares (empty: none declared)."""
        return self.options

    def accepted_options(self) -> list[str] | None:
        """The option names the factory accepts: the declared ones, else those of its
        signature; ``None`` when neither says (a ``**options`` factory, undeclared)."""
        declared = self.declared_options()
        if declared:
            return [*self.implicit, *declared]
        return signature_options(self.factory)

    def problems(self) -> list[str]:
        found = super().problems()
        if not callable(self.factory):
            found.append(
                f"{self.kind} {self.name!r}: factory must be callable, got "
                f"{type(self.factory).__name__}"
            )
        if not isinstance(self.options, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.options.items()
        ):
            found.append(f"{self.kind} {self.name!r}: options must map names to descriptions")
        return found

    def create(self, **options: Any) -> Any:
        """Call the factory (this is where heavy imports happen)."""
        return self.factory(**options)

    def _extra_summary(self) -> dict[str, Any]:
        return {"options": dict(self.options)} if self.options else {}


@dataclass(frozen=True, kw_only=True)
class DomainSpec(_FactorySpec):
    """A data domain: how to read a modality's sources into the standard dataset schema.

    ``factory(**options)`` returns a :class:`lepton_platform.domains.Domain`.
    ``modality`` groups domains that share inputs (``medical-image`` reads images too).
    """

    kind: ClassVar[str] = "domain"
    product: ClassVar[str] = "`lepton_platform.domains.Domain`"
    modality: str = field(
        default="",
        metadata=_doc(
            "groups domains that read the same inputs (`medical-image` reads images too)"
        ),
    )

    def _extra_summary(self) -> dict[str, Any]:
        out = super()._extra_summary()
        if self.modality:
            out["modality"] = self.modality
        return out


@dataclass(frozen=True, kw_only=True)
class BackboneSpec(_FactorySpec):
    """A backbone: ``factory(pretrained=None, **options)`` returns a
    :class:`lepton_platform.models.Backbone` mapping a batch to pooled features.

    ``domain`` is the domain whose inputs it reads. ``tiny_options`` are the options that build a
    tiny, fast version on CPU; the conformance suite uses them.
    """

    kind: ClassVar[str] = "backbone"
    product: ClassVar[str] = "`lepton_platform.models.Backbone`"
    implicit: ClassVar[tuple[str, ...]] = ("pretrained",)
    domain: str = field(metadata=_doc("the registered domain whose inputs it reads"))
    family: str = field(
        default="", metadata=_doc("architecture family (`resnet`, `bert`), to filter on")
    )
    tiny_options: Mapping[str, Any] = field(
        default_factory=dict,
        metadata=_doc(
            "options that build a tiny, fast version on CPU (the conformance kit uses them)"
        ),
    )
    name_option: str | None = field(
        default=None,
        metadata=_doc(
            "the option that a name `<this name>/<value>` sets (`timm/convnext_tiny` builds "
            "`timm` with `model: convnext_tiny`); `None`: no such names"
        ),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.tiny_options, Mapping):
            object.__setattr__(self, "tiny_options", _frozen(self.tiny_options))

    def problems(self) -> list[str]:
        found = super().problems()
        if not isinstance(self.domain, str) or not self.domain:
            found.append(f"backbone {self.name!r}: domain must be a non-empty string")
        if self.name_option is not None and not (
            isinstance(self.name_option, str) and self.name_option in (self.options or {})
        ):
            found.append(
                f"backbone {self.name!r}: name_option {self.name_option!r} must be one of its "
                "options"
            )
        if not isinstance(self.tiny_options, Mapping):
            found.append(f"backbone {self.name!r}: tiny_options must be a mapping")
        return found

    def _extra_summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"domain": self.domain, **super()._extra_summary()}
        if self.family:
            out["family"] = self.family
        return out


@dataclass(frozen=True, kw_only=True)
class TaskSpec(_FactorySpec):
    """A task: ``factory(label_names=[...], **options)`` returns a
    :class:`lepton_platform.tasks.Task` (head, loss, predictions, default metrics)."""

    kind: ClassVar[str] = "task"
    product: ClassVar[str] = "`lepton_platform.tasks.Task`"
    implicit: ClassVar[tuple[str, ...]] = ("label_names",)


@dataclass(frozen=True, kw_only=True)
class StrategySpec(_FactorySpec):
    """A transfer strategy: ``factory(**params)`` returns a
    :class:`lepton_platform.strategies.Strategy`; it must reject bad parameters when built.

    ``parameters`` maps each parameter name to a one-line description (shown in docs and CLI).
    """

    kind: ClassVar[str] = "strategy"
    product: ClassVar[str] = "`lepton_platform.strategies.Strategy`"
    parameters: Mapping[str, str] = field(
        default_factory=dict,
        metadata=_doc("the strategy's parameters (name -> one-line meaning); they are its options"),
    )
    paper: str = field(
        default="", metadata=_doc("where the method comes from (`Kumar et al. 2022`)")
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.parameters, Mapping):
            object.__setattr__(self, "parameters", _frozen(self.parameters))

    def declared_options(self) -> Mapping[str, str]:
        """A strategy's options are its ``parameters``."""
        return self.parameters or self.options

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
    product: ClassVar[str] = "an object with `compute(predictions=..., references=...) -> dict`"
    higher_is_better: bool = field(
        default=True,
        metadata=_doc(
            "the direction: every choice (best epoch, `tune`, WiSE-FT, `compare`, the guard, "
            "`runs`) reads it"
        ),
    )
    needs_scores: bool = field(
        default=False,
        metadata=_doc("`compute` reads class-score rows, not predicted labels (AUROC)"),
    )
    headline: str = field(
        default="",
        metadata=_doc(
            "the key of `compute()`'s result holding the metric's number (default: the name with "
            "`-` as `_`)"
        ),
    )
    multi_label: bool = field(
        default=True, metadata=_doc("it accepts the 0/1 label rows of multi-label tasks")
    )
    num_labels: bool = field(
        default=False, metadata=_doc("`compute` takes `num_labels=` (the size of the label space)")
    )
    binary_only: bool = field(
        default=False, metadata=_doc("defined for two-class tasks only (sensitivity)")
    )

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
            **super()._extra_summary(),
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
    run: Callable[[argparse.Namespace], int | None] = field(
        metadata=_doc("does the work and returns the exit code (`None` means 0)")
    )
    configure: Callable[[argparse.ArgumentParser], None] | None = field(
        default=None, metadata=_doc("adds the command's arguments to its `argparse` sub-parser")
    )

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


def spec_fields(record: type[Spec]) -> list[tuple[str, str, str, str]]:
    """``(field, type, default, meaning)`` for the fields ``record`` adds to its base class."""
    import dataclasses

    base = record.__mro__[1]
    inherited = (
        {f.name for f in dataclasses.fields(base)} if dataclasses.is_dataclass(base) else set()
    )
    rows = []
    for f in dataclasses.fields(record):
        if f.name in inherited:
            continue
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "required"
        rows.append((f.name, str(f.type), default, f.metadata.get("doc", "")))
    return rows


def spec_reference() -> str:
    """The table of spec fields in docs/plugins.md, generated from the records themselves
    (``python scripts/gen_docs.py`` writes it; a test checks it)."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        "| record | field | type | default | meaning |",
        "|--------|-------|------|---------|---------|",
    ]
    records: list[tuple[str, type[Spec]]] = [
        ("every spec", Spec),
        ("every spec but `CommandSpec`", _FactorySpec),
    ]
    records += [(f"`{t.__name__}`", t) for t in SPEC_TYPES.values()]
    for label, record in records:
        fields = spec_fields(record)
        if issubclass(record, _FactorySpec) and record is not _FactorySpec:
            args = ", ".join([*(f"{a}=..." for a in record.implicit), "**options"])
            fields.insert(0, ("factory", f"`factory({args})`", "", f"returns {record.product}"))
        if not fields:
            continue
        for name, kind, default, meaning in fields:
            if not kind.startswith("`"):
                kind = f"`{kind}`"
            default = f"`{default}`" if default and default != "required" else default
            lines.append(
                f"| {label} | `{name}` | {cell(kind)} | {cell(default)} | {cell(meaning)} |"
            )
            label = ""
    return "\n".join(lines) + "\n"
