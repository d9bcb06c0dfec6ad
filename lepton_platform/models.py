"""The model layer's contracts: what a backbone is, what its preprocessing is, and the
backbone-plus-head model that the engines train.

A backbone maps a batch to pooled features ``(batch, feature_dim)``. It says its ordered layer
groups (input side first: freezing schedules and layer-wise learning rates walk them) and its
preprocessing. Plugins subclass :class:`Backbone` and :class:`Preprocessor`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from lepton_platform.errors import LeptonError

__all__ = [
    "Backbone",
    "ExportInputs",
    "ExportUnsupported",
    "HubExport",
    "LayerGroup",
    "LoadReport",
    "Preprocessor",
    "TransferModel",
    "config_fingerprint",
    "load_matching",
]

log = logging.getLogger("lepton_platform.models")


def config_fingerprint(config: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-ready mapping (cache keys, manifests)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class LayerGroup(NamedTuple):
    """A named, ordered part of a backbone (``stem``, ``layer1``, ``encoder.3``, ...)."""

    name: str
    modules: tuple[nn.Module, ...]

    def parameters(self) -> Iterator[nn.Parameter]:
        seen: set[int] = set()
        for module in self.modules:
            for param in module.parameters():
                if id(param) not in seen:
                    seen.add(id(param))
                    yield param


class Preprocessor(ABC):
    """A backbone's input pipeline, in three steps.

    - :meth:`transform` is deterministic (decode, resize, tokenise, resample) and runs through
      ``datasets.map(batched=True)``, so its result is cached and reused; it must be picklable.
    - :meth:`augment` is random, training only, applied per example when batches are drawn.
    - :meth:`collate` turns a list of transformed examples into a dict of tensors, the keyword
      arguments of :meth:`Backbone.forward` (dynamic padding belongs here).
    """

    #: Dataset columns ``transform`` reads (the domain's input columns).
    input_columns: tuple[str, ...] = ()
    #: Columns ``transform`` writes; ``collate`` reads them.
    output_columns: tuple[str, ...] = ()
    #: An output column holding each example's length (tokens, samples), or ``None``. When set,
    #: the fine-tune engine batches examples of similar length together in training, so that
    #: dynamic padding in ``collate`` pads little (``TrainConfig.group_by_length``).
    length_column: str | None = None

    @abstractmethod
    def transform(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """Map a batch of raw columns to the model's input columns (deterministic)."""

    def augment(self, example: dict[str, Any]) -> dict[str, Any]:
        """Random training-time augmentation of one transformed example (default: none)."""
        return example

    @abstractmethod
    def collate(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Batch transformed examples into tensors."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-ready description; it keys the preprocessing cache and goes in manifests."""

    def fingerprint(self) -> str:
        return config_fingerprint({"class": type(self).__qualname__, **self.config()})


@dataclass
class LoadReport:
    """What loading pretrained weights into a module did: the tensors that loaded (``adapted``
    ones changed shape on the way, such as a stem kernel), and those that did not: ``missing``
    (the module's, not in the weights: they keep their random init), ``unexpected`` (in the
    weights, not in the module: ignored) and ``mismatched`` (in both, other shapes).
    ``share`` is the part of the module's tensors that the weights filled."""

    source: str
    matched: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def share(self) -> float:
        loaded = [k for k in self.matched if not k.endswith("num_batches_tracked")]
        total = len(loaded) + len(self.missing)
        return len(loaded) / total if total else 0.0

    def summary(self) -> str:
        return (
            f"{self.source}: {len(self.matched)} tensors loaded ({self.share:.0%} of the "
            f"backbone's; {len(self.adapted)} adapted), {len(self.missing)} missing, "
            f"{len(self.unexpected)} unexpected, {len(self.mismatched)} with other shapes"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "loaded": len(self.matched),
            "share": round(self.share, 4),
            "adapted": list(self.adapted),
            "missing": list(self.missing),
            "unexpected": list(self.unexpected),
            "mismatched": [[k, list(a), list(b)] for k, a, b in self.mismatched],
        }


class ExportUnsupported(LeptonError):
    """A backbone cannot be exported in a format; the message says why (the export names the
    format and suggests the ones that work)."""


@dataclass(frozen=True)
class ExportInputs:
    """What tracing a backbone for ONNX or TorchScript needs.

    ``example`` is the batch the graph is traced with; ``check`` is a second batch whose
    dynamic axes have other sizes (the export is compared with the model on it, so a graph
    that baked a size in is caught); ``dynamic_axes`` names the dynamic axes of each input,
    ``{"input_ids": {0: "batch", 1: "sequence"}}``. The inputs are passed in the order of
    ``example``'s keys."""

    example: dict[str, torch.Tensor]
    check: dict[str, torch.Tensor]
    dynamic_axes: dict[str, dict[int, str]]


@dataclass(frozen=True)
class HubExport:
    """A backbone with a linear classifier in its own library's format (the Hugging Face
    format for a transformers encoder, a state dict for a torchvision network).

    ``write(folder)`` writes the files; ``load(folder)`` reads them back *through that library*
    and returns a function from a Lepton batch (the preprocessor's collated tensors) to
    logits, with which the export is checked; ``usage`` is a short Python example for the
    model card, with ``{path}`` where the folder goes; ``library`` names the library;
    ``check`` replaces the batch of :meth:`Backbone.export_inputs` it is checked on, when the
    library reads batches another way (without padding, say)."""

    library: str
    write: Callable[[Path], None]
    load: Callable[[Path], Callable[[Mapping[str, torch.Tensor]], torch.Tensor]]
    usage: str
    check: dict[str, torch.Tensor] | None = None


#: ``adapt(key, value, target)``: a loadable version of ``value`` for the module's ``target``
#: tensor of another shape, or ``None`` when it cannot be adapted.
Adapter = Callable[[str, torch.Tensor, torch.Tensor], torch.Tensor | None]


def load_matching(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str,
    adapt: Adapter | None = None,
) -> LoadReport:
    """Copy the tensors of ``state`` whose names and shapes match into ``module`` (``adapt``
    may reshape one that does not fit, such as a 7x7 RGB stem for a 3x3 grey one) and report
    what loaded and what did not. The module keeps its own values for everything else."""
    own = module.state_dict()
    report = LoadReport(source=source)
    loadable: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        target = own.get(key)
        if target is None:
            report.unexpected.append(key)
            continue
        if tuple(value.shape) == tuple(target.shape):
            loadable[key] = value
        else:
            adapted = adapt(key, value, target) if adapt is not None else None
            if adapted is None or tuple(adapted.shape) != tuple(target.shape):
                report.mismatched.append((key, tuple(target.shape), tuple(value.shape)))
                continue
            loadable[key] = adapted
            report.adapted.append(key)
        report.matched.append(key)
    report.missing = [  # batch-norm step counters are not weights: never called missing
        k for k in own if k not in loadable and not k.endswith("num_batches_tracked")
    ]
    with torch.no_grad():
        for key, value in loadable.items():
            own[key].copy_(value.to(own[key].dtype))
    log.info("%s", report.summary())
    return report


class Backbone(nn.Module, ABC):
    """Maps a batch (the keyword tensors from its preprocessor's ``collate``) to pooled
    features of shape ``(batch, feature_dim)``.

    A backbone built from pretrained weights sets :attr:`load_report` (what loaded): the
    application layer refuses one whose weights filled too little of it, and records it."""

    feature_dim: int
    #: What loading the pretrained weights did (``None``: built with random weights).
    load_report: LoadReport | None = None
    #: The registered name it was built under (``create_backbone`` sets it).
    registered_name: str = ""

    @abstractmethod
    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(batch, feature_dim)``."""

    @abstractmethod
    def layer_groups(self) -> list[LayerGroup]:
        """Ordered groups, input side first; together they hold every parameter exactly once."""

    @abstractmethod
    def preprocessor(self) -> Preprocessor:
        """The input pipeline matching this backbone and its weights."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-ready options such that ``spec.factory(pretrained=None, **config)`` rebuilds the
        same architecture (the weights then come from a saved state dict)."""

    @abstractmethod
    def example_batch(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """A random batch of the right shapes, for tests and shape checks."""

    # -- export hooks (``lepton export``); the defaults serve backbones with fixed-size inputs

    def export_inputs(self) -> ExportInputs:
        """Example inputs for ONNX and TorchScript and their dynamic axes. The default: two
        and three rows of :meth:`example_batch`, only the batch axis dynamic. A backbone whose
        inputs have a variable length (tokens, samples) overrides it to make that axis
        dynamic too."""
        example = self.example_batch(2)
        return ExportInputs(
            example=example,
            check=self.example_batch(3),
            dynamic_axes={name: {0: "batch"} for name in example},
        )

    def hub_export(
        self, classifier: nn.Linear, label_names: Sequence[str], *, multi_label: bool
    ) -> HubExport:
        """This backbone followed by ``classifier`` (the task's linear head) in its own
        library's format, with the label names in it (``lepton export --format hf``). The
        default refuses: a backbone with no such library counterpart raises
        :class:`ExportUnsupported` saying so."""
        raise ExportUnsupported(
            f"{type(self).__name__} has no counterpart in another library's model format"
        )

    def batchnorm_layers(self) -> list[_BatchNorm]:
        """The batch-norm layers (AdaBN re-estimates their statistics)."""
        return [m for m in self.modules() if isinstance(m, _BatchNorm)]

    def group_names(self) -> list[str]:
        return [g.name for g in self.layer_groups()]


class TransferModel(nn.Module):
    """A backbone with a task head on its pooled features: what the engines train and save."""

    def __init__(self, backbone: Backbone, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.backbone(**inputs))
        return logits
