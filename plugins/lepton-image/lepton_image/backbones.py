"""The torchvision ResNet family as Lepton backbones.

:class:`ResNetBackbone` holds the torchvision modules under their torchvision names (``conv1``,
``bn1``, ``layer1`` ... ``layer4``; no ``fc``), so torchvision checkpoints load key for key and a
Lepton model's ``backbone.``-prefixed weights load after stripping the prefix.

``pretrained`` is one of:

- ``None``: random initialisation;
- a torchvision weights name (``"IMAGENET1K_V1"``, ``"IMAGENET1K_V2"``, ``"DEFAULT"``), fetched
  by torchvision (it needs a network, or a warm ``$TORCH_HOME`` cache);
- a ``.safetensors`` or ``.pth``/``.pt``/``.bin`` file (read with ``weights_only=True``), or a
  folder holding one;
- a Lepton model folder (``lepton.json`` + ``model.safetensors``) trained on a source domain,
  read through the core's :func:`lepton_platform.artifacts.load_backbone` (checksums verified,
  the recorded architecture rebuilt, the options given now winning).

What loaded is the core's :class:`~lepton_platform.models.LoadReport`
(:attr:`ResNetBackbone.load_report`: matched, adapted, missing, unexpected and mismatched keys;
logged, and a warning when something was not loaded). The stem is adapted where shapes allow: a
7x7 kernel becomes the 3x3 small-input kernel (centre crop, rescaled to keep each filter's
norm) and RGB filters become 1-channel filters (summed over the colour channels, so a grey image
gives the responses the RGB image of the same grey gave).

Nothing is unpickled: torchvision's weights are fetched with ``weights_only=True`` and checked
against the hash in their file name, local ``.pth`` files are read with ``weights_only=True``.
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
from torchvision.models import resnet as tv_resnet

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
from lepton_platform.errors import ArtifactError, ConfigError
from lepton_platform.models import (
    Backbone,
    ExportUnsupported,
    HubExport,
    LayerGroup,
    LoadReport,
    load_matching,
)

__all__ = ["ARCHITECTURES", "ResNetBackbone", "adapt_stem_kernel", "build_resnet"]

logger = logging.getLogger("lepton_image")

#: name -> (block, blocks per stage, groups, width_per_group), as torchvision builds them
ARCHITECTURES: dict[str, tuple[type[nn.Module], list[int], int, int]] = {
    "resnet18": (tv_resnet.BasicBlock, [2, 2, 2, 2], 1, 64),
    "resnet34": (tv_resnet.BasicBlock, [3, 4, 6, 3], 1, 64),
    "resnet50": (tv_resnet.Bottleneck, [3, 4, 6, 3], 1, 64),
    "resnet101": (tv_resnet.Bottleneck, [3, 4, 23, 3], 1, 64),
    "resnet152": (tv_resnet.Bottleneck, [3, 8, 36, 3], 1, 64),
    "resnext50_32x4d": (tv_resnet.Bottleneck, [3, 4, 6, 3], 32, 4),
    "resnext101_32x8d": (tv_resnet.Bottleneck, [3, 4, 23, 3], 32, 8),
    "wide_resnet50_2": (tv_resnet.Bottleneck, [3, 4, 6, 3], 1, 128),
    "wide_resnet101_2": (tv_resnet.Bottleneck, [3, 4, 23, 3], 1, 128),
}

_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def adapt_stem_kernel(weight: torch.Tensor, kernel_size: int, in_channels: int) -> torch.Tensor:
    """Adapt first-convolution weights ``(out, in, k, k)`` to a smaller kernel and another
    number of input channels.

    The kernel is centre-cropped and rescaled so that each filter keeps its L2 norm. Going to
    one input channel sums the colour channels (a grey image then gives the responses of the
    RGB image with that grey in every channel); going to ``n > 3`` channels repeats the mean
    filter scaled by ``3 / n``.
    """
    out = weight.detach().float()
    size = out.shape[-1]
    if kernel_size < size:
        start = (size - kernel_size) // 2
        crop = out[..., start : start + kernel_size, start : start + kernel_size]
        full_norm = out.flatten(1).norm(dim=1)
        crop_norm = crop.flatten(1).norm(dim=1).clamp_min(1e-8)
        out = crop * (full_norm / crop_norm).view(-1, 1, 1, 1)
    elif kernel_size > size:
        raise ConfigError(f"cannot grow a {size}x{size} stem kernel to {kernel_size}x{kernel_size}")
    have = out.shape[1]
    if in_channels != have:
        if in_channels == 1:
            out = out.sum(dim=1, keepdim=True)
        else:
            out = out.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1) * (have / in_channels)
    return out.to(weight.dtype).contiguous()


class _NarrowResNet(tv_resnet.ResNet):  # type: ignore[misc]
    """torchvision's ResNet with ``width`` channels in the stem instead of 64 (all stages
    scale with it). Only tiny test models use it; ``width=64`` is the standard network."""

    def __init__(
        self,
        block: type[tv_resnet.BasicBlock | tv_resnet.Bottleneck],
        layers: list[int],
        width: int,
        groups: int,
        width_per_group: int,
    ) -> None:
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = width
        self.dilation = 1
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, width * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(width * 8 * block.expansion, 1000)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)


class ResNetBackbone(Backbone):
    """A torchvision ResNet / ResNeXt / Wide ResNet mapping ``pixel_values`` ``(B, C, H, W)``
    to pooled features ``(B, feature_dim)``.

    Example::

        backbone = ResNetBackbone("resnet18", pretrained="IMAGENET1K_V1")
        backbone = ResNetBackbone("resnet18", pretrained=None, small_input=True, image_size=32,
                                  in_channels=1)
        features = backbone(**backbone.example_batch(4))          # (4, 512)
    """

    def __init__(
        self,
        arch: str,
        pretrained: str | os.PathLike[str] | None = None,
        *,
        small_input: bool = False,
        in_channels: int = 3,
        image_size: int | None = None,
        resize_size: int | None = None,
        width: int = 64,
        blocks: Sequence[int] | None = None,
        augmentation: Mapping[str, Any] | bool | None = None,
        channels_last: bool = False,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise ConfigError(
                f"unknown ResNet architecture {arch!r}; known: {sorted(ARCHITECTURES)}"
            )
        if in_channels < 1:
            raise ConfigError(f"in_channels must be positive, got {in_channels}")
        if width < 1 or (width != 64 and width % 2):
            raise ConfigError(f"width must be 64 (standard) or a positive even number, got {width}")
        block, layers, groups, width_per_group = ARCHITECTURES[arch]
        if blocks is not None:
            if len(blocks) != 4 or any(int(b) < 1 for b in blocks):
                raise ConfigError(f"blocks must be 4 positive counts (one per stage), got {blocks}")
            layers = [int(b) for b in blocks]
        self.blocks = None if blocks is None else list(layers)
        if groups > 1 and (width * width_per_group) // 64 < 1:
            raise ConfigError(f"{arch}: width {width} is too narrow for {groups} groups")
        self.arch = arch
        self.small_input = bool(small_input)
        self.in_channels = int(in_channels)
        self.width = int(width)
        self.channels_last = bool(channels_last)
        self.augmentation = Augmentation.from_options(augmentation)
        default_size = 32 if self.small_input else 224
        self.image_size = int(image_size or default_size)
        if resize_size is None:
            resize_size = (
                self.image_size if self.small_input else round(self.image_size * 256 / 224)
            )
        self.resize_size = int(resize_size)
        self.zero_init_residual = bool(zero_init_residual)
        self.mean: tuple[float, ...] = IMAGENET_MEAN
        self.std: tuple[float, ...] = IMAGENET_STD

        if self.width == 64 and self.blocks is None:
            net: tv_resnet.ResNet = tv_resnet.ResNet(
                block,
                layers,
                groups=groups,
                width_per_group=width_per_group,
                zero_init_residual=self.zero_init_residual,
            )
        else:
            net = _NarrowResNet(block, layers, self.width, groups, width_per_group)
        stem_width = net.conv1.out_channels
        if self.small_input:
            net.conv1 = nn.Conv2d(self.in_channels, stem_width, 3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif self.in_channels != 3:
            net.conv1 = nn.Conv2d(self.in_channels, stem_width, 7, stride=2, padding=3, bias=False)
        if self.small_input or self.in_channels != 3:
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.conv1 = net.conv1
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.layer4 = net.layer4
        self.avgpool = net.avgpool
        self.feature_dim = int(net.fc.in_features)
        self.pretrained = None if pretrained is None else os.fspath(pretrained)
        self.load_report = None
        if pretrained is not None:
            self.load_pretrained(pretrained)
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    # -- forward and structure ---------------------------------------------------------------

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Pooled features of ``pixel_values`` ``(B, in_channels, H, W)``."""
        x = pixel_values(inputs, self.arch, self.channels_last)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def layer_groups(self) -> list[LayerGroup]:
        return [
            LayerGroup("stem", (self.conv1, self.bn1)),
            LayerGroup("layer1", (self.layer1,)),
            LayerGroup("layer2", (self.layer2,)),
            LayerGroup("layer3", (self.layer3,)),
            LayerGroup("layer4", (self.layer4,)),
        ]

    def preprocessor(self) -> ImagePreprocessor:
        return backbone_preprocessor(
            self.arch,
            self.in_channels,
            self.mean,
            self.std,
            image_size=self.image_size,
            resize_size=self.resize_size,
            augmentation=self.augmentation,
            channels_last=self.channels_last,
        )

    def config(self) -> dict[str, Any]:
        return {
            "small_input": self.small_input,
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "resize_size": self.resize_size,
            "width": self.width,
            "blocks": self.blocks,
            "augmentation": self.augmentation.to_json(),
            "channels_last": self.channels_last,
            "zero_init_residual": self.zero_init_residual,
        }

    def example_batch(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        return example_pixels(batch_size, self.in_channels, self.image_size, self.channels_last)

    # -- export (``lepton export --format hf``) ------------------------------------------------

    def hub_export(
        self, classifier: nn.Linear, label_names: Sequence[str], *, multi_label: bool
    ) -> HubExport:
        """A torchvision state dict (``model.safetensors``, torchvision's key names with the
        classifier as ``fc``), ``torchvision.json`` (how to build the network) and
        ``preprocessing.json`` (resize, crop, mean and std). torchvision's ``ResNet`` class
        builds any stage depth, but its stem is 64 channels wide: a narrower network is
        refused."""
        if self.width != 64:
            raise ExportUnsupported(
                f"a stem width of {self.width} is no torchvision architecture (torchvision's "
                "ResNet is 64 wide)"
            )
        block, layers, groups, width_per_group = ARCHITECTURES[self.arch]
        names = [str(n) for n in label_names]
        spec = {
            "architecture": self.arch,
            "block": block.__name__,
            "layers": list(self.blocks or layers),
            "groups": groups,
            "width_per_group": width_per_group,
            "num_classes": len(names),
            "small_input": self.small_input,
            "in_channels": self.in_channels,
            "label_names": names,
            "multi_label": multi_label,
        }
        prep = self.preprocessor().config()
        preprocessing = {
            "resize_size": prep["resize_size"],
            "crop_size": prep["image_size"],
            "interpolation": prep["interpolation"],
            "mean": prep["mean"],
            "std": prep["std"],
            "channels": prep["channels"],
            "note": "resize the short side to resize_size, crop the centre crop_size square, "
            "scale to [0, 1], subtract mean and divide by std per channel",
        }
        state = {k: v.detach().clone().contiguous() for k, v in self.state_dict().items()}
        state["fc.weight"] = classifier.weight.detach().float().clone()
        if classifier.bias is not None:
            state["fc.bias"] = classifier.bias.detach().float().clone()
        else:
            state["fc.bias"] = torch.zeros(len(names))

        def write(folder: Path) -> None:
            from safetensors.torch import save_file

            save_file(state, str(folder / "model.safetensors"))
            for name, data in (("torchvision.json", spec), ("preprocessing.json", preprocessing)):
                text = json.dumps(data, indent=2) + "\n"
                (folder / name).write_text(text, encoding="utf-8")

        def load(folder: Path) -> Any:
            from safetensors.torch import load_file

            built = json.loads((folder / "torchvision.json").read_text(encoding="utf-8"))
            net = torchvision_resnet(built)
            net.load_state_dict(load_file(str(folder / "model.safetensors")))
            net.eval()

            def run(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
                with torch.no_grad():
                    out: torch.Tensor = net(batch["pixel_values"])
                return out

            return run

        standard = self.blocks is None and not self.small_input and self.in_channels == 3
        if standard:
            build = (
                "from torchvision.models import get_model\n\n"
                f'model = get_model("{self.arch}", weights=None, num_classes={len(names)})\n'
            )
        else:
            build = (
                "import torch\n"
                "from torchvision.models import resnet\n\n"
                'spec = json.loads(open("{path}/torchvision.json").read())\n'
                'block = getattr(resnet, spec["block"])\n'
                'model = resnet.ResNet(block, spec["layers"], num_classes=spec["num_classes"], '
                'groups=spec["groups"], width_per_group=spec["width_per_group"])\n'
                + (
                    'model.conv1 = torch.nn.Conv2d(spec["in_channels"], 64, 3, 1, 1, bias=False)\n'
                    "model.maxpool = torch.nn.Identity()\n"
                    if self.small_input
                    else 'model.conv1 = torch.nn.Conv2d(spec["in_channels"], 64, 7, 2, 3, '
                    "bias=False)\n"
                    if self.in_channels != 3
                    else ""
                )
            )
        usage = (
            "import json\n"
            "from safetensors.torch import load_file\n"
            + build
            + 'model.load_state_dict(load_file("{path}/model.safetensors"))\n'
            "model.eval()  # preprocessing: {path}/preprocessing.json\n"
        )
        return HubExport(library="torchvision", write=write, load=load, usage=usage)

    # -- pretrained weights ------------------------------------------------------------------

    def load_pretrained(self, pretrained: str | os.PathLike[str]) -> LoadReport:
        """Load weights from a torchvision weights name, a weights file, or a folder holding
        one (see the module docstring); returns and keeps the load report. (A Lepton model
        folder is read by :func:`build_resnet`, which rebuilds its architecture.)"""
        source = os.fspath(pretrained)
        path = Path(source)
        if is_model_folder(path):
            raise ArtifactError(
                f"{path} is a Lepton model folder: build the backbone with "
                f"lepton_platform.create_backbone({self.arch!r}, pretrained=...) (or "
                "lepton_image.backbones.build_resnet), which verifies it and rebuilds its "
                "architecture"
            )
        if path.exists():
            state = _read_local(path)
        elif _looks_like_path(source):
            raise ArtifactError(
                f"pretrained weights {source!r} do not exist (give an existing .safetensors/.pth "
                "file or folder, a torchvision weights name such as 'IMAGENET1K_V1', or None)"
            )
        else:
            state = self._torchvision_state(source)
        return self.load_state(state, source=source)

    def _torchvision_state(self, name: str) -> dict[str, torch.Tensor]:
        """Fetch torchvision's weights (a network or a warm ``$TORCH_HOME`` cache), unpickling
        nothing and checking the file against the hash in its name."""
        from torchvision.models import get_model_weights

        enum = get_model_weights(self.arch)
        try:
            weights = enum.DEFAULT if name.upper() == "DEFAULT" else enum[name]
        except KeyError:
            known = ", ".join(["DEFAULT", *(w.name for w in enum)])
            raise ConfigError(
                f"{self.arch} has no torchvision weights {name!r}; known: {known}"
            ) from None
        transforms = getattr(weights.transforms, "keywords", {})
        if not self.small_input:
            crop = int(transforms.get("crop_size", self.image_size))
            if self.image_size == 224 and crop != 224:
                self.image_size = crop
            if self.resize_size == 256 and "resize_size" in transforms:
                self.resize_size = int(transforms["resize_size"])
        self.mean = tuple(transforms.get("mean", IMAGENET_MEAN))
        self.std = tuple(transforms.get("std", IMAGENET_STD))
        return _hub_weights(weights.url, f"{self.arch}.{weights.name}")

    def load_state(
        self, state: Mapping[str, torch.Tensor], *, source: str = "state dict"
    ) -> LoadReport:
        """Load a torchvision-named state dict (``fc.*`` head keys and a ``backbone.`` prefix
        are handled), adapting the stem; report what matched."""
        if any(k.startswith("backbone.") for k in state):  # a whole Lepton TransferModel
            state = {k[9:]: v for k, v in state.items() if k.startswith("backbone.")}
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # the 1000-way head
        report = load_matching(self, state, source=source, adapt=_adapt_stem)
        self.load_report = report
        _warn(self.arch, report)
        return report


def torchvision_resnet(spec: Mapping[str, Any]) -> tv_resnet.ResNet:
    """torchvision's ``ResNet`` as ``torchvision.json`` (written by
    :meth:`ResNetBackbone.hub_export`) describes it, with random weights."""
    block = getattr(tv_resnet, str(spec["block"]))
    net = tv_resnet.ResNet(
        block,
        list(spec["layers"]),
        num_classes=int(spec["num_classes"]),
        groups=int(spec["groups"]),
        width_per_group=int(spec["width_per_group"]),
    )
    channels = int(spec["in_channels"])
    if spec["small_input"]:
        net.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif channels != 3:
        net.conv1 = nn.Conv2d(channels, 64, 7, stride=2, padding=3, bias=False)
    return net


def _hub_weights(url: str, what: str) -> dict[str, torch.Tensor]:
    """torchvision weights from the torch.hub cache (``$TORCH_HOME/hub/checkpoints``), fetched
    there when absent: the file must match the SHA-256 prefix in its name (checked on every
    load, not only on download) and is read with ``weights_only=True``, so a planted file is
    refused and no pickled code ever runs."""
    import re

    from lepton_platform._io import sha256_file

    name = url.rsplit("/", 1)[-1]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / name
    match = re.search(r"-([a-f0-9]{6,})\.", name)
    try:
        if not cached.is_file():
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(
                url, str(cached), hash_prefix=match.group(1) if match else None, progress=False
            )
    except Exception as exc:  # network errors come in many types
        raise ArtifactError(
            f"could not fetch torchvision weights {what} from {url}: {exc}. They need a network "
            f"(or the file {cached}); pass a local weights file instead when offline"
        ) from exc
    if match is not None and not sha256_file(cached).startswith(match.group(1)):
        raise ArtifactError(
            f"{cached} does not match the SHA-256 prefix {match.group(1)!r} in its name: it is "
            f"not torchvision's {what} (damaged or replaced); delete it to download it again"
        )
    return _read_file(cached)


def _adapt_stem(key: str, value: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """The first convolution of another kernel size or channel count, adapted."""
    if key != "conv1.weight" or value.ndim != 4 or value.shape[0] != target.shape[0]:
        return None
    try:
        return adapt_stem_kernel(value, target.shape[-1], target.shape[1])
    except ConfigError:
        return None


def _warn(arch: str, report: LoadReport) -> None:
    if report.missing or report.mismatched or report.unexpected:
        warnings.warn(
            f"{arch}: {report.summary()}; missing: {report.missing[:5]}, "
            f"with other shapes: {[k for k, _, _ in report.mismatched][:5]}, "
            f"unexpected: {report.unexpected[:5]}",
            stacklevel=4,
        )


def build_resnet(arch: str, pretrained: Any = None, **options: Any) -> ResNetBackbone:
    """Build ``arch``: a Lepton model folder as ``pretrained`` is read through the core's
    :func:`~lepton_platform.artifacts.load_backbone` (its recorded architecture and
    normalisation, the options given here winning); anything else goes to
    :class:`ResNetBackbone`."""
    if pretrained is not None and is_model_folder(pretrained):

        def build(**config: Any) -> ResNetBackbone:
            return ResNetBackbone(arch, pretrained=None, **config)

        backbone, source = load_backbone(pretrained, build, options, adapt=_adapt_stem)
        stats = _stats(source.preprocessing)
        if stats is not None:
            backbone.mean, backbone.std = stats
        backbone.pretrained = os.fspath(pretrained)
        assert backbone.load_report is not None
        _warn(arch, backbone.load_report)
        return backbone
    return ResNetBackbone(arch, pretrained=pretrained, **options)


def _looks_like_path(source: str) -> bool:
    return (
        os.sep in source
        or "/" in source
        or source.endswith(_WEIGHT_SUFFIXES)
        or source.startswith(".")
    )


def _read_local(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a weights file, or in the one weights file of a folder."""
    if path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.suffix in _WEIGHT_SUFFIXES)
        if len(candidates) != 1:
            raise ArtifactError(
                f"{path}: expected one weights file ({', '.join(_WEIGHT_SUFFIXES)}) or a Lepton "
                "model folder (lepton.json + model.safetensors); found "
                f"{[p.name for p in candidates]}"
            )
        path = candidates[0]
    return _read_file(path)


def _read_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path), device="cpu"))
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ArtifactError(
            f"{path}: cannot read weights ({exc}); .pth files are read with weights_only=True, "
            "so pickled objects other than tensors are refused"
        ) from exc
    if isinstance(loaded, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            inner = loaded.get(key)
            if isinstance(inner, Mapping):
                loaded = inner
                break
        tensors = {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise ArtifactError(f"{path}: no state dict of tensors in this file")


def _stats(prep: Mapping[str, Any]) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The normalisation a Lepton model's recorded preprocessing used (3 channels)."""
    mean, std = prep.get("mean"), prep.get("std")
    if isinstance(mean, list) and isinstance(std, list) and len(mean) == 3 == len(std):
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)
    return None
