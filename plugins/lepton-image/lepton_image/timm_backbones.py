"""timm's image models (PyTorch Image Models, ``timm.list_models()``) as Lepton backbones.

:class:`TimmBackbone` wraps ``timm.create_model(model, num_classes=0, in_chans=...)`` (the
network under ``net``; its forward gives the pooled pre-logits features): ``feature_dim`` is the
model's ``num_features`` (``head_hidden_size`` where a pre-logits layer follows the pooling, as
in MobileNetV3), the layer groups follow timm's own ``group_matcher(coarse=True)`` (the stem,
then each stage or block, input side first), and the preprocessing follows the model's
pretrained config (input size, crop share, interpolation, mean and std).

``pretrained`` is one of:

- ``None`` or ``False``: random initialisation;
- ``True`` or ``"timm"``: timm's pretrained weights of ``model`` (its default tag, or the tag in
  the name: ``convnext_tiny.fb_in22k``), fetched by timm from the Hugging Face Hub; they need a
  network or a warm Hugging Face cache (``$HF_HOME``), and are read without unpickling;
- a tag (``"a1_in1k"``): those pretrained weights of ``model``;
- a ``.safetensors`` / ``.pth`` / ``.pt`` / ``.bin`` file of timm weights, or a folder holding
  one (read by timm's ``load_state_dict`` with ``weights_only=True``);
- a Lepton model folder (``lepton.json`` + ``model.safetensors``), read through the core's
  :func:`lepton_platform.artifacts.load_backbone` (checksums verified, the recorded model and
  options rebuilt, the options given now winning).

Whatever loaded is the core's :class:`~lepton_platform.models.LoadReport`
(:attr:`TimmBackbone.load_report`, logged, with a warning when something did not load). Weights
of another channel count are adapted in the stem (timm's ``first_conv``) with timm's
``adapt_input_conv``: RGB filters summed for one channel, the filters repeated and scaled for
more; the stem is then listed as ``adapted``.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lepton_image.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Augmentation,
    ImagePreprocessor,
    backbone_preprocessor,
    example_pixels,
    pixel_values,
)
from lepton_platform.artifacts import is_model_folder, load_backbone
from lepton_platform.errors import ArtifactError, ConfigError, did_you_mean
from lepton_platform.models import Backbone, LayerGroup, LoadReport, load_matching

__all__ = ["TimmBackbone", "build_timm", "timm_model_name"]

logger = logging.getLogger("lepton_image")

_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
_INTERPOLATIONS = ("bilinear", "bicubic")


def timm_model_name(model: str, pretrained: Any = None) -> str:
    """The timm model name (with its pretrained tag) that ``model`` and a ``pretrained`` tag
    give: ``("resnet50", "a1_in1k")`` -> ``"resnet50.a1_in1k"``. Unknown models and tags are
    a :class:`ConfigError` naming the closest ones."""
    import timm
    from timm.models import split_model_name_tag

    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"timm backbone: model must be a timm model name, got {model!r}")
    if model.startswith(("hf-hub:", "local-dir:")):
        return model
    arch, tag = split_model_name_tag(model)
    if not timm.is_model(arch):
        known = timm.list_models()
        raise ConfigError(
            f"timm has no model {arch!r}{did_you_mean(arch, known)} (timm.list_models() lists "
            f"all {len(known)})"
        )
    if (
        isinstance(pretrained, str)
        and _is_tag(pretrained)
        and pretrained.lower() not in _DEFAULT_WEIGHTS
    ):
        if tag and tag != pretrained:
            raise ConfigError(
                f"timm backbone: model {model!r} names the tag {tag!r} but pretrained is "
                f"{pretrained!r}; give the tag once"
            )
        tag = pretrained
    if tag:
        tags = [n.split(".", 1)[1] for n in timm.list_pretrained(f"{arch}.*")]
        if tag not in tags:
            raise ConfigError(
                f"timm model {arch!r} has no pretrained tag {tag!r}; its tags: "
                f"{', '.join(tags) or 'none'}"
            )
        return f"{arch}.{tag}"
    return arch


#: ``pretrained`` strings meaning timm's default weights (command lines pass strings).
_DEFAULT_WEIGHTS = ("timm", "true", "default")


def _wants_timm_weights(pretrained: Any) -> bool:
    """``True``, ``"timm"`` / ``"true"`` / ``"default"``, or a pretrained tag."""
    return pretrained is True or (isinstance(pretrained, str) and _is_tag(pretrained))


def _is_tag(value: str) -> bool:
    """A pretrained tag (``a1_in1k``) or a default-weights word, not something that looks like a
    path."""
    return (
        not value.endswith(_WEIGHT_SUFFIXES)
        and "/" not in value
        and os.sep not in value
        and not value.startswith(".")
        and not Path(value).exists()
    )


class _Parameters(nn.Module):
    """The parameters a timm model holds itself (``cls_token``, ``pos_embed``), gathered for a
    layer group; a view, never one of the backbone's modules."""

    def __init__(self, params: Mapping[str, nn.Parameter]) -> None:
        super().__init__()
        for name, param in params.items():
            self.register_parameter(name.replace(".", "_"), param)


class _StemAdapter:
    """Adapts the first convolution(s) of another channel count (``load_matching``'s
    ``adapt``); the names are set once the backbone is built."""

    def __init__(self, first_convs: Sequence[str] = ()) -> None:
        self.first_convs = tuple(first_convs)

    def __call__(self, key: str, value: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
        from timm.models import adapt_input_conv

        name = key.removeprefix("net.")
        if name.removesuffix(".weight") not in self.first_convs or not name.endswith(".weight"):
            return None
        if value.ndim != 4 or target.ndim != 4 or value.shape[0] != target.shape[0]:
            return None
        if value.shape[2:] != target.shape[2:]:
            return None
        try:
            adapted = adapt_input_conv(int(target.shape[1]), value, base_chans=int(value.shape[1]))
        except (NotImplementedError, ValueError, AssertionError):
            return None
        return adapted.to(value.dtype).contiguous()


class TimmBackbone(Backbone):
    """A timm image model mapping ``pixel_values`` ``(B, C, H, W)`` to pooled features.

    Example::

        backbone = TimmBackbone("convnext_tiny", pretrained="fb_in1k")         # a network
        tiny = TimmBackbone("resnet18", image_size=32,
                            model_args={"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64]})
        tiny(**tiny.example_batch(2)).shape                                    # (2, 64)
    """

    def __init__(
        self,
        model: str,
        pretrained: Any = None,
        *,
        in_channels: int = 3,
        image_size: int | None = None,
        resize_size: int | None = None,
        augmentation: Mapping[str, Any] | bool | None = None,
        model_args: Mapping[str, Any] | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        import timm
        from timm.models import get_pretrained_cfg

        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ConfigError(
                f"timm backbone: in_channels must be a positive int, got {in_channels}"
            )
        if model_args is not None and not isinstance(model_args, Mapping):
            raise ConfigError(f"timm backbone: model_args must be a mapping, got {model_args!r}")
        try:  # JSON-ready, so that config() rebuilds it and a manifest records it
            self.model_args: dict[str, Any] = json.loads(json.dumps(dict(model_args or {})))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"timm backbone: model_args must be JSON-ready ({exc})") from None
        for key in ("num_classes", "in_chans", "pretrained", "img_size"):
            if key in self.model_args:
                what = {
                    "num_classes": "the head is the task's",
                    "in_chans": "use in_channels",
                    "pretrained": "use pretrained",
                    "img_size": "use image_size",
                }[key]
                raise ConfigError(f"timm backbone: model_args may not set {key!r} ({what})")
        self.model_name = timm_model_name(model, pretrained)
        self.in_channels = in_channels
        self.channels_last = bool(channels_last)
        self.augmentation = Augmentation.from_options(augmentation)
        known = get_pretrained_cfg(self.model_name.split(":")[-1])
        cfg: dict[str, Any] = known.to_dict() if known is not None else {}  # type: ignore[no-untyped-call]
        self._arch_kwargs = dict(self.model_args)
        if image_size is not None and cfg.get("fixed_input_size"):
            self._arch_kwargs["img_size"] = int(image_size)
        try:
            self.net = timm.create_model(
                self.model_name,
                pretrained=False,
                num_classes=0,
                in_chans=in_channels,
                **self._arch_kwargs,
            )
        except (TypeError, ValueError, RuntimeError, AssertionError) as exc:
            raise ConfigError(
                f"timm could not build {self.model_name!r} with {self._arch_kwargs}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        cfg = {**cfg, **dict(getattr(self.net, "pretrained_cfg", {}) or {})}
        self.pretrained_cfg = cfg
        size = (cfg.get("input_size") or (3, 224, 224))[-1]
        self.image_size = int(image_size or size)
        crop = float(cfg.get("crop_pct") or 0.875)
        self.resize_size = int(resize_size or max(self.image_size, round(self.image_size / crop)))
        interpolation = str(cfg.get("interpolation") or "bilinear")
        self.interpolation = interpolation if interpolation in _INTERPOLATIONS else "bilinear"
        self.mean: tuple[float, ...] = tuple(cfg.get("mean") or IMAGENET_MEAN)
        self.std: tuple[float, ...] = tuple(cfg.get("std") or IMAGENET_STD)
        first = cfg.get("first_conv") or ()
        self.first_convs: tuple[str, ...] = (first,) if isinstance(first, str) else tuple(first)
        head: Any = getattr(self.net, "head_hidden_size", None) or self.net.num_features
        self.feature_dim = int(head)
        self.pretrained: str | None = None
        self.load_report: LoadReport | None = None
        if pretrained is not None and pretrained is not False:
            self.load_pretrained(pretrained)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    # -- forward and structure ---------------------------------------------------------------

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Pooled features of ``pixel_values`` ``(B, in_channels, H, W)``."""
        x = pixel_values(inputs, self.model_name, self.channels_last)
        features: torch.Tensor = self.net(x)
        return features.flatten(1)

    def layer_groups(self) -> list[LayerGroup]:
        """timm's coarse grouping (``group_matcher(coarse=True)``), input side first: each group
        as the largest modules wholly inside it (plus the parameters the model holds itself)."""
        from timm.models import group_parameters

        matcher: Any = None
        try:
            net: Any = self.net
            matcher = net.group_matcher(coarse=True)
            grouped = group_parameters(self.net, matcher)
        except (AttributeError, NotImplementedError):
            grouped = {
                i: [n for n, _ in child.named_parameters(prefix=name)]
                for i, (name, child) in enumerate(self.net.named_children())
            }
        stem = isinstance(matcher, Mapping) and "stem" in matcher
        params = dict(self.net.named_parameters())
        groups: list[LayerGroup] = []
        for names in grouped.values():
            wanted = [n for n in names if n in params]
            if not wanted:
                continue
            held, loose = _modules_holding(self.net, set(wanted))
            modules = [module for _, module in held]
            if loose:
                modules.append(_Parameters({n: params[n] for n in loose}))
            first = held[0][0] if held else loose[0]
            name = "stem" if stem and not groups else first
            taken = {g.name for g in groups}
            base, k = name, 2
            while name in taken:
                name, k = f"{base}-{k}", k + 1
            groups.append(LayerGroup(name, tuple(modules)))
        return groups

    def preprocessor(self) -> ImagePreprocessor:
        return backbone_preprocessor(
            self.model_name,
            self.in_channels,
            self.mean,
            self.std,
            image_size=self.image_size,
            resize_size=self.resize_size,
            interpolation=self.interpolation,
            augmentation=self.augmentation,
            channels_last=self.channels_last,
        )

    def config(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "resize_size": self.resize_size,
            "model_args": dict(self.model_args),
            "augmentation": self.augmentation.to_json(),
            "channels_last": self.channels_last,
        }

    def example_batch(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        return example_pixels(batch_size, self.in_channels, self.image_size, self.channels_last)

    # -- pretrained weights ------------------------------------------------------------------

    def load_pretrained(self, pretrained: Any) -> LoadReport:
        """Load timm's pretrained weights (``True``, ``"timm"`` or a tag) or a weights file or
        folder into the network; returns and keeps the load report. (A Lepton model folder is
        read by :func:`build_timm`, which rebuilds its architecture.)"""
        if _wants_timm_weights(pretrained):
            state, source = self._timm_state(), f"timm:{self.model_name}"
        elif isinstance(pretrained, str | os.PathLike):
            path = Path(pretrained).expanduser()
            if is_model_folder(path):
                raise ArtifactError(
                    f"{path} is a Lepton model folder: build the backbone with "
                    "lepton_platform.create_backbone(...) (or lepton_image.timm_backbones."
                    "build_timm), which verifies it and rebuilds its architecture"
                )
            if not path.exists():
                raise ArtifactError(
                    f"pretrained weights {os.fspath(pretrained)!r} do not exist (give an existing "
                    ".safetensors/.pth file or folder, True or a pretrained tag for timm's "
                    "weights, or None)"
                )
            state, source = _read_weights(path), os.fspath(path)
        else:
            raise ConfigError(
                f"{self.model_name}: pretrained must be None, True, 'timm', a pretrained tag, a "
                f"weights file or a folder, got {pretrained!r}"
            )
        self.pretrained = source
        return self.load_state(state, source=source)

    def _timm_state(self) -> dict[str, torch.Tensor]:
        """timm's pretrained weights of the model, through timm's own loading (the Hub or its
        cache; ``weights_only``), as a state dict without the classifier."""
        import timm

        try:
            reference = timm.create_model(self.model_name, pretrained=True, **self._arch_kwargs)
        except Exception as exc:  # network, cache and hub errors come in many types
            raise ArtifactError(
                f"could not load timm's pretrained weights of {self.model_name!r}: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. They "
                "need a network (or the Hugging Face cache holding them, $HF_HOME); offline, "
                "give a local weights file as pretrained, or None for random weights"
            ) from exc
        cfg = dict(getattr(reference, "pretrained_cfg", {}) or {})
        for key in ("mean", "std", "crop_pct", "interpolation"):
            if cfg.get(key) is not None:
                self.pretrained_cfg[key] = cfg[key]
        self.mean = tuple(cfg.get("mean") or self.mean)
        self.std = tuple(cfg.get("std") or self.std)
        return _without_classifier(reference.state_dict(), cfg)

    def load_state(
        self, state: Mapping[str, torch.Tensor], *, source: str = "state dict"
    ) -> LoadReport:
        """Load a timm state dict (a ``backbone.net.`` / ``net.`` prefix and the classifier are
        handled), adapting the stem; report what matched."""
        for prefix in ("backbone.net.", "net."):
            if any(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
                break
        state = _without_classifier(state, self.pretrained_cfg)
        report = load_matching(self.net, state, source=source, adapt=_StemAdapter(self.first_convs))
        self.load_report = report
        _warn(self.model_name, report)
        return report


def _without_classifier(
    state: Mapping[str, torch.Tensor], cfg: Mapping[str, Any]
) -> dict[str, torch.Tensor]:
    heads = cfg.get("classifier") or ()
    names = (heads,) if isinstance(heads, str) else tuple(heads)
    return {k: v for k, v in state.items() if not any(k.startswith(f"{name}.") for name in names)}


def _modules_holding(
    net: nn.Module, names: set[str]
) -> tuple[list[tuple[str, nn.Module]], list[str]]:
    """The largest modules of ``net`` (with their names) whose parameters all lie in ``names``,
    input side first, and the names of those ``net`` holds itself."""
    held: list[tuple[str, nn.Module]] = []
    for prefix, module in net.named_modules():
        if not prefix or any(prefix.startswith(t + ".") for t, _ in held):
            continue
        own = [f"{prefix}.{n}" for n, _ in module.named_parameters()]
        if own and all(n in names for n in own):
            held.append((prefix, module))
    covered = {f"{t}.{n}" for t, m in held for n, _ in m.named_parameters()}
    loose = [n for n in sorted(names) if n not in covered]
    return held, loose


def _warn(model: str, report: LoadReport) -> None:
    if report.missing or report.mismatched or report.unexpected:
        warnings.warn(
            f"{model}: {report.summary()}; missing: {report.missing[:5]}, "
            f"with other shapes: {[k for k, _, _ in report.mismatched][:5]}, "
            f"unexpected: {report.unexpected[:5]}",
            stacklevel=4,
        )


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a weights file, or of the one weights file in a folder, read with
    timm's ``load_state_dict`` (safetensors, or ``torch.load(weights_only=True)``)."""
    from timm.models import load_state_dict

    if path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
        if len(candidates) != 1:
            raise ArtifactError(
                f"{path}: expected one weights file ({', '.join(_WEIGHT_SUFFIXES)}) or a Lepton "
                f"model folder (lepton.json + model.safetensors); found "
                f"{[p.name for p in candidates]}"
            )
        path = candidates[0]
    try:
        loaded = load_state_dict(str(path), weights_only=True)
    except Exception as exc:
        raise ArtifactError(
            f"{path}: cannot read weights ({type(exc).__name__}: {exc}); .pth files are read "
            "with weights_only=True, so pickled objects other than tensors are refused"
        ) from exc
    tensors = {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ArtifactError(f"{path}: no state dict of tensors in this file")
    return tensors


def build_timm(model: str | None, pretrained: Any = None, **options: Any) -> TimmBackbone:
    """Build a timm backbone: a Lepton model folder as ``pretrained`` is read through the core's
    :func:`~lepton_platform.artifacts.load_backbone` (its recorded model and options, the
    options given here winning; ``model`` may then be left out); anything else goes to
    :class:`TimmBackbone`."""
    if pretrained is not None and not isinstance(pretrained, bool) and is_model_folder(pretrained):
        adapter = _StemAdapter()
        given = dict(options)
        if model is not None:
            given["model"] = model

        def build(**config: Any) -> TimmBackbone:
            if "model" not in config:
                raise TypeError("the recorded backbone config names no timm 'model'")
            backbone = TimmBackbone(config.pop("model"), pretrained=None, **config)
            adapter.first_convs = backbone.first_convs
            return backbone

        backbone, source = load_backbone(pretrained, build, given, adapt=adapter)
        prep = source.preprocessing
        mean, std = prep.get("mean"), prep.get("std")
        if isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == 3:
            backbone.mean = tuple(float(m) for m in mean)
            backbone.std = tuple(float(s) for s in std)
        backbone.pretrained = os.fspath(pretrained)
        assert backbone.load_report is not None
        _warn(backbone.model_name, backbone.load_report)
        return backbone
    if model is None:
        raise ConfigError(
            "timm backbone: give model (a timm model name such as 'convnext_tiny'; "
            "timm.list_models() lists them), or a Lepton model folder as pretrained"
        )
    return TimmBackbone(model, pretrained=pretrained, **options)
