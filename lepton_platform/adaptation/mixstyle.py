"""MixStyle (Zhou et al. 2021), cross-domain: mix the feature *style* of source and target.

In a convolutional network the per-instance, per-channel mean and standard deviation of a
feature map (over its spatial positions) carry much of the image's style (AdaIN). During
training, after chosen layer groups, MixStyle replaces a source instance's statistics by a
mixture with those of a target instance::

    x_norm = (x - mu_s) / sigma_s
    out    = x_norm * (lam sigma_s + (1 - lam) sigma_t) + (lam mu_s + (1 - lam) mu_t)

with ``lam ~ Beta(alpha, alpha)`` per instance (and per layer), so the classifier learns on
source content rendered in styles between the two domains. As in the authors' code, the
statistics are constants for the gradient (the source's as well as the target's) and the
variance is the unbiased one plus ``1e-6``.

Here the target statistics come from the unlabelled target: with probability ``p`` a training
batch is mixed; then a batch of the seeded target stream runs through the backbone first (no
gradient; in training mode, so that its batch-norm layers normalise with the target batch's
own statistics, their running statistics left as they were), its statistics are recorded
after each chosen layer, and the source batch's forward pass mixes them in. Source row ``i``
takes the statistics of target row ``i mod n_t`` (the target batch is already shuffled). The
hooks do nothing in evaluation mode or without gradients (validation, prediction, AdaBN), so
the trained model is an ordinary one.

Feature maps ``(N, C, H, W)`` and ``(N, C, L)`` (1-D convolutions) are supported: the output
of a layer group (of its last module) is a convolutional feature map when it has one of those
shapes and the group holds a convolution of that dimension with ``C`` output channels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.conv import _ConvNd

from lepton_platform.adaptation._common import TargetAdaptation, TargetStream, TargetTraining
from lepton_platform.errors import ConfigError
from lepton_platform.models import Backbone, TransferModel
from lepton_platform.strategies.base import TransferJob, check_range

__all__ = [
    "GroupOutput",
    "MixStyle",
    "StyleMixer",
    "group_outputs",
    "instance_statistics",
    "mix_statistics",
]

#: Added to the variance before the square root (the authors' value).
EPS = 1e-6


def instance_statistics(x: torch.Tensor, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-instance, per-channel mean and standard deviation of a feature map ``(N, C, ...)``
    over its spatial dimensions, shaped ``(N, C, 1, ...)`` to broadcast against it."""
    dims = tuple(range(2, x.ndim))
    mean = x.mean(dim=dims, keepdim=True)
    std = (x.var(dim=dims, keepdim=True) + eps).sqrt()
    return mean, std


def mix_statistics(
    x: torch.Tensor,
    target_mean: torch.Tensor,
    target_std: torch.Tensor,
    lam: torch.Tensor,
    eps: float = EPS,
) -> torch.Tensor:
    """``x`` ``(N, C, H, W)`` or ``(N, C, L)`` re-styled: each instance normalised by its own
    statistics, then scaled and shifted by ``lam`` times its own plus ``1 - lam`` times the
    target's (``target_mean``, ``target_std``: ``(N, C, 1, ...)``, one row per instance of
    ``x``; ``lam``: ``(N,)``). ``lam = 1`` gives ``x`` back; ``lam = 0`` gives the target's
    statistics. Computed in float32, returned in ``x``'s dtype."""
    if x.ndim not in (3, 4):
        raise ValueError(f"mix_statistics expects (N, C, H, W) or (N, C, L), got {x.shape}")
    source = x.float()
    mean, std = instance_statistics(source, eps)
    mean, std = mean.detach(), std.detach()
    normalised = (source - mean) / std
    weight = lam.to(source).reshape(-1, *([1] * (x.ndim - 1)))
    mixed_mean = weight * mean + (1 - weight) * target_mean.detach().to(source)
    mixed_std = weight * std + (1 - weight) * target_std.detach().to(source)
    return (normalised * mixed_std + mixed_mean).to(x.dtype)


def _spatial(shape: Sequence[int]) -> int:
    return int(np.prod(shape[2:])) if len(shape) > 2 else 0


@dataclass(frozen=True)
class GroupOutput:
    """A layer group's output on the backbone's example batch: its last module (where the
    hook goes), the output's shape (``None``: not a tensor, or not reached) and whether it is
    a convolutional feature map."""

    name: str
    module: nn.Module
    shape: tuple[int, ...] | None
    conv: bool

    def describe(self) -> str:
        return f"{self.name} -> {'no tensor' if self.shape is None else self.shape}"


def _is_conv_map(modules: Sequence[nn.Module], shape: tuple[int, ...] | None) -> bool:
    if shape is None or len(shape) not in (3, 4) or _spatial(shape) < 2:
        return False
    return any(
        isinstance(m, _ConvNd)
        and len(m.kernel_size) == len(shape) - 2
        and m.out_channels == shape[1]
        for module in modules
        for m in module.modules()
    )


def group_outputs(backbone: Backbone) -> list[GroupOutput]:
    """Every layer group's output on ``backbone.example_batch(2)`` (one forward pass in
    evaluation mode, no gradient; the backbone's mode and the global RNG are put back)."""
    groups = [g for g in backbone.layer_groups() if g.modules]
    shapes: dict[str, tuple[int, ...] | None] = {}

    def recorder(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            shapes[name] = tuple(output.shape) if isinstance(output, torch.Tensor) else None

        return hook

    handles = [g.modules[-1].register_forward_hook(recorder(g.name)) for g in groups]
    was_training = backbone.training
    device = next(iter(backbone.parameters()), torch.empty(0)).device
    backbone.eval()
    try:  # the example batch is random: leave the global RNG where it was
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            backbone(**{k: v.to(device) for k, v in backbone.example_batch(2).items()})
    finally:
        for handle in handles:
            handle.remove()
        backbone.train(was_training)
    return [
        GroupOutput(
            g.name, g.modules[-1], shapes.get(g.name), _is_conv_map(g.modules, shapes.get(g.name))
        )
        for g in groups
    ]


class StyleMixer:
    """The forward hooks of MixStyle on ``backbone``: after each of ``layers`` (name, module),
    a training-mode forward pass with gradients is, with probability ``p``, re-styled with the
    statistics of the target batch of the same index in ``stream`` (see the module's
    description). Every random choice derives from ``seed`` and the batch's index. Call
    :meth:`close` to remove the hooks."""

    def __init__(
        self,
        backbone: Backbone,
        layers: Sequence[tuple[str, nn.Module]],
        stream: TargetStream,
        *,
        p: float,
        alpha: float,
        seed: int,
    ) -> None:
        self.backbone = backbone
        self.stream = stream
        self.p = float(p)
        self.alpha = float(alpha)
        self.seed = int(seed)
        self.layers = [name for name, _ in layers]
        #: Training batches seen, and those mixed.
        self.batches = 0
        self.mixed = 0
        self._mode: str | None = None  # "record": the target pass; "mix": the source pass
        self._recorded: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._mix: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self._handles = [
            backbone.register_forward_pre_hook(self._before, with_kwargs=True),
            backbone.register_forward_hook(self._after),
        ]
        for name, module in layers:
            self._handles.append(module.register_forward_hook(self._layer_hook(name)))

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._mode = None

    def _before(self, module: nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        if self._mode == "record":  # the target pass that this hook started
            return
        self._mode, self._mix = None, {}
        if not (module.training and torch.is_grad_enabled()):
            return
        index = self.stream.drawn
        self.stream.drawn += 1
        self.batches += 1
        if self.p == 0:
            return
        from lepton_platform.engine._loop_utils import derive_seed

        rng = np.random.default_rng(derive_seed(self.seed, "mixstyle", index))
        if rng.random() >= self.p:
            return
        tensors = [v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)]
        if not tensors:
            return
        n, device = tensors[0].shape[0], tensors[0].device
        recorded = self._record(self.stream.batch(index), device)
        for name in self.layers:
            if name not in recorded:
                continue
            mean, std = recorded[name]
            rows = torch.arange(n, device=mean.device) % mean.shape[0]
            lam = torch.as_tensor(rng.beta(self.alpha, self.alpha, size=n), dtype=torch.float32)
            self._mix[name] = (mean[rows], std[rows], lam.to(mean.device))
        if self._mix:
            self._mode = "mix"
            self.mixed += 1

    def _record(
        self, batch: dict[str, torch.Tensor], device: torch.device
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        norms = [m for m in self.backbone.modules() if isinstance(m, _NormBase)]
        saved = [(m, [b.clone() for b in m.buffers(recurse=False)]) for m in norms]
        self._mode, self._recorded = "record", {}
        try:
            with torch.no_grad():
                self.backbone(**{k: v.to(device) for k, v in batch.items()})
        finally:
            with torch.no_grad():
                for m, buffers in saved:
                    for buffer, value in zip(m.buffers(recurse=False), buffers, strict=True):
                        buffer.copy_(value)
            self._mode = None
        return self._recorded

    def _layer_hook(self, name: str) -> Callable[[nn.Module, Any, Any], Any]:
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            if self._mode is None or not isinstance(output, torch.Tensor):
                return None
            if output.ndim not in (3, 4) or _spatial(output.shape) < 2:
                return None
            if self._mode == "record":
                self._recorded[name] = instance_statistics(output.detach().float())
                return None
            entry = self._mix.get(name)
            if entry is None or entry[0].shape[0] != output.shape[0]:
                return None
            return mix_statistics(output, *entry)

        return hook

    def _after(self, module: nn.Module, args: Any, output: Any) -> None:
        if self._mode == "mix":
            self._mode, self._mix = None, {}


class MixStyle(TargetAdaptation):
    """Fine-tune a convolutional backbone on the labelled source while, with probability
    ``p`` per training batch, the feature statistics after the layer groups ``layers``
    (default: the first two that give convolutional feature maps) are mixed with those of an
    unlabelled target batch, ``lam ~ Beta(alpha, alpha)``. ``adabn`` re-estimates batch-norm
    statistics on the target afterwards; ``validator`` chooses the epoch without target
    labels."""

    name = "mixstyle"

    def __init__(
        self,
        p: float = 0.5,
        alpha: float = 0.1,
        layers: Sequence[str] | str | None = None,
        adabn: bool = False,
        validator: str = "source-accuracy",
    ) -> None:
        self.p = check_range(self.name, "p", p, 0.0, 1.0)
        self.alpha = float(alpha)
        if not 0.0 < self.alpha <= 1e3:
            raise ConfigError(
                f"strategy {self.name!r}: alpha (of Beta(alpha, alpha)) must be in (0, 1000], "
                f"got {alpha}"
            )
        if isinstance(layers, str):
            layers = [layers]
        self.layers = None if layers is None else [str(n) for n in layers]
        if self.layers is not None and not self.layers:
            raise ConfigError(
                f"strategy {self.name!r}: layers is empty; name at least one layer group, or "
                "leave it out for the first two convolutional ones"
            )
        super().__init__(adabn, validator)

    def config(self) -> dict[str, Any]:
        return {"p": self.p, "alpha": self.alpha, "layers": self.layers, **super().config()}

    def control(self) -> dict[str, Any] | None:
        """The same source training with no mixing (``p=0``: no target batch is drawn), the
        same epochs' choice and AdaBN as in the row."""
        return {**self.config(), "p": 0.0} if self.p > 0 else None

    def check(self, model: TransferModel, *, pretrained: bool) -> None:
        super().check(model, pretrained=pretrained)
        self.mixed_layers(model.backbone)

    def mixed_layers(self, backbone: Backbone) -> list[GroupOutput]:
        """The layer groups whose outputs are mixed; a :class:`ConfigError` when the backbone
        has no convolutional feature map, or ``layers`` names a group that does not exist or
        gives none."""
        outputs = group_outputs(backbone)
        kind = type(backbone).__name__
        conv = [o for o in outputs if o.conv]
        if not conv:
            shapes = ", ".join(o.describe() for o in outputs) or "none"
            raise ConfigError(
                f"strategy {self.name!r} mixes the statistics of convolutional feature maps "
                f"(N, C, H, W) or (N, C, L), but backbone {kind} gives none after its layer "
                f"groups {backbone.group_names()} (outputs on its example batch: {shapes}); "
                "use a convolutional backbone (a ResNet, a 1-D convolutional encoder)"
            )
        if self.layers is None:
            return conv[:2]
        by_name = {o.name: o for o in outputs}
        missing = [n for n in self.layers if n not in by_name]
        if missing:
            raise ConfigError(
                f"strategy {self.name!r}: layer group(s) {missing} do not exist in backbone "
                f"{kind}; it has {backbone.group_names()}, of which "
                f"{[o.name for o in conv]} give convolutional feature maps"
            )
        flat = [by_name[n] for n in self.layers if not by_name[n].conv]
        if flat:
            raise ConfigError(
                f"strategy {self.name!r}: layer group(s) {[o.name for o in flat]} of backbone "
                f"{kind} give no convolutional feature map "
                f"({', '.join(o.describe() for o in flat)}); choose among "
                f"{[o.name for o in conv]}"
            )
        return [by_name[n] for n in dict.fromkeys(self.layers)]

    def prepare(
        self, job: TransferJob, stream: TargetStream, progress: Callable[[], float]
    ) -> TargetTraining:
        layers = self.mixed_layers(job.model.backbone)
        mixer = StyleMixer(
            job.model.backbone,
            [(o.name, o.module) for o in layers],
            stream,
            p=self.p,
            alpha=self.alpha,
            seed=job.config.seed,
        )

        def details() -> dict[str, Any]:
            return {
                "mixed_layers": mixer.layers,
                "mixed_batches": mixer.mixed,
                "training_batches": mixer.batches,
            }

        return TargetTraining(close=mixer.close, details=details)
