"""The hooks of the image plugin. Light: nothing heavy is imported until a factory is called."""

from __future__ import annotations

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
    ]
