"""The hooks of the image plugin. Light: nothing heavy is imported until a factory is called.

Backbones: torchvision's ResNet family by name (``resnet18`` ...), and timm's zoo: a handful of
curated ``timm-<model>`` backbones listed with metadata (architecture, parameters, feature
dimension, pretrained tags) and the generic ``timm`` backbone, which builds any of timm's
models from its ``model`` option (``create_backbone("timm", model="convnext_small")``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lepton_platform import BackboneSpec, DomainSpec, hookimpl

#: Registered architectures: name -> (family, description).
ARCHITECTURES: dict[str, tuple[str, str]] = {
    "resnet18": ("resnet", "ResNet-18 (torchvision), 512 features"),
    "resnet34": ("resnet", "ResNet-34 (torchvision), 512 features"),
    "resnet50": ("resnet", "ResNet-50 (torchvision), 2048 features"),
    "resnet101": ("resnet", "ResNet-101 (torchvision), 2048 features"),
    "resnet152": ("resnet", "ResNet-152 (torchvision), 2048 features"),
    "resnext50_32x4d": ("resnext", "ResNeXt-50 32x4d (torchvision), 2048 features"),
    "resnext101_32x8d": ("resnext", "ResNeXt-101 32x8d (torchvision), 2048 features"),
    "wide_resnet50_2": ("wide-resnet", "Wide ResNet-50-2 (torchvision), 2048 features"),
    "wide_resnet101_2": ("wide-resnet", "Wide ResNet-101-2 (torchvision), 2048 features"),
}

#: Options that build a tiny CPU-fast version of each architecture: the same blocks, stem and
#: grouping, but narrow (``width``) and one block per stage (``blocks``).
_TINY: dict[str, Any] = {"small_input": True, "image_size": 16, "width": 8, "blocks": [1, 1, 1, 1]}
_TINY_GROUPED: dict[str, Any] = {**_TINY, "width": 16}


#: The image domain's options.
DOMAIN_OPTIONS: dict[str, str] = {
    "max_pixels": "largest image (width x height) read; larger ones are bad records",
    "verify": "decode (read every image fully when loading) or header (only its header)",
}

#: The ResNet backbones' options (besides ``pretrained``).
BACKBONE_OPTIONS: dict[str, str] = {
    "small_input": "a 3x3 stride-1 stem without max-pooling, for images of 32 px and less",
    "in_channels": "input channels (1: grey; RGB stem weights are summed over colour)",
    "image_size": "side of the square input, in pixels (default 224, or 32 with small_input)",
    "resize_size": "side the image is resized to before the centre crop",
    "width": "channels of the stem (64 is the standard network; tiny test models use less)",
    "blocks": "residual blocks per stage, four counts (default: the architecture's)",
    "augmentation": "training-time augmentation: false, or {scale, ratio, hflip}",
    "channels_last": "store weights and inputs channels-last",
    "zero_init_residual": "start each residual branch's last norm at zero",
}


#: The timm backbones' options (besides ``pretrained``).
TIMM_OPTIONS: dict[str, str] = {
    "model": "timm model name, with an optional pretrained tag (convnext_tiny.fb_in1k); "
    "timm.list_models() lists them",
    "in_channels": "input channels (1: grey; pretrained RGB stem weights are summed)",
    "image_size": "side of the square input (default: the model's pretrained input size)",
    "resize_size": "side the image is resized to before the centre crop (default: from the "
    "model's crop share)",
    "augmentation": "training-time augmentation: false, or {scale, ratio, hflip}",
    "model_args": "keyword arguments of timm.create_model (depths, dims, drop_path_rate, ...)",
    "channels_last": "store weights and inputs channels-last",
}


@dataclass(frozen=True)
class TimmModel:
    """One curated timm backbone: what ``lepton plugins`` lists and ``list_backbones`` filters
    on (any other timm model is the generic ``timm`` backbone with ``model: <name>``)."""

    model: str
    architecture: str
    params_m: float
    feature_dim: int
    tags: tuple[str, ...]
    description: str
    tiny_args: Mapping[str, Any] = field(default_factory=dict)


#: Registered as ``timm-<model>``: a handful of widely used architectures; their tiny options
#: build narrow versions for the conformance kit.
TIMM_MODELS: tuple[TimmModel, ...] = (
    TimmModel(
        "resnet50",
        "resnet",
        23.5,
        2048,
        ("a1_in1k", "a1h_in1k", "a2_in1k", "a3_in1k", "tv_in1k", "tv2_in1k"),
        "ResNet-50 (timm), 2048 features",
        {"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64], "stem_width": 8},
    ),
    TimmModel(
        "convnext_tiny",
        "convnext",
        27.8,
        768,
        ("in12k_ft_in1k", "fb_in1k", "fb_in22k", "fb_in22k_ft_in1k"),
        "ConvNeXt-Tiny (timm), 768 features",
        {"depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64]},
    ),
    TimmModel(
        "efficientnet_b0",
        "efficientnet",
        4.0,
        1280,
        ("ra_in1k", "ra4_e3600_r224_in1k"),
        "EfficientNet-B0 (timm), 1280 features",
    ),
    TimmModel(
        "mobilenetv3_small_100",
        "mobilenetv3",
        1.5,
        1024,
        ("lamb_in1k",),
        "MobileNetV3-Small 1.0 (timm), 1024 features",
    ),
    TimmModel(
        "vit_small_patch16_224",
        "vit",
        21.7,
        384,
        ("augreg_in21k_ft_in1k", "augreg_in1k", "augreg_in21k", "dino"),
        "ViT-S/16 at 224 px (timm), 384 features",
        {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2},
    ),
)


def _make_domain(**options: Any) -> Any:
    from lepton_image.domain import ImageDomain

    return ImageDomain(**options)


def _backbone_factory(arch: str) -> Any:
    def factory(pretrained: Any = None, **options: Any) -> Any:
        from lepton_image.backbones import build_resnet

        return build_resnet(arch, pretrained=pretrained, **options)

    factory.__name__ = f"create_{arch}"
    factory.__doc__ = (
        f"Build {arch}: ``pretrained`` is a torchvision weights name, a file or folder."
    )
    return factory


def _timm_factory(fixed: str | None) -> Any:
    def factory(pretrained: Any = None, *, model: str | None = None, **options: Any) -> Any:
        from lepton_image.timm_backbones import build_timm

        if fixed is not None and model is not None and model.split(".", 1)[0] != fixed:
            from lepton_platform.errors import ConfigError

            raise ConfigError(
                f"backbone 'timm-{fixed}' builds timm's {fixed}, not {model!r}: use the "
                f"backbone 'timm' with model: {model}"
            )
        return build_timm(model or fixed, pretrained=pretrained, **options)

    factory.__name__ = f"create_timm_{fixed}" if fixed else "create_timm"
    factory.__doc__ = (
        "Build a timm model: ``pretrained`` is True or a tag (timm's weights), a file or "
        "folder, or a Lepton model folder."
    )
    return factory


def _timm_specs() -> list[BackboneSpec]:
    tiny_size = 32
    specs = [
        BackboneSpec(
            name="timm",
            domain="image",
            family="timm",
            description="Any timm image model (timm.list_models()): timm/<model> or the "
            "model option, e.g. timm/convnext_tiny; pretrained is True or a tag for timm's "
            "weights",
            factory=_timm_factory(None),
            options=TIMM_OPTIONS,
            name_option="model",
            tiny_options={"model": "test_convnext", "image_size": tiny_size},
            metadata={"architecture": "any", "source": "timm", "pretrained": True},
        )
    ]
    for entry in TIMM_MODELS:
        tiny: dict[str, Any] = {"image_size": tiny_size}
        if entry.tiny_args:
            tiny["model_args"] = dict(entry.tiny_args)
        specs.append(
            BackboneSpec(
                name=f"timm-{entry.model}",
                domain="image",
                family="timm",
                description=entry.description,
                factory=_timm_factory(entry.model),
                options=TIMM_OPTIONS,
                tiny_options=tiny,
                metadata={
                    "architecture": entry.architecture,
                    "source": "timm",
                    "timm_model": entry.model,
                    "params_m": entry.params_m,
                    "feature_dim": entry.feature_dim,
                    "pretrained": True,
                    "pretrained_tags": entry.tags,
                },
            )
        )
    return specs


@hookimpl
def lepton_domains() -> list[DomainSpec]:
    return [
        DomainSpec(
            name="image",
            modality="image",
            factory=_make_domain,
            options=DOMAIN_OPTIONS,
            description="Images from class folders, CSV/JSON lists, saved datasets or arrays",
        )
    ]


@hookimpl
def lepton_backbones() -> list[BackboneSpec]:
    return [
        BackboneSpec(
            name=arch,
            domain="image",
            family=family,
            description=description,
            factory=_backbone_factory(arch),
            options=BACKBONE_OPTIONS,
            tiny_options=_TINY_GROUPED if family == "resnext" else _TINY,
        )
        for arch, (family, description) in ARCHITECTURES.items()
    ] + _timm_specs()
