"""The run configuration: one YAML file that says everything :func:`lepton_platform.transfer`
(and :func:`lepton_platform.compare`) can be told, validated before anything heavy happens.

    >>> from lepton_platform.api.config import load_config                # doctest: +SKIP
    >>> config = load_config("digits.yaml", overrides=["train.lr=0.01"])  # doctest: +SKIP
    >>> result = lepton_platform.transfer(**config.to_transfer_kwargs())  # doctest: +SKIP

Parsing a config imports no torch: the ``train`` and ``data.split`` sections are the schemas of
:class:`~lepton_platform.settings.TrainConfig` and :class:`~lepton_platform.settings.SplitConfig`
themselves (every range and type check runs when the config is read, exactly as when the
Python API builds them), and the registered names (domain, backbone, task, strategy, metrics)
are checked against the plugin registry, which holds metadata only. Every error names the key,
the value and what is allowed.

Relative data paths are read from the folder of the config file; the run folder
(``output.root``) is relative to the current directory.
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lepton_platform.errors import ConfigError, LeptonError, closest, did_you_mean
from lepton_platform.settings import SplitConfig, TrainConfig

__all__ = [
    "BackboneSection",
    "CompareSection",
    "DataSection",
    "DataSource",
    "DomainSection",
    "EvaluationSection",
    "OutputSection",
    "RunConfig",
    "SearchParam",
    "SearchSection",
    "StrategySection",
    "TaskSection",
    "apply_overrides",
    "config_differences",
    "load_config",
    "parse_config",
]

_UNSET: Any = object()

# ----------------------------------------------------------------------------- base model


class UnknownKeyError(ValueError):
    """An unknown key in a section; the formatter turns it into ``section.key: ...``."""

    def __init__(self, key: str, allowed: Sequence[str]) -> None:
        self.key = key
        self.allowed = list(allowed)
        super().__init__(f"unknown key {key!r}")

    def describe(self) -> str:
        hint = _closest_hint(self.key, self.allowed)
        return f"unknown key{hint} (allowed: {', '.join(self.allowed)})"


class Section(BaseModel):
    """A config section: unknown keys are refused with the closest allowed one suggested."""

    model_config = ConfigDict(extra="forbid", validate_default=False)

    @classmethod
    def _coerce(cls, data: Any) -> Any:
        """Turn a shorthand (a plain string) into the section's mapping."""
        return data

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        data = cls._coerce(data)
        if isinstance(data, Mapping):
            allowed = list(cls.model_fields)
            for key in data:
                if key not in allowed:
                    raise UnknownKeyError(str(key), allowed)
        return data


class NamedSection(Section):
    """A section naming a registered thing: ``strategy: lp-ft`` is short for
    ``strategy: {name: lp-ft}``."""

    @classmethod
    def _coerce(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data


# ----------------------------------------------------------------------------- sections


class DomainSection(NamedSection):
    """The target domain: a registered name and the options of its reader."""

    name: str = Field(description="registered domain (`lepton plugins` lists them)")
    options: dict[str, Any] = Field(
        default_factory=dict, description="options of the domain's reader"
    )


class DataSource(BaseModel):
    """One data source. ``path`` is checked to exist; the other keys go to the domain's reader
    (``format``, ``label_column``, ...) and the data layer (``domain``, ``split``)."""

    model_config = ConfigDict(extra="allow")

    path: str | None = Field(
        default=None, description="file or folder, relative to the config file's folder"
    )

    @model_validator(mode="before")
    @classmethod
    def _path_only(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data

    @field_validator("path")
    @classmethod
    def _exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        base = Path((info.context or {}).get("base_dir", "."))
        resolved = (base / Path(value).expanduser()).resolve()
        if not resolved.exists():
            raise ValueError(f"{value!r} does not exist (looked for {resolved})")
        return str(resolved)


if TYPE_CHECKING:  # built from the settings' own fields
    SplitSection = Section
    TrainSection = Section
else:
    SplitSection = SplitConfig.schema_model(Section)
    TrainSection = TrainConfig.schema_model(Section)


class DataSection(Section):
    """Where the examples come from and how they are split (a path or a list of sources is
    short for ``sources``)."""

    sources: list[DataSource] = Field(
        min_length=1, description="sources, each a path or a mapping with `path` and options"
    )
    split: SplitSection = Field(
        default_factory=SplitSection, description="split settings for data without splits"
    )
    on_bad_record: Literal["error", "skip"] = Field(
        default="error", description="stop on a bad record, or skip it and list it in the report"
    )
    unlabelled_target: list[DataSource] = Field(
        default_factory=list,
        description="unlabelled target-domain sources for adaptation strategies (written like "
        "`sources`; labels in them are never read)",
    )

    @field_validator("unlabelled_target", mode="before")
    @classmethod
    def _target_shorthand(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | Mapping) else value

    @classmethod
    def _coerce(cls, data: Any) -> Any:
        if isinstance(data, str | list):
            return {"sources": data if isinstance(data, list) else [data]}
        return data


class BackboneSection(NamedSection):
    """The backbone and its weights."""

    name: str = Field(description="registered backbone")
    pretrained: str | int | float | bool | None = Field(
        default=None,
        description="weights: a name the backbone knows, a local path, or null (random init)",
    )
    options: dict[str, Any] = Field(default_factory=dict, description="backbone options")
    min_loaded: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="share of the backbone's tensors the pretrained weights must fill (0: "
        "partial loading allowed)",
    )
    scratch: bool = Field(
        default=False,
        description="true: the architecture of `pretrained` (its config, manifest or name) "
        "with random weights, none loaded (the from-scratch baseline)",
    )

    @field_validator("pretrained")
    @classmethod
    def _local_weights(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and (value.startswith((".", "~")) or os.sep in value):
            base = Path((info.context or {}).get("base_dir", "."))
            resolved = (base / Path(value).expanduser()).resolve()
            if resolved.exists():
                return str(resolved)
        return value


class TaskSection(NamedSection):
    """The task on the target data."""

    name: str = Field(default="classification", description="registered task")
    options: dict[str, Any] = Field(default_factory=dict, description="task options")


class StrategySection(NamedSection):
    """How to transfer."""

    name: str = Field(default="finetune", description="registered transfer strategy")
    params: dict[str, Any] = Field(default_factory=dict, description="the strategy's parameters")
    label: str | None = Field(
        default=None,
        description="the row's name in `lepton compare` (default: the name with its params)",
    )


class EvaluationSection(Section):
    """What is measured on the validation and test splits."""

    metrics: list[str] | None = Field(
        default=None, description="registered metrics (default: the task's own)"
    )
    bootstrap: int = Field(
        default=1000, ge=0, description="bootstrap resamples for the test interval (0: none)"
    )


class OutputSection(Section):
    """Where the run folder goes: ``<root>/<name>`` (``lepton compare``: ``<root>/<name>``
    when the name is given, else ``<root>/<config file name>-compare``)."""

    root: str = Field(default="runs", description="folder of run folders (relative to the cwd)")
    name: str | None = Field(
        default=None, description="run folder name (default: the config file's name)"
    )
    _named_after_file: bool = PrivateAttr(default=False)

    @property
    def named_after_file(self) -> bool:
        """Whether ``name`` is the config file's name (not one the config gave)."""
        return self._named_after_file

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str | None) -> str | None:
        if value is not None and (
            not value or value in (".", "..") or "/" in value or "\\" in value
        ):
            raise ValueError(f"{value!r} must be a plain folder name (no '/', not '..')")
        return value


class CompareSection(Section):
    """``lepton compare``: strategies side by side with baselines (the CLI flags win)."""

    strategies: list[StrategySection] = Field(
        default_factory=list, description="strategies to compare (names or name + params)"
    )
    seeds: list[int] = Field(default=[0, 1, 2], min_length=1, description="seeds of every row")
    baselines: bool | list[Literal["scratch", "source-only"]] = Field(
        default=True,
        description="true: scratch, and source-only when source_model is given; false: "
        "neither; or a list naming the ones wanted (scratch, source-only)",
    )
    source_model: str | None = Field(
        default=None,
        description="a saved source model: the source-only baseline applies it to the target",
    )
    metric: str | None = Field(
        default=None, description="the table's registered metric (default: the headline)"
    )
    controls: bool = Field(
        default=True,
        description="add each strategy's control (an adaptation with its alignment off)",
    )
    resample_split: bool = Field(
        default=False,
        description="split the data anew with every seed (the split's spread joins the seeds')",
    )
    save_models: bool = Field(
        default=False, description="keep every row's trained model in its folder"
    )


class SearchParam(Section):
    """One searched config key (``lepton tune``): a float or int range (``log`` for a
    log-uniform one) or a list of ``choices``. ``type`` is inferred when omitted: ``choices``
    make it categorical, two integer bounds an int range, anything else a float range. ``when``
    samples the key only when other keys have these values (``{strategy.name: l2-sp}``)."""

    type: Literal["float", "int", "categorical"] | None = Field(
        default=None, description="float, int or categorical (default: inferred)"
    )
    low: float | None = Field(default=None, description="lower bound (float and int)")
    high: float | None = Field(default=None, description="upper bound, inclusive")
    log: bool = Field(default=False, description="sample on a log scale (bounds > 0)")
    step: float | None = Field(default=None, description="grid step of a float or int range")
    choices: list[Any] | None = Field(default=None, description="the values of a categorical")
    when: dict[str, Any] = Field(
        default_factory=dict,
        description="sample only when these keys have these values (a value or a list)",
    )

    @classmethod
    def _coerce(cls, data: Any) -> Any:
        return {"choices": data} if isinstance(data, list) else data

    @model_validator(mode="after")
    def _consistent(self) -> SearchParam:
        if self.type is None:
            if self.choices is not None:
                self.type = "categorical"
            elif _is_int(self.low) and _is_int(self.high) and not self.log:
                self.type = "int"
            else:
                self.type = "float"
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical needs a non-empty list of choices")
            if self.low is not None or self.high is not None:
                raise ValueError("a categorical takes choices, not low/high")
            return self
        if self.choices is not None:
            raise ValueError(f"a {self.type} range takes low/high, not choices")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} range needs both low and high")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step must be > 0, got {self.step}")
        if self.type == "int" and not (_is_int(self.low) and _is_int(self.high)):
            raise ValueError(f"an int range needs integer bounds, got {self.low}..{self.high}")
        return self


def _is_int(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == int(value)


class SearchSection(Section):
    """``lepton tune``: the hyper-parameter search space (dotted config keys such as
    ``train.lr`` or ``strategy.params.alpha``) and how the search runs; ``lepton run`` ignores
    it."""

    space: dict[str, SearchParam] = Field(
        default_factory=dict, description="searched keys, each a range or a list of choices"
    )
    trials: int = Field(default=20, ge=1, description="finished trials to reach (--trials wins)")
    pruner: Literal["median", "hyperband", "none"] = Field(
        default="median", description="stop weak trials early from their per-epoch scores"
    )
    sampler: Literal["tpe", "random"] = Field(default="tpe", description="the Optuna sampler")
    seed: int | None = Field(default=0, description="sampler seed (null: random)")
    final: bool = Field(
        default=True, description="train the best config and evaluate it once on test"
    )


class PluginsSection(Section):
    """Which plugins provide what: a choice between distributions that register one name."""

    prefer: list[str] = Field(
        default_factory=list,
        description="the distribution that provides a name several provide, as LEPTON_PREFER: "
        "a distribution (lepton-image), or KIND:NAME=DISTRIBUTION "
        "(backbone:resnet18=lepton-image); added to LEPTON_PREFER's entries",
    )


class RunConfig(Section):
    """A whole run. Build it with :func:`load_config` (YAML) or :meth:`from_transfer_kwargs`
    (the Python API's arguments); :meth:`to_transfer_kwargs` goes back."""

    SECTIONS: ClassVar[tuple[str, ...]] = (
        "domain",
        "data",
        "backbone",
        "task",
        "strategy",
        "train",
        "evaluation",
        "output",
        "compare",
        "search",
        "plugins",
    )

    domain: DomainSection = Field(description="the target domain (a name, or name + options)")
    data: DataSection = Field(description="data sources and splits")
    backbone: BackboneSection = Field(description="the backbone (a name, or name + options)")
    task: TaskSection = Field(default_factory=TaskSection, description="the task")
    strategy: StrategySection = Field(
        default_factory=StrategySection, description="the transfer strategy"
    )
    train: TrainSection = Field(default_factory=TrainSection, description="training settings")
    evaluation: EvaluationSection = Field(
        default_factory=EvaluationSection, description="metrics and bootstrap"
    )
    output: OutputSection = Field(default_factory=OutputSection, description="the run folder")
    compare: CompareSection = Field(
        default_factory=CompareSection, description="settings of `lepton compare`"
    )
    search: SearchSection = Field(
        default_factory=SearchSection, description="settings of `lepton tune`"
    )
    plugins: PluginsSection = Field(
        default_factory=PluginsSection, description="which plugin provides a contested name"
    )

    @model_validator(mode="before")
    @classmethod
    def _prefer(cls, data: Any) -> Any:
        """Apply ``plugins.prefer`` before the names are checked (they may depend on it)."""
        plugins = data.get("plugins") if isinstance(data, Mapping) else None
        prefer = plugins.get("prefer") if isinstance(plugins, Mapping) else None
        if prefer:
            from lepton_platform._host import get_host

            if isinstance(prefer, str):
                prefer = [prefer]
            env = os.environ.get("LEPTON_PREFER", "")
            try:
                get_host().prefer([*env.split(","), *map(str, prefer)])
            except LeptonError as exc:
                raise ConfigError(f"plugins.prefer: {exc}") from exc
        return data

    @model_validator(mode="after")
    def _registered(self) -> RunConfig:
        check_registered(self)
        return self

    # -- the Python API, both ways ---------------------------------------------------------

    def to_transfer_kwargs(self, output_dir: str | Path | None = None) -> dict[str, Any]:
        """The keyword arguments of :func:`lepton_platform.transfer` that this config says
        (``output_dir`` only when given)."""
        kwargs: dict[str, Any] = {
            "domain": self.domain.name,
            "domain_options": dict(self.domain.options),
            "data": [s.model_dump(exclude_none=True) for s in self.data.sources],
            "split": self.data.split.model_dump(exclude_unset=True),
            "on_bad_record": self.data.on_bad_record,
            "backbone": self.backbone.name,
            "pretrained": self.backbone.pretrained,
            "backbone_options": dict(self.backbone.options),
            "min_loaded": self.backbone.min_loaded,
            "scratch": self.backbone.scratch,
            "task": self.task.name,
            "task_options": dict(self.task.options),
            "strategy": self.strategy.name,
            "strategy_params": dict(self.strategy.params),
            "train": self.train.model_dump(exclude_unset=True),
            "metrics": None if self.evaluation.metrics is None else list(self.evaluation.metrics),
            "bootstrap": self.evaluation.bootstrap,
        }
        if self.data.unlabelled_target:
            kwargs["unlabelled_target"] = [
                s.model_dump(exclude_none=True) for s in self.data.unlabelled_target
            ]
        if output_dir is not None:
            kwargs["output_dir"] = Path(output_dir)
        return kwargs

    def compare_kwargs(
        self,
        strategies: Sequence[str] | None = None,
        seeds: Sequence[int] | None = None,
        output_dir: str | Path | None = None,
    ) -> dict[str, Any]:
        """The keyword arguments of :func:`lepton_platform.compare`; ``strategies`` and ``seeds``
        (the CLI's flags) win over the ``compare`` section."""
        kwargs = self.to_transfer_kwargs()
        kwargs.pop("strategy")
        kwargs.pop("strategy_params")
        if kwargs.pop("scratch"):
            raise ConfigError(
                "backbone.scratch: a comparison has its own scratch baseline row "
                "(compare.baselines); remove backbone.scratch"
            )
        if strategies:
            check_names("compare.strategies", "strategy", strategies)
            chosen: list[Any] = list(strategies)
        elif self.compare.strategies:
            chosen = [_row(s) for s in self.compare.strategies]
        else:
            chosen = [_row(self.strategy)]
        kwargs["strategies"] = chosen
        kwargs["seeds"] = list(seeds) if seeds else list(self.compare.seeds)
        kwargs["baselines"] = self.compare.baselines
        kwargs["source_model"] = self.compare.source_model
        kwargs["metric"] = self.compare.metric
        kwargs["controls"] = self.compare.controls
        kwargs["resample_split"] = self.compare.resample_split
        kwargs["save_models"] = self.compare.save_models
        if output_dir is not None:
            kwargs["output_dir"] = Path(output_dir)
        return kwargs

    @classmethod
    def from_transfer_kwargs(
        cls,
        *,
        base_dir: str | Path = ".",
        output: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> RunConfig:
        """The config that says what these :func:`~lepton_platform.transfer` arguments say.
        Objects (a ``Backbone``, a ``DataBundle``, a dataset) have no YAML form: use registered
        names and source mappings."""
        target = kwargs.pop("unlabelled_target", None)
        output_dir = kwargs.pop("output_dir", None)
        kwargs.pop("save", None)
        kwargs.pop("resume", None)
        allowed = {
            "domain",
            "domain_options",
            "data",
            "split",
            "on_bad_record",
            "backbone",
            "pretrained",
            "backbone_options",
            "task",
            "task_options",
            "strategy",
            "strategy_params",
            "train",
            "metrics",
            "bootstrap",
            "min_loaded",
            "scratch",
        }
        for key in kwargs:
            if key not in allowed:
                raise ConfigError(f"transfer() has no argument {key!r}{did_you_mean(key, allowed)}")
        for key in ("domain", "backbone", "strategy", "task"):
            value = kwargs.get(key)
            if value is not None and not isinstance(value, str):
                raise ConfigError(
                    f"{key}: a {type(value).__name__} object has no config form; "
                    "use a registered name"
                )
        data = _config_sources("data", kwargs.get("data"))
        targets = None if target is None else _config_sources("unlabelled_target", target)
        train = kwargs.get("train") or {}
        if isinstance(train, TrainConfig):
            defaults = TrainConfig().to_json()
            train = {k: v for k, v in train.to_json().items() if v != defaults[k]}
        split = kwargs.get("split") or {}
        if isinstance(split, SplitConfig):
            split = split.to_json()
        raw: dict[str, Any] = {
            "domain": {
                "name": kwargs["domain"],
                "options": dict(kwargs.get("domain_options") or {}),
            },
            "data": {
                "sources": data,
                "split": dict(split),
                "on_bad_record": kwargs.get("on_bad_record", "error"),
                **({"unlabelled_target": targets} if targets else {}),
            },
            "backbone": {
                "name": kwargs["backbone"],
                "pretrained": kwargs.get("pretrained"),
                "options": dict(kwargs.get("backbone_options") or {}),
                "min_loaded": kwargs.get("min_loaded", 0.5),
                "scratch": bool(kwargs.get("scratch", False)),
            },
            "task": {
                "name": kwargs.get("task", "classification"),
                "options": dict(kwargs.get("task_options") or {}),
            },
            "strategy": {
                "name": kwargs.get("strategy", "finetune"),
                "params": dict(kwargs.get("strategy_params") or {}),
            },
            "train": dict(train),
            "evaluation": {
                "metrics": kwargs.get("metrics"),
                "bootstrap": kwargs.get("bootstrap", 1000),
            },
        }
        if output is not None:
            raw["output"] = dict(output)
        elif output_dir is not None:
            path = Path(output_dir)
            raw["output"] = {"root": str(path.parent), "name": path.name}
        return parse_config(raw, base_dir=base_dir, where="transfer() arguments")

    def snapshot(self) -> dict[str, Any]:
        """The whole config, defaults filled in, as the run folder's ``config.yaml`` holds it."""
        return self.model_dump(mode="json")


def _row(section: StrategySection) -> dict[str, Any]:
    """A ``compare`` row from a strategy section."""
    row: dict[str, Any] = {"name": section.name, "params": dict(section.params)}
    if section.label:
        row["label"] = section.label
    return row


def _config_sources(key: str, value: Any) -> list[Any]:
    """Sources with a config form: paths and source mappings (a dataset object has none)."""
    items = [value] if isinstance(value, Mapping | str | os.PathLike) else value
    if not isinstance(items, list | tuple):
        raise ConfigError(
            f"{key}: a {type(value).__name__} has no config form; use paths or source mappings"
        )
    out: list[Any] = []
    for item in items:
        if isinstance(item, os.PathLike):
            item = os.fspath(item)
        if not isinstance(item, str | Mapping) or (isinstance(item, Mapping) and "dataset" in item):
            raise ConfigError(
                f"{key}: a {type(item).__name__} has no config form; use paths or source "
                "mappings (pass dataset objects to the Python API directly)"
            )
        out.append(dict(item) if isinstance(item, Mapping) else item)
    return out


# ----------------------------------------------------------------------------- registry checks


def _lookup(kind: str, name: str) -> tuple[Any, str | None]:
    """The spec registered as ``name`` (a backbone's ``<spec>/<value>`` resolved), or why
    there is none: not registered (with the closest names), or contested by several
    distributions that no preference settled."""
    from lepton_platform._host import get_host
    from lepton_platform.errors import PluginError, UnknownNameError
    from lepton_platform.registry import get_backbone

    host = get_host()
    try:
        return (get_backbone(name) if kind == "backbone" else host.get(kind, name)), None
    except PluginError as exc:  # a name clash: its message says how to choose
        return None, str(exc)
    except UnknownNameError:
        known = [s.name for s in host.list(kind)]
        hint = did_you_mean(name, known)
        plural = {"strategy": "strategies"}.get(kind, kind + "s")
        if hint.startswith("; known:"):
            hint = f"; registered {plural}: {hint[len('; known: ') :]}"
        return None, f"{name!r} is not registered{hint} (`lepton plugins` lists what is installed)"
    except ConfigError as exc:  # a malformed <spec>/<value> name
        return None, str(exc)


def check_names(key: str, kind: str, names: Sequence[str]) -> None:
    """Raise :class:`ConfigError` for a name that no plugin registered, naming ``key``."""
    for name in names:
        _, problem = _lookup(kind, name)
        if problem is not None:
            raise ConfigError(f"{key}: {problem}")


def _registered_problems(config: RunConfig) -> list[str]:
    problems: list[str] = []
    found: dict[str, Any] = {}

    def check(key: str, kind: str, name: str) -> bool:
        spec, problem = _lookup(kind, name)
        if problem is None:
            found[key] = spec
            return True
        problems.append(f"{key}: {problem}")
        return False

    check("domain", "domain", config.domain.name)
    if check("backbone", "backbone", config.backbone.name):
        spec = found["backbone"]
        wanted = getattr(spec, "domain", "")
        modality = _modality(config.domain.name)
        if wanted and wanted not in (config.domain.name, modality):
            problems.append(
                f"backbone: {config.backbone.name!r} reads {wanted!r} inputs, but domain is "
                f"{config.domain.name!r}; choose a backbone of that domain"
            )
    check("task", "task", config.task.name)
    strategies = [("strategy", config.strategy)] + [
        (f"compare.strategies[{i}]", s) for i, s in enumerate(config.compare.strategies)
    ]
    for key, section in strategies:
        if check(key, "strategy", section.name):
            spec = found[key]
            accepted = list(getattr(spec, "parameters", {}) or {})
            for param in section.params:
                if accepted and param not in accepted:
                    problems.append(
                        f"{key}.params.{param}: strategy {section.name!r} has no parameter "
                        f"{param!r}{_closest_hint(param, accepted)} "
                        f"(accepted: {', '.join(accepted)})"
                    )
    for i, metric in enumerate(config.evaluation.metrics or []):
        check(f"evaluation.metrics[{i}]", "metric", metric)
    monitor = getattr(config.train, "monitor", "loss")
    if monitor != "loss":
        check("train.monitor", "metric", monitor)
    if config.compare.metric is not None:
        check("compare.metric", "metric", config.compare.metric)
    return problems


def _closest_hint(name: str, known: Sequence[str]) -> str:
    matches = closest(name, known)
    return "; did you mean " + " or ".join(map(repr, matches)) + "?" if matches else ""


def _modality(domain: str) -> str:
    from lepton_platform._host import get_host

    try:
        return str(getattr(get_host().get("domain", domain), "modality", "") or "")
    except LeptonError:
        return ""


class _RegistryError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def check_registered(config: RunConfig) -> None:
    """Refuse names no installed plugin registered (pydantic collects the error)."""
    problems = _registered_problems(config)
    if problems:
        raise _RegistryError(problems)


# ----------------------------------------------------------------------------- loading


def _loc(parts: Sequence[int | str]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or "[" in part:
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _format(exc: ValidationError) -> list[str]:
    lines: list[str] = []
    for err in exc.errors():
        loc = _loc(err["loc"])
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, UnknownKeyError):
            key = f"{loc}.{cause.key}" if loc else cause.key
            line = f"{key}: {cause.describe()}"
        elif isinstance(cause, _RegistryError):
            lines.extend(cause.problems)
            continue
        elif isinstance(cause, Exception):
            line = f"{loc}: {cause}" if loc else str(cause)
        elif err["type"] == "missing":
            line = f"{loc}: required key is missing"
        elif err["type"] == "extra_forbidden":
            line = f"{loc}: unknown key"
        else:
            value = err.get("input")
            shown = repr(value) if not isinstance(value, Mapping) else "a mapping"
            line = f"{loc}: {_settings_message(loc) or err['msg']}, got {shown}"
        if line not in lines and not any(old.startswith(f"{loc}: ") for old in lines):
            lines.append(line)
    return lines


def _settings_message(loc: str) -> str | None:
    """A settings field's own message for a value out of its range (``data.split.test``)."""
    for prefix, settings in (("train.", TrainConfig), ("data.split.", SplitConfig)):
        if loc.startswith(prefix):
            return settings.field_messages().get(loc[len(prefix) :].split(".")[0])
    return None


def parse_config(
    data: Any, *, base_dir: str | Path = ".", where: str = "config", name: str | None = None
) -> RunConfig:
    """Validate a mapping (parsed YAML) into a :class:`RunConfig`; ``base_dir`` is where
    relative data paths start and ``name`` the default run-folder name."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{where}: the top level must be a mapping of sections "
            f"({', '.join(RunConfig.SECTIONS)}), got {type(data).__name__}"
        )
    data = dict(data)
    try:
        config = RunConfig.model_validate(data, context={"base_dir": str(base_dir)})
    except ValidationError as exc:
        lines = _format(exc)
        head = f"{where}: " + ("" if len(lines) == 1 else f"{len(lines)} problems:\n  ")
        raise ConfigError(head + "\n  ".join(lines)) from None
    if config.output.name is None and name:
        config.output.name = re.sub(r"[^A-Za-z0-9._-]+", "-", name) or "run"
        config.output._named_after_file = True
    return config


def yaml_value(text: str) -> Any:
    """A command-line value read as YAML (``null``, ``true``, ``0.1``, ``[1, 2]``)."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides (``train.lr=0.01``, ``data.sources.0.path=x.csv``) to parsed
    YAML; values are read as YAML scalars (``null``, ``true``, ``[1, 2]``). A section written
    in short form (``data: train.csv``, ``strategy: lp-ft``) is expanded first, so that
    ``--set data.split.test=0.2`` and ``--set strategy.params.alpha=0.1`` work on it."""
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.lr=0.01")
        parts = key.split(".")
        if any(not p for p in parts):
            raise ConfigError(f"--set {item!r}: {key!r} is not a dotted key such as train.lr")
        node: Any = data
        schema: Any = RunConfig
        for depth, part in enumerate(parts[:-1]):
            child = _child(node, part, ".".join(parts[: depth + 1]), item)
            schema = _child_schema(schema, part)
            expanded = _expand(schema, child)
            if expanded is not child:
                child = expanded
                _put(node, part, child, item)
            node = child
        _put(node, parts[-1], yaml_value(text), item)
    return data


def _child_schema(schema: Any, part: str) -> Any:
    """The schema (a section class, or ``list[section]``) of ``part`` inside ``schema``."""
    if schema is None:
        return None
    if typing.get_origin(schema) is list:
        return next(iter(typing.get_args(schema)), None)
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        field = schema.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        if typing.get_origin(annotation) is list:
            return annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
    return None


def _expand(schema: Any, value: Any) -> Any:
    """A short-form section value as its mapping (``None`` as an empty one)."""
    if value is None:
        return {}
    if isinstance(value, str | list) and isinstance(schema, type) and issubclass(schema, Section):
        coerced = schema._coerce(value)
        if isinstance(coerced, dict):
            return coerced
    if isinstance(value, str) and isinstance(schema, type) and issubclass(schema, DataSource):
        return {"path": value}
    return value


def _child(node: Any, part: str, key: str, item: str) -> Any:
    if isinstance(node, list):
        index = _index(node, part, key, item)
        return node[index]
    if isinstance(node, dict):
        return node.get(part)
    raise ConfigError(f"--set {item!r}: {key} is a {type(node).__name__}, not a section")


def _put(node: Any, part: str, value: Any, item: str) -> None:
    if isinstance(node, list):
        node[_index(node, part, part, item)] = value
    elif isinstance(node, dict):
        node[part] = value
    else:
        raise ConfigError(f"--set {item!r}: cannot set {part!r} inside a {type(node).__name__}")


def _index(node: list[Any], part: str, key: str, item: str) -> int:
    if not part.isdigit():
        raise ConfigError(
            f"--set {item!r}: the config holds a list where {part!r} is; give an index "
            "(data.sources.0.path) or write the section out in full"
        )
    if int(part) >= len(node):
        raise ConfigError(
            f"--set {item!r}: {key!r} must be an index below {len(node)} of the list there"
        )
    return int(part)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file, turning every failure into a :class:`ConfigError` naming it."""
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"{file}: no such config file")
    if not file.is_file():
        raise ConfigError(f"{file}: is not a file")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot be read as UTF-8 text ({exc})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{file}: not valid YAML{where}: {problem}") from None


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Read, override (``--set`` syntax) and validate a YAML config file."""
    file = Path(path)
    data = read_yaml(file)
    if data is None:
        raise ConfigError(f"{file}: the file is empty; it needs at least domain, data, backbone")
    if not isinstance(data, dict):
        return parse_config(data, where=str(file))
    data = apply_overrides(data, overrides)
    return parse_config(data, base_dir=file.parent.resolve(), where=str(file), name=file.stem)


def config_differences(
    old: Mapping[str, Any], new: Mapping[str, Any], ignore: Sequence[str] = ()
) -> list[str]:
    """``key: old -> new`` for every leaf that differs between two config snapshots (keys in
    ``ignore``, dotted, and the keys under them are skipped)."""
    out: list[str] = []

    def walk(a: Any, b: Any, key: str) -> None:
        if key and any(key == i or key.startswith(i + ".") for i in ignore):
            return
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for k in list(a) + [k for k in b if k not in a]:
                walk(a.get(k, _UNSET), b.get(k, _UNSET), f"{key}.{k}" if key else str(k))
        elif a != b:
            shown_a = "(absent)" if a is _UNSET else repr(a)
            shown_b = "(absent)" if b is _UNSET else repr(b)
            out.append(f"{key}: {shown_a} in the run, {shown_b} now")

    walk(old, new, "")
    return out


# ----------------------------------------------------------------------------- reference


_BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "length >="))


def _bounds(items: Sequence[Any]) -> list[str]:
    out: list[str] = []
    for item in items:
        for attr, sign in _BOUNDS:
            value = getattr(item, attr, None)
            if value is not None and not callable(value):
                out.append(f"{sign} {value}")
        out.extend(_bounds(getattr(item, "metadata", None) or []))
    return out


def _type_text(annotation: Any, metadata: Sequence[Any] = ()) -> str:
    """A readable type for the reference: ``int (>= 1) | null``, ``one of 'a', 'b'``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_text(args[0], [*args[1:], *metadata])
    bounds = _bounds(metadata)
    if origin in (typing.Union, types.UnionType):
        parts = [_type_text(a, metadata) for a in args]
        return " | ".join(parts)
    if origin is Literal:
        text = "one of " + ", ".join(repr(a) for a in args)
    elif origin in (list, tuple, Sequence):
        inner = [a for a in args if a is not Ellipsis]
        text = "list" + (f" of {_type_text(inner[0])}" if inner else "")
    elif origin in (dict, Mapping):
        text = "mapping"
    elif annotation is type(None):
        return "null"
    elif isinstance(annotation, type):
        text = annotation.__name__
    else:
        text = str(annotation).replace("typing.", "")
    text = re.sub(r"lepton_platform\.api\.config\.(\w+)", r"\1", text)
    return f"{text} ({', '.join(bounds)})" if bounds else text


def _default_text(field: Any) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "(section)"
        return f"`{value!r}`"
    return f"`{field.default!r}`"


def config_reference() -> str:
    """The config reference page (``docs/config.md``), generated from the schema itself."""
    lines = [
        "# Config reference",
        "",
        "<!-- generated by scripts/gen_docs.py from lepton_platform/api/config.py and "
        "lepton_platform/settings.py: do not edit by hand -->",
        "",
        "A run config is one YAML file; `lepton run CONFIG` runs it and "
        "`lepton_platform.api.config.load_config(path)` reads it. Unknown keys are refused (the "
        "closest key is suggested), values are type-checked, registered names (domain, "
        "backbone, task, strategy, metrics) are checked against the installed plugins, and "
        "data paths must exist. Relative data paths start at the config file's folder; "
        "`output.root` is relative to the current directory.",
        "",
        "`domain`, `backbone`, `task` and `strategy` may be written as a plain name "
        "(`strategy: lp-ft`); `data` may be a path or a list of sources. Any key can be "
        "overridden on the command line: `--set train.lr=0.01` (values are read as YAML).",
        "",
        "The `train` and `data.split` sections are the schemas of "
        "`lepton_platform.settings.TrainConfig` and `SplitConfig` themselves: the same "
        "checks run when a config is read and when the Python API builds them. "
        "`RunConfig.to_transfer_kwargs()` turns a config into the arguments of "
        "`lepton_platform.transfer`, and `RunConfig.from_transfer_kwargs(...)` goes back.",
        "",
    ]

    def section(title: str, model: type[BaseModel]) -> None:
        summary = " ".join((model.__doc__ or "").strip().split("\n\n")[0].split())
        lines.extend([f"## `{title}`", "", summary.replace("``", "`"), ""])
        lines.append("| key | type | default | meaning |")
        lines.append("| --- | --- | --- | --- |")
        nested: list[tuple[str, type[BaseModel]]] = []
        for name, field in model.model_fields.items():
            annotation = field.annotation
            description = (field.description or "").replace("|", "\\|")
            kind = _type_text(annotation, field.metadata).replace("|", "\\|")
            lines.append(f"| `{name}` | {kind} | {_default_text(field)} | {description} |")
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                nested.append((f"{title}.{name}", annotation))
        lines.append("")
        for sub_title, sub_model in nested:
            section(sub_title, sub_model)

    for name in RunConfig.SECTIONS:
        annotation = RunConfig.model_fields[name].annotation
        assert isinstance(annotation, type) and issubclass(annotation, BaseModel)
        section(name, annotation)
    lines.extend(
        [
            "## `data.sources[]`",
            "",
            " ".join((DataSource.__doc__ or "").split()).replace("``", "`"),
            "",
            "## `search.space.<key>`",
            "",
            " ".join((SearchParam.__doc__ or "").split()).replace("``", "`"),
            "",
            "| key | type | default | meaning |",
            "| --- | --- | --- | --- |",
            *(
                f"| `{n}` | {_type_text(f.annotation, f.metadata).replace('|', chr(92) + '|')} | "
                f"{_default_text(f)} | {f.description or ''} |"
                for n, f in SearchParam.model_fields.items()
            ),
            "",
            "## Example",
            "",
            "```yaml",
            "domain: tabular",
            "data:",
            "  sources: [{path: data.csv, label_column: label}]",
            "  split: {validation: 0.15, test: 0.15, seed: 0}",
            "  on_bad_record: skip",
            "backbone: {name: mlp, options: {num_features: 4, hidden: [32]}}",
            "strategy: {name: lp-ft, params: {ft_lr: 0.001}}",
            "train: {epochs: 5, lr: 0.01, batch_size: 32}",
            "evaluation: {metrics: [accuracy, f1], bootstrap: 1000}",
            "output: {root: runs, name: tabular-lpft}",
            "compare: {strategies: [finetune, linear-probe, lp-ft], seeds: [0, 1, 2]}",
            "search:",
            "  trials: 30",
            "  space:",
            "    train.lr: {low: 1.0e-4, high: 1.0e-1, log: true}",
            "    train.epochs: {low: 2, high: 8}",
            "    train.batch_size: [16, 32, 64]",
            "    strategy.name: [finetune, l2-sp]",
            "    strategy.params.alpha: {low: 1.0e-4, high: 1.0, log: true, "
            "when: {strategy.name: l2-sp}}",
            "```",
            "",
        ]
    )
    return "\n".join(lines)
