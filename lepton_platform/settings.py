"""The typed settings that the engines, the data layer and the YAML schema share:
:class:`TrainConfig` (how to train) and :class:`SplitConfig` (how to split data that comes
without splits).

Each is a frozen dataclass whose fields carry their meaning and their allowed range
(:func:`setting`). From those fields one pydantic schema is built per class
(:meth:`Settings.schema_model`); it checks every value when a dataclass is made in Python and
when a YAML config is read, so the two can never disagree. Nothing here imports torch::

    >>> TrainConfig(lr=-1)
    Traceback (most recent call last):
    ...
    lepton_platform.errors.ConfigError: TrainConfig.lr: Input should be greater than 0, got -1
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    create_model,
    model_validator,
)

from lepton_platform.errors import ConfigError, did_you_mean

__all__ = ["SplitConfig", "TrainConfig", "format_validation_error", "setting"]


def setting(
    default: Any,
    help: str,
    *,
    resumable: bool = False,
    message: str | None = None,
    **constraints: Any,
) -> Any:
    """A settings field: its default, a one-line meaning (the config reference shows it), and
    pydantic constraints (``ge=1``, ``gt=0``, ``lt=1``, ``min_length=1``); ``message`` says
    what is allowed when a value breaks them. ``resumable`` marks a field that may change when
    a run is resumed, because it does not change the result (progress bars, logging cadence)."""
    return dataclasses.field(
        default=default,
        metadata={
            "help": help,
            "resumable": resumable,
            "constraints": constraints,
            "message": message,
        },
    )


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value


def _field_type(hint: Any, constraints: Mapping[str, Any]) -> Any:
    """The pydantic annotation of one field: constraints on the non-``None`` part, integers,
    booleans and strings strict (``true`` is not an epoch count), floats accepting integers."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        base = inner[0] if len(inner) == 1 else typing.Union[tuple(inner)]  # noqa: UP007
        return _field_type(base, constraints) | None
    extra: list[Any] = []
    if hint in (int, bool, str):
        extra.append(Strict())
    elif hint is float:
        extra.append(BeforeValidator(_no_bool))
    if constraints:
        extra.append(Field(**constraints))
    return Annotated[hint, *extra] if extra else hint


def format_validation_error(
    exc: ValidationError, prefix: str, messages: Mapping[str, str] | None = None
) -> list[str]:
    """``prefix.key: message, got value`` for each error of a pydantic validation; ``messages``
    gives a field's own message for a value out of its range."""
    lines: list[str] = []
    for err in exc.errors():
        parts = [str(p) for p in err["loc"] if not str(p).startswith(("function-", "literal["))]
        parts = [p for p in parts if "[" not in p]
        where = ".".join([prefix, *parts[:1]]) if parts else prefix
        if any(line.startswith(f"{where}: ") for line in lines):
            continue  # one line per key (a union reports each of its members)
        message = err["msg"].removeprefix("Value error, ")
        own = (messages or {}).get(parts[0]) if parts else None
        if own and err["type"] not in ("missing", "extra_forbidden"):
            message = own
        if not parts or err["type"] in ("missing", "extra_forbidden") or "input" not in err:
            lines.append(f"{where}: {message}")
        else:
            lines.append(f"{where}: {message}, got {err['input']!r}")
    return lines


class Settings:
    """The machinery shared by :class:`TrainConfig` and :class:`SplitConfig`."""

    #: A one-line description of the section (the config reference shows it).
    section_help: ClassVar[str] = ""
    #: How errors name the settings (``TrainConfig.lr``, ``split.test``).
    error_prefix: ClassVar[str] = ""

    @classmethod
    def field_messages(cls) -> dict[str, str]:
        """Each field's own message for a value out of its range (where it has one)."""
        return {
            f.name: f.metadata["message"]
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            if f.metadata.get("message")
        }

    @classmethod
    def field_help(cls) -> dict[str, str]:
        """Each field's meaning."""
        return {f.name: f.metadata["help"] for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    @classmethod
    def resumable_fields(cls) -> tuple[str, ...]:
        """The fields a resumed run may change (they do not change what it computes)."""
        return tuple(
            f.name
            for f in dataclasses.fields(cls)  # type: ignore[arg-type]
            if f.metadata.get("resumable")
        )

    @classmethod
    def cross_checks(cls, values: Mapping[str, Any]) -> None:
        """Rules between fields; raise ``ValueError`` naming the fields."""

    @classmethod
    @functools.cache
    def schema_model(cls, base: type[BaseModel] | None = None) -> type[BaseModel]:
        """The pydantic model that validates this class's fields (the YAML section).

        ``base`` gives the model a base class (the config's sections refuse unknown keys with
        the closest one suggested); by default unknown keys are simply forbidden."""
        hints = typing.get_type_hints(cls, include_extras=True)
        fields: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            annotation = _field_type(hints[f.name], f.metadata.get("constraints", {}))
            fields[f.name] = (annotation, Field(default=f.default, description=f.metadata["help"]))
        checks = cls.cross_checks

        def _cross(self: BaseModel) -> BaseModel:
            checks(self.model_dump())
            return self

        validators = {"_cross": model_validator(mode="after")(_cross)}
        kwargs: dict[str, Any] = {
            "__doc__": cls.section_help,
            "__validators__": validators,
            "__module__": cls.__module__,
        }
        if base is None:
            kwargs["__config__"] = ConfigDict(extra="forbid")
        else:
            kwargs["__base__"] = base
        return create_model(f"{cls.__name__}Schema", **kwargs, **fields)

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        try:
            model = self.schema_model().model_validate(values)
        except ValidationError as exc:
            cls = type(self)
            lines = format_validation_error(
                exc, cls.error_prefix or cls.__name__, cls.field_messages()
            )
            raise ConfigError("; ".join(lines)) from None
        for name in values:  # normalised values (lists of choices become tuples, ...)
            object.__setattr__(self, name, getattr(model, name))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str | None = None) -> Self:
        """Build from a mapping (a config section); an unknown key is refused by name, with
        the closest known key suggested."""
        where = where or cls.__name__
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        for key in values:
            if key not in names:
                raise ConfigError(f"{where}.{key}: unknown key{did_you_mean(str(key), names)}")
        return cls(**dict(values))

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON-ready values (tuples as lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (checked like a new one)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


Tracker = Literal["tensorboard", "mlflow", "wandb"]


@dataclass(frozen=True, kw_only=True)
class TrainConfig(Settings):
    """How the fine-tune engine trains.

    ``batch_size`` is the global batch (split over processes); ``grad_accum_steps`` batches make
    one optimiser step. ``monitor`` is ``"loss"`` (validation loss) or a registered metric,
    whose spec says whether higher or lower is better (``monitor_mode`` overrides it).
    """

    section_help: ClassVar[str] = (
        "How the fine-tune engine trains (`lepton_platform.settings.TrainConfig`, field for field)."
    )

    epochs: int = setting(3, "passes over the training data", ge=1)
    batch_size: int = setting(32, "global batch size, split over the processes", ge=1)
    eval_batch_size: int | None = setting(
        None, "batch size of validation and prediction (default: batch_size)", ge=1
    )
    optimizer: Literal["adamw", "sgd"] = setting("adamw", "the optimiser: adamw or sgd")
    lr: float = setting(1e-3, "learning rate (the peak, after warm-up)", gt=0)
    weight_decay: float = setting(
        0.0, "decoupled weight decay of matrices and kernels (never of biases or norms)", ge=0
    )
    momentum: float = setting(0.9, "momentum of sgd", ge=0)
    scheduler: Literal["constant", "linear", "cosine"] = setting(
        "linear", "learning-rate schedule after warm-up: constant, linear or cosine decay"
    )
    warmup_ratio: float = setting(
        0.0, "share of the optimiser steps spent warming up linearly", ge=0, lt=1
    )
    warmup_steps: int | None = setting(
        None, "warm-up steps (wins over warmup_ratio when given)", ge=0
    )
    grad_accum_steps: int = setting(1, "batches accumulated into one optimiser step", ge=1)
    max_grad_norm: float | None = setting(
        1.0, "clip the gradient norm to this value (null: no clipping)", gt=0
    )
    mixed_precision: Literal["no", "fp16", "bf16", "auto"] = setting(
        "no", "no, fp16, bf16, or auto (bf16 on a GPU that supports it, else full precision)"
    )
    matmul_precision: Literal["auto", "highest", "high", "medium"] = setting(
        "auto",
        "torch.set_float32_matmul_precision while training; auto: medium on a CPU where a "
        "start-up probe shows it faster at float32-level error, high (TF32) on a GPU, else "
        "highest",
    )
    channels_last: bool | Literal["auto"] = setting(
        "auto",
        "store 4-d weights and inputs channels-last; auto: for convolutional models, the "
        "layout a short timed probe finds faster (remembered per model, input shape, machine)",
    )
    compile: bool = setting(
        False, "train through torch.compile (a compile first; no faster on the CPUs measured)"
    )
    early_stopping_patience: int | None = setting(
        None, "stop after this many epochs without a better validation score", ge=1
    )
    monitor: str = setting(
        "loss",
        "what chooses the best epoch: loss (validation loss) or a metric name",
        min_length=1,
    )
    monitor_mode: Literal["auto", "min", "max"] = setting(
        "auto", "auto (loss: lower is better; a metric: as its spec says), min or max"
    )
    seed: int = setting(0, "seed of initialisation, data order, augmentation and dropout", ge=0)
    checkpoint_every_steps: int | None = setting(
        None,
        "also checkpoint every this many optimiser steps (null: at epoch ends only)",
        resumable=True,
        ge=1,
    )
    keep_checkpoints: int | None = setting(
        2, "checkpoints kept (the newest); null keeps all", resumable=True, ge=1
    )
    num_workers: int = setting(0, "data-loader worker processes", resumable=True, ge=0)
    log_every_steps: int = setting(
        10, "write a step record to metrics.jsonl every this many steps", resumable=True, ge=1
    )
    progress: bool = setting(True, "show progress bars", resumable=True)
    trackers: tuple[Tracker, ...] | Literal["auto"] = setting(
        (),
        "experiment trackers to switch on: tensorboard, mlflow, wandb (none by default; auto: "
        "those installed); MLflow logs into the run folder unless MLFLOW_TRACKING_URI is set, "
        "wandb offline into it unless WANDB_MODE is set",
        resumable=True,
    )
    keep_checkpoints_after_run: bool = setting(
        False,
        "keep the optimiser state and mid-run checkpoints once the run has finished (they are "
        "removed by default: the model folder holds the trained model)",
        resumable=True,
    )
    sampler: Literal["shuffle", "balanced"] = setting(
        "shuffle",
        "shuffle (each example once per epoch) or balanced (each class equally often)",
    )
    group_by_length: bool = setting(
        True,
        "batch examples of similar length together (text, speech: less padding)",
    )


@dataclass(frozen=True)
class SplitConfig(Settings):
    """How to split data that comes without (some of) its splits: seeded, stratified, and
    group-aware when a ``group`` column exists (no group in two splits). ``test=0`` makes
    train and validation only, for runs whose test data come from elsewhere (the test split
    is then empty and nothing is evaluated on it)."""

    section_help: ClassVar[str] = "How data without splits is split (seeded, stratified)."
    error_prefix: ClassVar[str] = "split"

    validation: float = setting(
        0.15, "share of the rows for validation", gt=0, lt=1,
        message="must be a fraction between 0 and 1",
    )  # fmt: skip
    test: float = setting(
        0.15, "share of the rows for test (0: train and validation only, no test split)",
        ge=0, lt=1, message="must be a fraction from 0 (no test split) up to 1",
    )  # fmt: skip
    seed: int = setting(0, "seed of the split", ge=0)
    stratify: bool = setting(True, "keep the class proportions in every split")
    by_group: bool | None = setting(
        None, "keep every group in one split (null: when a group column exists)"
    )

    @classmethod
    def cross_checks(cls, values: Mapping[str, Any]) -> None:
        if values["validation"] + values["test"] >= 1:
            raise ValueError(
                "validation + test must leave rows for training, got "
                f"{values['validation']} + {values['test']} >= 1"
            )


def resolve(
    cls: type[Settings],
    value: Settings | Mapping[str, Any] | None,
    where: str,
) -> Any:
    """``value`` as an instance of ``cls``: itself, built from a mapping, or the defaults."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        return cls.from_mapping(value, where)
    raise ConfigError(
        f"{where}: expected a {cls.__name__} or a mapping, got {type(value).__name__}"
    )
