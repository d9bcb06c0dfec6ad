"""The hooks of the medical plugin. Light: nothing heavy is imported until a factory is called.

The backbones are the image plugin's ResNets, built through the registry
(``lepton_platform.create_backbone``) with a one-channel stem by default: pretrained RGB stem
weights are summed over the colour channels, so a grey image keeps the pretrained responses.
With ``in_channels: 3`` (colour sources, ``channels: rgb``) a grey source model's stem filter
is repeated over the three channels and scaled by 1/3; either way the load report lists the
stem as adapted.
"""

from __future__ import annotations

from typing import Any

from lepton_platform import BackboneSpec, DomainSpec, MetricSpec, hookimpl

#: medical backbone -> (image-plugin backbone it builds, description)
BACKBONES: dict[str, tuple[str, str]] = {
    "medical-resnet18": ("resnet18", "ResNet-18 with a 1-channel stem, 512 features"),
    "medical-resnet34": ("resnet34", "ResNet-34 with a 1-channel stem, 512 features"),
    "medical-resnet50": ("resnet50", "ResNet-50 with a 1-channel stem, 2048 features"),
    "medical-resnet101": ("resnet101", "ResNet-101 with a 1-channel stem, 2048 features"),
}

_TINY: dict[str, Any] = {"small_input": True, "image_size": 16, "width": 8, "blocks": [1, 1, 1, 1]}


#: The medical-image domain's options.
DOMAIN_OPTIONS: dict[str, str] = {
    "window": "intensity window of every source: file (the file's own), a preset name "
    "(lung, bone, ...), [centre, width] or {center, width}",
    "normalize": "auto, image, dataset, none or {range: [low, high]}: how intensities map to 0-255",
    "percentiles": "the low and high percentiles of image and dataset normalisation",
    "per_channel": "colour images: the normalisation's percentiles per channel (false: over "
    "all channels, keeping the colour balance)",
    "channels": "grey (default: colour made grey), rgb (colour kept, grey repeated; use a "
    "3-channel backbone) or auto (rgb when a source has colour images)",
    "salt": "salt of the patient-id hashes (default: $LEPTON_PATIENT_SALT)",
    "max_pixels": "most pixels of one image (decompression-bomb guard)",
    "max_voxels": "most voxels of one volume or multi-frame DICOM (decompression-bomb guard)",
}


def _make_domain(**options: Any) -> Any:
    from lepton_medical.domain import MedicalImageDomain

    return MedicalImageDomain(**options)


def _backbone_factory(base: str) -> Any:
    def factory(pretrained: Any = None, *, in_channels: int = 1, **options: Any) -> Any:
        from lepton_platform.registry import create_backbone

        return create_backbone(base, pretrained=pretrained, in_channels=in_channels, **options)

    factory.__name__ = f"create_medical_{base}"
    factory.__doc__ = (
        f"Build the image plugin's {base} with a 1-channel stem (``in_channels=1``); "
        "``pretrained`` and the other options are the image backbone's."
    )
    return factory


def _metric_factory(module: str, config_name: str | None = None) -> Any:
    def load() -> Any:
        from lepton_medical.metrics import load_module

        return load_module(module, config_name)

    load.__name__ = f"load_{config_name or module}"
    return load


def _metric(
    name: str,
    module: str,
    description: str,
    *,
    config: str | None = None,
    higher: bool = True,
) -> MetricSpec:
    return MetricSpec(
        name=name,
        factory=_metric_factory(module, config),
        description=description,
        needs_scores=True,
        higher_is_better=higher,
        headline=name,
        num_labels=True,
        multi_label=False,
    )


def _backbone_options() -> dict[str, str]:
    from lepton_image.plugin import BACKBONE_OPTIONS  # the image plugin's options, light

    return {
        **BACKBONE_OPTIONS,
        "in_channels": "input channels: 1 (default, grey scans) or 3 (colour, channels: rgb); "
        "pretrained stem weights of the other count are summed or repeated",
    }


@hookimpl
def lepton_domains() -> list[DomainSpec]:
    return [
        DomainSpec(
            name="medical-image",
            modality="image",
            factory=_make_domain,
            options=DOMAIN_OPTIONS,
            description="DICOM, NIfTI, 8/16-bit PNG/TIFF and MedMNIST .npz, patient-grouped",
        )
    ]


@hookimpl
def lepton_backbones() -> list[BackboneSpec]:
    return [
        BackboneSpec(
            name=name,
            domain="medical-image",
            family="resnet",
            description=description,
            factory=_backbone_factory(base),
            options=_backbone_options(),
            tiny_options=_TINY,
            metadata={"builds": base, "in_channels": 1},
        )
        for name, (base, description) in BACKBONES.items()
    ]


@hookimpl
def lepton_metrics() -> list[MetricSpec]:
    rates = "threshold_rates"
    return [
        _metric(
            "sensitivity",
            rates,
            "Sensitivity (true-positive rate) at a threshold",
            config="sensitivity",
        ),
        _metric(
            "specificity",
            rates,
            "Specificity (true-negative rate) at a threshold",
            config="specificity",
        ),
        _metric(
            "ppv",
            rates,
            "Positive predictive value (precision) at a threshold",
            config="ppv",
        ),
        _metric("npv", rates, "Negative predictive value at a threshold", config="npv"),
        _metric("ece", "ece", "Expected calibration error of the class scores", higher=False),
    ]
