"""``lora``, ``ia3`` and ``bitfit``: parameter-efficient transfer. The pretrained backbone stays
as it is; small added or chosen parameters train, with the head.

``lora`` (Hu et al. 2022) and ``ia3`` (Liu et al. 2022) are the ``peft`` library's adapters,
injected into the backbone's layers in place (``peft.get_peft_model`` on the
:class:`~lepton_platform.models.TransferModel`, the head as peft's ``modules_to_save``), trained
through the fine-tune engine like any strategy, then merged into the weights
(``merge_and_unload``): the saved model is an ordinary Lepton model, loaded and applied without
``peft``. With ``save_adapter`` (the default) the adapter alone is kept beside the merged
weights, in peft's own format (``adapter_config.json``, ``adapter_model.safetensors``), with the
fingerprint of the base weights it was trained on; :func:`load_adapter` puts it back on those
base weights with ``peft.PeftModel.from_pretrained`` and refuses other weights.

``bitfit`` (Ben Zaken et al. 2022) trains only the bias terms of the backbone, with the head.

Each composes with what the other strategies do: ``probe=True`` fits the head by a linear probe
on cached features first (LP-FT: probe, then the adapter); ``alphas`` sweeps the WiSE-FT
interpolation between the pretrained model (with the probed head) and the trained one, on the
validation split (for LoRA the merged delta is scaled: ``W + alpha * s * B A``); ``layer_decay``
and ``head_lr`` set learning rates per layer group and for the head; training runs in the one
fine-tune engine, so resume and several processes work as for ``finetune``.

Which layers get an adapter: by default every ``Linear`` and ``Conv2d`` inside the backbone's
layer groups but the first (the input side: embeddings, a stem, a convolutional feature
encoder); ``groups`` names other layer groups, ``target_modules`` module-name patterns (a name
matches a pattern equal to it, ending with ``.pattern``, or matching it as a regular
expression; names are relative to the backbone, as ``backbone.named_modules()`` gives them).
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lepton_platform.engine.callbacks import KeepFrozenBatchNormInEval
from lepton_platform.engine.features import weights_fingerprint
from lepton_platform.errors import ArtifactError, ConfigError
from lepton_platform.models import Backbone, LayerGroup, TransferModel
from lepton_platform.strategies.base import (
    Strategy,
    TransferJob,
    TransferOutcome,
    check_range,
    layerwise_param_groups,
    set_requires_grad,
)

if TYPE_CHECKING:
    from lepton_platform.engine.finetune import FitResult

__all__ = [
    "ADAPTER_FOLDER",
    "ADAPTER_RECORD",
    "IA3",
    "AdapterOutcome",
    "BitFit",
    "LoRA",
    "SavedAdapter",
    "load_adapter",
    "write_adapter",
]

#: The adapter's folder inside a saved model folder, and the record Lepton writes into it.
ADAPTER_FOLDER = "adapter"
ADAPTER_RECORD = "lepton-adapter.json"
#: The files of peft's format that are kept (``save_pretrained`` also writes a README).
PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")
#: Layer types given an adapter when no ``target_modules`` are named.
DEFAULT_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)
_HEAD = "head"
_ADAPTER_NAME = "default"


def _needs_peft(strategy: str) -> Any:
    try:
        import peft
    except ImportError as exc:  # peft is a dependency of lepton-platform; a broken install
        raise ConfigError(
            f"strategy {strategy!r} trains a peft adapter, and peft cannot be imported ({exc}): "
            "pip install 'peft>=0.13'"
        ) from None
    return peft


def _conv1d_type() -> tuple[type[nn.Module], ...]:
    """transformers' ``Conv1D`` (GPT-2's linear layers), when transformers is installed."""
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:
        return ()
    return (Conv1D,)


def supported_types(method: str) -> tuple[type[nn.Module], ...]:
    """The layer types peft's ``method`` adapts (peft 0.13 and later)."""
    if method == "lora":
        return (
            nn.Linear,
            nn.Embedding,
            nn.Conv1d,
            nn.Conv2d,
            nn.Conv3d,
            nn.MultiheadAttention,
            *_conv1d_type(),
        )
    return (nn.Linear, nn.Conv2d, nn.Conv3d, *_conv1d_type())


def matches(pattern: str, name: str) -> bool:
    """peft's rule for a module-name pattern: the name itself, a ``.``-suffix of the name, or a
    regular expression matching the whole name."""
    if name == pattern or name.endswith("." + pattern):
        return True
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


def _collapsed(names: Iterable[tuple[str, str]], limit: int = 60) -> str:
    """``model.encoder.layer.*.attention.self.query (Linear), ...``: module names with their
    layer numbers collapsed, each name and type once."""
    seen: dict[tuple[str, str], None] = {}
    for name, kind in names:
        shape = re.sub(r"(?<=\.)\d+(?=\.|$)", "*", name) or "(the backbone itself)"
        seen.setdefault((shape, kind), None)
    shown = [f"{shape} ({kind})" for shape, kind in seen]
    more = f", and {len(shown) - limit} more" if len(shown) > limit else ""
    return ", ".join(shown[:limit]) + more


def _patterns(strategy: str, key: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Sequence) or not items or not all(isinstance(p, str) for p in items):
        raise ConfigError(
            f"strategy {strategy!r}: {key} must be a module-name pattern or a non-empty list of "
            f"them, got {value!r}"
        )
    for pattern in items:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(
                f"strategy {strategy!r}: {key} pattern {pattern!r} is not a valid regular "
                f"expression ({exc})"
            ) from None
    return [str(p) for p in items]


def _names(strategy: str, key: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ConfigError(f"strategy {strategy!r}: {key} must be a non-empty list, got {value!r}")
    return [str(v) for v in value]


def _count(params: Iterable[nn.Parameter]) -> int:
    return sum(p.numel() for p in params)


# -- what a strategy hands the application layer to save ---------------------------------------


@dataclass(frozen=True)
class SavedAdapter:
    """An adapter in peft's format, held in memory until the model folder is written:
    ``files`` (name -> bytes: ``adapter_config.json``, ``adapter_model.safetensors``) and the
    ``record`` Lepton keeps of it (method, peft version, adapted modules, the base weights'
    fingerprint)."""

    files: Mapping[str, bytes]
    record: Mapping[str, Any]

    def full_record(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The record with ``extra`` (the backbone and pretrained weights it was trained on)
        and each file's SHA-256: what the manifest and ``lepton-adapter.json`` hold."""
        import hashlib

        return {
            **dict(self.record),
            **dict(extra or {}),
            "files": {name: hashlib.sha256(data).hexdigest() for name, data in self.files.items()},
        }


@dataclass
class AdapterOutcome(TransferOutcome):
    """A :class:`TransferOutcome` whose model holds merged weights, with the adapter that was
    merged (``None`` when it is not to be saved)."""

    adapter: SavedAdapter | None = field(default=None, repr=False)


def write_adapter(
    folder: str | Path, adapter: SavedAdapter, record: Mapping[str, Any] | None = None
) -> Path:
    """Write ``adapter`` as one folder (written whole or not at all): peft's files and
    ``lepton-adapter.json`` (``record``, by default :meth:`SavedAdapter.full_record`)."""
    from lepton_platform._io import AtomicFolder

    target = Path(folder).expanduser().absolute()
    content = dict(record) if record is not None else adapter.full_record()
    try:
        with AtomicFolder(target) as tmp:
            for name, data in adapter.files.items():
                (tmp.path / name).write_bytes(data)
            text = json.dumps(content, indent=2, sort_keys=True, allow_nan=False) + "\n"
            (tmp.path / ADAPTER_RECORD).write_text(text, encoding="utf-8")
            tmp.commit()
    except OSError as exc:
        raise ArtifactError(f"cannot write the adapter to {target}: {exc}") from exc
    return target


def read_adapter_record(folder: str | Path) -> tuple[Path, dict[str, Any]]:
    """The adapter folder (``folder`` itself, or ``folder/adapter`` for a model folder) and
    its record, every file's SHA-256 checked."""
    from lepton_platform._io import sha256_file

    path = Path(folder).expanduser().absolute()
    if not (path / ADAPTER_RECORD).is_file() and (path / ADAPTER_FOLDER / ADAPTER_RECORD).is_file():
        path = path / ADAPTER_FOLDER
    record_path = path / ADAPTER_RECORD
    if not record_path.is_file():
        raise ArtifactError(
            f"{Path(folder)} holds no adapter ({ADAPTER_RECORD} is missing): the model was not "
            "trained by lora or ia3 with save_adapter, or the adapter folder was removed"
        )
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{record_path} is unreadable: {exc}") from None
    for name, digest in dict(record.get("files") or {}).items():
        file = path / str(name)
        if not file.is_file():
            raise ArtifactError(f"{file} is missing; the adapter folder is incomplete")
        if sha256_file(file) != digest:
            raise ArtifactError(
                f"{file} does not match the SHA-256 in {ADAPTER_RECORD}: it is corrupted or "
                "was replaced"
            )
    return path, record


def load_adapter(model: TransferModel, folder: str | Path, *, trainable: bool = False) -> Any:
    """The saved adapter of ``folder`` (a model folder or its ``adapter`` folder) put on
    ``model`` with ``peft.PeftModel.from_pretrained``: a ``PeftModel`` whose outputs are those
    of the merged model that was saved.

    ``model`` must be the base: the backbone with the pretrained weights the adapter was trained
    on (any head of the right shape: the trained head comes with the adapter). Other weights
    are refused, the recorded fingerprint and the pretrained weights named::

        >>> predictor = lp.load("runs/lora/model")                  # doctest: +SKIP
        >>> backbone = lp.create_backbone("all-minilm-l6-v2", pretrained=True)  # doctest: +SKIP
        >>> base = TransferModel(backbone, predictor.task.build_head(backbone.feature_dim))
        >>> peft_model = load_adapter(base, "runs/lora/model")      # doctest: +SKIP
    """
    path, record = read_adapter_record(folder)
    wanted = record.get("base_fingerprint")
    have = weights_fingerprint(model.backbone)
    if wanted != have:
        base = record.get("base") or {}
        raise ArtifactError(
            f"the adapter in {path} was trained on base weights with fingerprint {wanted} "
            f"(backbone {base.get('backbone')!r}, pretrained {base.get('pretrained')!r}); the "
            f"backbone it is loaded onto has fingerprint {have}: it would give other outputs "
            "than the saved model. Build the base from the pretrained weights it was trained on"
        )
    peft = _needs_peft(str(record.get("method", "adapter")))
    return peft.PeftModel.from_pretrained(model, str(path), is_trainable=trainable)


# -- the strategies ---------------------------------------------------------------------------


class _ParameterEfficient(Strategy):
    """What the three share: the optional probe first (LP-FT), the parameter groups, the
    training stage, the WiSE-FT sweep and the record of what trained."""

    needs_pretrained = True
    #: The layer groups trained by default: all but the input-side one (``False``: all).
    skip_input_group = True

    def __init__(
        self,
        *,
        groups: Sequence[str] | None,
        lr: float | None,
        head_lr: float | None,
        layer_decay: float,
        probe: bool,
        alphas: Sequence[float] | None,
    ) -> None:
        name = self.name
        self.groups = _names(name, "groups", groups)
        self.lr = None if lr is None else check_range(name, "lr", lr, 1e-9, 10.0)
        self.head_lr = (
            None if head_lr is None else check_range(name, "head_lr", head_lr, 1e-9, 10.0)
        )
        self.layer_decay = check_range(name, "layer_decay", layer_decay, 1e-6, 1.0)
        if not isinstance(probe, bool):
            raise ConfigError(f"strategy {name!r}: probe must be true or false, got {probe!r}")
        self.probe = probe
        if alphas is None:
            self.alphas: list[float] | None = None
        else:
            if isinstance(alphas, str) or not isinstance(alphas, Sequence) or not alphas:
                raise ConfigError(
                    f"strategy {name!r}: alphas must be a non-empty list, got {alphas!r}"
                )
            self.alphas = sorted({check_range(name, "alpha", a, 0.0, 1.0) for a in alphas})
            if not probe:
                raise ConfigError(
                    f"strategy {name!r}: alphas interpolate from theta_0, the pretrained backbone "
                    "with a linear-probed head (WiSE-FT); set probe: true with them"
                )

    def config(self) -> dict[str, Any]:
        return {
            "groups": self.groups,
            "lr": self.lr,
            "head_lr": self.head_lr,
            "layer_decay": self.layer_decay,
            "probe": self.probe,
            "alphas": self.alphas,
        }

    # -- which parts ------------------------------------------------------------------------

    def _groups(self, backbone: Backbone) -> list[LayerGroup]:
        groups = backbone.layer_groups()
        if not groups:
            raise ConfigError(
                f"strategy {self.name!r}: backbone {_label(backbone)} has no layer groups, so "
                "there is nothing to adapt"
            )
        if self.groups is not None:
            names = {g.name for g in groups}
            missing = [n for n in self.groups if n not in names]
            if missing:
                raise ConfigError(
                    f"strategy {self.name!r}: layer group(s) {missing} do not exist in backbone "
                    f"{_label(backbone)}; it has {list(names)}"
                )
            return [g for g in groups if g.name in set(self.groups)]
        if self.skip_input_group and len(groups) > 1:
            return groups[1:]
        return groups

    def _group_modules(self, backbone: Backbone) -> list[tuple[str, nn.Module]]:
        """``(name, module)`` for every module inside the chosen layer groups (names relative
        to the backbone)."""
        names = {id(m): n for n, m in backbone.named_modules()}
        out: dict[str, nn.Module] = {}
        for group in self._groups(backbone):
            for top in group.modules:
                for module in top.modules():
                    name = names.get(id(module))
                    if name is not None:
                        out.setdefault(name, module)
        return list(out.items())

    # -- training ---------------------------------------------------------------------------

    def check_job(self, job: TransferJob) -> None:
        super().check_job(job)
        if self.alphas is not None and job.validation is None:
            raise ConfigError(
                f"strategy {self.name!r} chooses alpha on a validation split (alphas), and "
                "the job has none; give one or leave alphas out"
            )

    def _attach(self, model: TransferModel) -> _Attached:
        """Make the trained parts trainable (and everything else frozen)."""
        raise NotImplementedError

    def run(self, job: TransferJob) -> TransferOutcome:
        from lepton_platform.strategies.probe import LinearProbe

        model = job.model
        base_fingerprint = weights_fingerprint(model.backbone)
        backbone_parameters = _count(model.backbone.parameters())
        details: dict[str, Any] = {"method": self.name}
        if self.probe:
            details["probe"] = LinearProbe().run(job).details
        set_requires_grad(model.parameters(), False)
        torch.manual_seed(job.config.seed)  # the adapter's initial weights, the same on resume
        attached = self._attach(model)
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        initial = {n: p.detach().clone() for n, p in trainable}
        trained = _count(p for _, p in trainable)
        lr = self.lr if self.lr is not None else job.config.lr
        config = job.with_config(lr=lr)
        groups = layerwise_param_groups(model, lr, self.layer_decay, config.weight_decay)
        if self.head_lr is not None:
            for group in groups:
                if group["name"].split(".")[0] == _HEAD:
                    group["lr"] = self.head_lr
        covered = {id(p) for group in groups for p in group["params"]}
        outside = [p for _, p in trainable if id(p) not in covered]
        if outside:  # a target_modules pattern named a module outside the layer groups
            groups.append(
                {"params": outside, "lr": lr, "weight_decay": 0.0, "name": "outside-groups"}
            )
        trainer = job.trainer(
            config=config,
            param_groups=groups,
            callbacks=[KeepFrozenBatchNormInEval()],
            stage="adapter",
        )
        fit: FitResult = trainer.fit(job.train, job.validation, job.preprocessor)
        if self.alphas is not None:
            details.update(self._sweep(job, dict(trainable), initial))
        details.update(
            {
                "trainable_parameters": trained,
                "backbone_parameters": backbone_parameters,
                "trainable_share": trained / max(backbone_parameters, 1),
                "base_fingerprint": base_fingerprint,
                **attached.details,
            }
        )
        saved = attached.saved(
            {
                "method": self.name,
                "base_fingerprint": base_fingerprint,
                "trainable_parameters": trained,
                "alpha": details.get("alpha", 1.0),
            }
        )
        attached.merge()
        return AdapterOutcome(
            model=model, history=list(fit.history), fit=fit, details=details, adapter=saved
        )

    def _sweep(
        self,
        job: TransferJob,
        trainable: Mapping[str, nn.Parameter],
        initial: Mapping[str, torch.Tensor],
    ) -> dict[str, Any]:
        """WiSE-FT over what trained: each parameter at ``t0 + alpha * (t1 - t0)`` but LoRA's
        ``A`` matrices, kept as trained (``B`` starts at 0, so the merged delta is scaled by
        alpha exactly; IA3's vectors start at 1 and biases at theta_0, so theirs is too). The
        best alpha on validation is kept; every one is reported."""
        assert self.alphas is not None
        final = {n: p.detach().clone() for n, p in trainable.items()}
        model = job.model

        def place(alpha: float) -> None:
            with torch.no_grad():
                for name, param in trainable.items():
                    if _is_lora_a(name):
                        continue
                    start = initial[name].to(param.device)
                    param.copy_(start + alpha * (final[name].to(param.device) - start))

        sweep: list[dict[str, float]] = []
        for alpha in self.alphas:
            place(alpha)
            score = job.score(model)
            value = score if job.monitor is None or job.monitor.higher_is_better else -score
            sweep.append({"alpha": alpha, "validation_score": score, "value": value})
        best = max(sweep, key=lambda row: (row["validation_score"], row["alpha"]))
        place(best["alpha"])
        return {"alpha": best["alpha"], "sweep": sweep, "chosen_on": "validation"}


def _is_lora_a(name: str) -> bool:
    return ".lora_A." in name or ".lora_embedding_A." in name


def _label(backbone: Backbone) -> str:
    kind = type(backbone).__name__
    return f"{backbone.registered_name!r} ({kind})" if backbone.registered_name else kind


class _Attached:
    """The trained parts as attached to the model: how to save and merge them."""

    details: dict[str, Any]

    def __init__(self, details: dict[str, Any] | None = None) -> None:
        self.details = dict(details or {})

    def saved(self, record: Mapping[str, Any]) -> SavedAdapter | None:
        return None

    def merge(self) -> None:
        pass


class _PeftAttached(_Attached):
    def __init__(self, peft_model: Any, details: dict[str, Any], save: bool) -> None:
        super().__init__(details)
        self.peft_model = peft_model
        self.save = save

    def saved(self, record: Mapping[str, Any]) -> SavedAdapter | None:
        if not self.save:
            return None
        import peft

        with tempfile.TemporaryDirectory(prefix="lepton-adapter-") as tmp:
            self.peft_model.save_pretrained(tmp)
            files = {name: (Path(tmp) / name).read_bytes() for name in PEFT_FILES}
        full = {
            **dict(record),
            "format": "peft",
            "peft_version": peft.__version__,
            "peft_type": self.details.get("peft_type"),
            "target_modules": self.details.get("adapted_modules"),
        }
        return SavedAdapter(files=files, record=full)

    def merge(self) -> None:
        self.peft_model.merge_and_unload()


class _PeftStrategy(_ParameterEfficient):
    """``lora`` and ``ia3``: choose the modules, inject peft's layers, merge them after."""

    method = "lora"

    def __init__(
        self,
        *,
        target_modules: Any,
        save_adapter: bool,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self.target_modules = _patterns(self.name, "target_modules", target_modules)
        if not isinstance(save_adapter, bool):
            raise ConfigError(
                f"strategy {self.name!r}: save_adapter must be true or false, got {save_adapter!r}"
            )
        self.save_adapter = save_adapter

    def config(self) -> dict[str, Any]:
        return {
            "target_modules": self.target_modules,
            "save_adapter": self.save_adapter,
            **super().config(),
        }

    def targets(self, backbone: Backbone) -> list[str]:
        """The names (relative to the backbone) of the modules that get an adapter; a
        ConfigError when a pattern matches none, or nothing can be adapted."""
        supported = supported_types(self.method)
        if self.target_modules is None:
            searched = self._group_modules(backbone)
            found = [n for n, m in searched if isinstance(m, DEFAULT_TYPES)]
            if not found:
                raise ConfigError(
                    f"strategy {self.name!r}: backbone {_label(backbone)} cannot be adapted by "
                    f"peft's {self.method}: its layer groups "
                    f"{[g.name for g in self._groups(backbone)]} hold no Linear or Conv2d layer "
                    f"(searched: {_collapsed((n, type(m).__name__) for n, m in searched)}). Name "
                    "layers of a type peft supports in target_modules, or use another strategy"
                )
            return found
        searched = (
            list(backbone.named_modules()) if self.groups is None else self._group_modules(backbone)
        )
        searched = [(n, m) for n, m in searched if n]
        chosen: dict[str, None] = {}
        for pattern in self.target_modules:
            hits = [(n, m) for n, m in searched if matches(pattern, n)]
            if not hits:
                raise ConfigError(
                    f"strategy {self.name!r}: target_modules pattern {pattern!r} matches no "
                    f"module of backbone {_label(backbone)} (patterns {self.target_modules}); "
                    f"the module names searched: "
                    f"{_collapsed((n, type(m).__name__) for n, m in searched)}"
                )
            usable = [n for n, m in hits if isinstance(m, supported)]
            if not usable:
                raise ConfigError(
                    f"strategy {self.name!r}: target_modules pattern {pattern!r} matches only "
                    f"layers peft's {self.method} cannot adapt: "
                    f"{_collapsed((n, type(m).__name__) for n, m in hits)}; it adapts "
                    f"{', '.join(t.__name__ for t in supported)}"
                )
            chosen.update(dict.fromkeys(usable))
        return list(chosen)

    def check(self, model: TransferModel, *, pretrained: bool) -> None:
        super().check(model, pretrained=pretrained)
        self.targets(model.backbone)
        clash = [
            name
            for name, _ in model.named_modules()
            if name != _HEAD and name.endswith(_HEAD) and not name.startswith(_HEAD + ".")
        ]
        if clash:
            raise ConfigError(
                f"strategy {self.name!r}: peft keeps the head trainable by matching module names "
                f"that end with {_HEAD!r}, and backbone {_label(model.backbone)} has such "
                f"modules too ({clash[:5]}): they would be trained and saved as well"
            )

    def peft_config(self, targets: list[str], backbone: Backbone) -> Any:
        raise NotImplementedError

    def _attach(self, model: TransferModel) -> _Attached:
        peft = _needs_peft(self.name)
        targets = self.targets(model.backbone)
        config = self.peft_config([f"backbone.{n}" for n in targets], model.backbone)
        try:
            peft_model = peft.get_peft_model(model, config)
        except (ValueError, TypeError, NotImplementedError) as exc:
            raise ConfigError(
                f"strategy {self.name!r}: peft could not adapt backbone {_label(model.backbone)}: "
                f"{exc}"
            ) from exc
        details = {
            "peft_type": str(getattr(config.peft_type, "value", config.peft_type)),
            "adapted_modules": targets,
            "adapted_layers": len(targets),
        }
        return _PeftAttached(peft_model, details, self.save_adapter)


class LoRA(_PeftStrategy):
    """LoRA (Hu et al. 2022): every adapted layer ``W`` learns a low-rank update
    ``W + (alpha / rank) * B A`` (``B`` starts at zero), the pretrained ``W`` frozen. A fraction
    of a percent of the parameters trains; the merged model is as fast as the original. Good
    when the target data are few to moderate and the backbone is large."""

    name = "lora"
    method = "lora"

    def __init__(
        self,
        rank: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.0,
        target_modules: str | Sequence[str] | None = None,
        groups: Sequence[str] | None = None,
        lr: float | None = None,
        head_lr: float | None = None,
        layer_decay: float = 1.0,
        probe: bool = False,
        alphas: Sequence[float] | None = None,
        save_adapter: bool = True,
    ) -> None:
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ConfigError(f"strategy 'lora': rank must be an integer >= 1, got {rank!r}")
        self.rank = rank
        self.alpha = check_range("lora", "alpha", alpha, 1e-6, 1e6)
        self.dropout = check_range("lora", "dropout", dropout, 0.0, 0.99)
        super().__init__(
            target_modules=target_modules,
            save_adapter=save_adapter,
            groups=groups,
            lr=lr,
            head_lr=head_lr,
            layer_decay=layer_decay,
            probe=probe,
            alphas=alphas,
        )

    def peft_config(self, targets: list[str], backbone: Backbone) -> Any:
        from peft import LoraConfig

        return LoraConfig(
            r=self.rank,
            lora_alpha=self.alpha,  # type: ignore[arg-type]  # annotated int; peft divides it
            lora_dropout=self.dropout,
            target_modules=targets,
            modules_to_save=[_HEAD],
            bias="none",
        )

    def config(self) -> dict[str, Any]:
        return {"rank": self.rank, "alpha": self.alpha, "dropout": self.dropout, **super().config()}


class IA3(_PeftStrategy):
    """IA3 (Liu et al. 2022): learned vectors rescale the outputs of the adapted layers (the
    inputs of those named ``feedforward_modules``), starting at 1. Fewer trainable parameters
    than LoRA still; merged into the weights after training."""

    name = "ia3"
    method = "ia3"

    def __init__(
        self,
        target_modules: str | Sequence[str] | None = None,
        feedforward_modules: str | Sequence[str] | None = None,
        groups: Sequence[str] | None = None,
        lr: float | None = None,
        head_lr: float | None = None,
        layer_decay: float = 1.0,
        probe: bool = False,
        alphas: Sequence[float] | None = None,
        save_adapter: bool = True,
    ) -> None:
        self.feedforward_modules = _patterns("ia3", "feedforward_modules", feedforward_modules)
        super().__init__(
            target_modules=target_modules,
            save_adapter=save_adapter,
            groups=groups,
            lr=lr,
            head_lr=head_lr,
            layer_decay=layer_decay,
            probe=probe,
            alphas=alphas,
        )

    def feedforward(self, backbone: Backbone) -> list[str]:
        """The adapted modules whose inputs (not outputs) are rescaled."""
        if self.feedforward_modules is None:
            return []
        targets = self.targets(backbone)
        chosen: dict[str, None] = {}
        for pattern in self.feedforward_modules:
            hits = [n for n in targets if matches(pattern, n)]
            if not hits:
                raise ConfigError(
                    f"strategy 'ia3': feedforward_modules pattern {pattern!r} matches none of "
                    f"the adapted modules of backbone {_label(backbone)}: "
                    f"{_collapsed((n, 'adapted') for n in targets)}"
                )
            chosen.update(dict.fromkeys(hits))
        return list(chosen)

    def check(self, model: TransferModel, *, pretrained: bool) -> None:
        super().check(model, pretrained=pretrained)
        self.feedforward(model.backbone)

    def peft_config(self, targets: list[str], backbone: Backbone) -> Any:
        from peft import IA3Config

        return IA3Config(
            target_modules=targets,
            feedforward_modules=[f"backbone.{n}" for n in self.feedforward(backbone)],
            modules_to_save=[_HEAD],
        )

    def config(self) -> dict[str, Any]:
        return {**super().config(), "feedforward_modules": self.feedforward_modules}


class BitFit(_ParameterEfficient):
    """BitFit (Ben Zaken et al. 2022): only the bias terms of the backbone train, with the head
    (a tenth of a percent of a transformer's parameters). Needs no library and nothing to
    merge; every layer group by default."""

    name = "bitfit"
    skip_input_group = False

    def __init__(
        self,
        groups: Sequence[str] | None = None,
        lr: float | None = None,
        head_lr: float | None = None,
        layer_decay: float = 1.0,
        probe: bool = False,
        alphas: Sequence[float] | None = None,
    ) -> None:
        super().__init__(
            groups=groups,
            lr=lr,
            head_lr=head_lr,
            layer_decay=layer_decay,
            probe=probe,
            alphas=alphas,
        )

    def biases(self, backbone: Backbone) -> list[tuple[str, nn.Parameter]]:
        """The bias parameters inside the chosen layer groups (names relative to the
        backbone)."""
        chosen = {id(p) for g in self._groups(backbone) for p in g.parameters()}
        return [
            (n, p)
            for n, p in backbone.named_parameters()
            if id(p) in chosen and n.rsplit(".", 1)[-1] == "bias"
        ]

    def check(self, model: TransferModel, *, pretrained: bool) -> None:
        super().check(model, pretrained=pretrained)
        if not self.biases(model.backbone):
            raise ConfigError(
                f"strategy 'bitfit': backbone {_label(model.backbone)} has no bias terms in the "
                f"layer groups {[g.name for g in self._groups(model.backbone)]}"
            )

    def _attach(self, model: TransferModel) -> _Attached:
        biases = self.biases(model.backbone)
        set_requires_grad((p for _, p in biases), True)
        set_requires_grad(model.head.parameters(), True)
        return _Attached({"trained_biases": len(biases)})
