"""The search space: which config keys a trial changes, and how each is sampled.

A space maps dotted config keys to :class:`~lepton_platform.api.config.SearchParam` ranges::

    space = SearchSpace.parse({
        "train.lr": {"low": 1e-4, "high": 1e-1, "log": True},
        "train.epochs": {"low": 2, "high": 6},
        "strategy.name": ["finetune", "l2-sp"],
        "strategy.params.alpha": {"low": 1e-3, "high": 1.0, "log": True,
                                  "when": {"strategy.name": "l2-sp"}},
    })
    values = space.suggest(trial)           # {"train.lr": 0.003, ...}
    raw = space.apply(config.snapshot(), values)

Everything here is checked before the first trial: an empty space, low above high, a
categorical without choices, a key that no config section has, a strategy parameter that none
of the strategies it may run with accepts.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from lepton_platform.api.config import RunConfig, SearchParam, SearchSection, _format
from lepton_platform.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    import optuna

__all__ = ["SEARCHABLE", "SearchSpace"]

#: The config sections a trial may change (data, evaluation and output stay fixed, so every
#: trial is measured on the same validation split with the same metric).
SEARCHABLE = ("train", "strategy", "backbone", "task")


@dataclass(frozen=True)
class SearchSpace:
    """Parsed, checked search space: ``params`` in the order they are sampled."""

    params: dict[str, SearchParam]

    @classmethod
    def parse(cls, space: SearchSpace | SearchSection | Mapping[str, Any] | None) -> SearchSpace:
        """A space from a mapping (as the config's ``search.space`` says), a config section or
        an existing space; raises :class:`ConfigError` naming the key that is wrong."""
        if isinstance(space, SearchSpace):
            return space
        if isinstance(space, SearchSection):
            space = space.space
        if not space:
            raise ConfigError(
                "search.space is empty: give at least one key to search, e.g. "
                "search: {space: {train.lr: {low: 1.0e-4, high: 1.0e-1, log: true}}}"
            )
        if not isinstance(space, Mapping):
            raise ConfigError(
                f"search.space must be a mapping of config keys, got {type(space).__name__}"
            )
        try:
            section = SearchSection.model_validate({"space": dict(space)})
        except ValidationError as exc:
            lines = _format(exc)
            raise ConfigError(
                "search: "
                + ("" if len(lines) == 1 else f"{len(lines)} problems:\n  ")
                + "\n  ".join(lines)
            ) from None
        params = dict(section.space)
        for key, param in params.items():
            _check_key(key)
            for other in param.when:
                if other not in params:
                    raise ConfigError(
                        f"search.space.{key}.when: {other!r} is not a searched key "
                        f"(searched: {', '.join(params)})"
                    )
                if list(params).index(other) > list(params).index(key):
                    raise ConfigError(
                        f"search.space.{key}.when: {other!r} must come before {key!r}"
                    )
        return cls(params)

    def check(self, config: RunConfig) -> None:
        """Check the space against a config: every strategy parameter must be accepted by a
        strategy the trials can run, and every choice of ``strategy.name`` must be registered."""
        from lepton_platform._host import get_host

        host = get_host()
        names = self._strategy_names(config)
        known = [s.name for s in host.list("strategy")]
        for name in names:
            if name not in known:
                raise ConfigError(
                    f"search.space.strategy.name: {name!r} is not a registered strategy"
                    f"{did_you_mean(name, known)}"
                )
        for key, param in self.params.items():
            if not key.startswith("strategy.params."):
                continue
            wanted = param.when.get("strategy.name", names)
            wanted = wanted if isinstance(wanted, list) else [wanted]
            parameter = key.split(".", 2)[2]
            for name in wanted:
                accepted = list(getattr(host.get("strategy", name), "parameters", {}) or {})
                if parameter not in accepted:
                    raise ConfigError(
                        f"search.space.{key}: strategy {name!r} has no parameter {parameter!r} "
                        f"(accepted: {', '.join(accepted) or 'none'}); limit it with "
                        f"when: {{strategy.name: ...}}"
                    )

    def _strategy_names(self, config: RunConfig) -> list[str]:
        param = self.params.get("strategy.name")
        if param is None:
            return [config.strategy.name]
        return [str(c) for c in param.choices or []]

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Sample this trial's values (keys whose ``when`` does not hold are left out)."""
        values: dict[str, Any] = {}
        for key, param in self.params.items():
            if not _holds(param.when, values):
                continue
            if param.type == "categorical":
                choices = list(param.choices or [])
                if _plain(choices):
                    values[key] = trial.suggest_categorical(key, choices)
                else:  # lists or mappings: Optuna stores the index
                    index = trial.suggest_categorical(key, list(range(len(choices))))
                    values[key] = copy.deepcopy(choices[int(index)])
            elif param.type == "int":
                assert param.low is not None and param.high is not None
                values[key] = trial.suggest_int(
                    key, int(param.low), int(param.high), step=int(param.step or 1), log=param.log
                )
            else:
                assert param.low is not None and param.high is not None
                values[key] = trial.suggest_float(
                    key, float(param.low), float(param.high), step=param.step, log=param.log
                )
        return values

    def distributions(self) -> dict[str, Any]:
        """JSON-ready description of the space (stored with the study)."""
        return {k: p.model_dump(mode="json", exclude_defaults=True) for k, p in self.params.items()}

    @staticmethod
    def apply(raw: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of a config mapping with the sampled values set at their dotted keys. When
        the trial runs another strategy than the base config, the base strategy's parameters
        are dropped (they belong to that strategy)."""
        out = copy.deepcopy(dict(raw))
        if "strategy.name" in values:
            strategy = out.setdefault("strategy", {})
            if isinstance(strategy, str):
                strategy = out["strategy"] = {"name": strategy}
            if strategy.get("name") != values["strategy.name"]:
                strategy["params"] = {}
        for key, value in values.items():
            node = out
            parts = key.split(".")
            for part in parts[:-1]:
                child = node.get(part)
                if isinstance(child, str) and part in ("strategy", "backbone", "task"):
                    child = {"name": child}
                if not isinstance(child, dict):
                    child = {}
                node[part] = child
                node = child
            node[parts[-1]] = value
        return out


def _plain(choices: list[Any]) -> bool:
    """Whether Optuna can store the choices themselves (None, bool, int, float, str)."""
    return all(c is None or isinstance(c, bool | int | float | str) for c in choices)


def _holds(when: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    for key, wanted in when.items():
        if key not in values:
            return False
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if values[key] not in allowed:
            return False
    return True


def _check_key(key: str) -> None:
    from lepton_platform.api.config import TrainSection

    section, _, rest = key.partition(".")
    if section not in RunConfig.SECTIONS:
        raise ConfigError(
            f"search.space.{key}: {section!r} is not a config section"
            f"{did_you_mean(section, list(SEARCHABLE))}"
        )
    if section not in SEARCHABLE:
        raise ConfigError(
            f"search.space.{key}: the {section!r} section cannot be searched (every trial must "
            f"see the same data, metric and output); searchable: {', '.join(SEARCHABLE)}"
        )
    if not rest:
        raise ConfigError(f"search.space.{key}: name a key inside {section!r}, e.g. train.lr")
    if section == "train":
        fields = list(TrainSection.model_fields)
        if rest not in fields:
            raise ConfigError(
                f"search.space.{key}: train has no key {rest!r}{did_you_mean(rest, fields)}"
            )
        return
    first = rest.split(".")[0]
    allowed = {
        "strategy": ("name", "params"),
        "backbone": ("name", "pretrained", "options"),
        "task": ("options",),
    }[section]
    if first not in allowed or (first in ("params", "options") and "." not in rest):
        shown = ", ".join(
            f"{section}.{a}" + (".X" if a in ("params", "options") else "") for a in allowed
        )
        raise ConfigError(f"search.space.{key}: not a searchable key (use {shown})")
