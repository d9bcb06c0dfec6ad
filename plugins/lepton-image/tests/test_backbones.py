"""The ResNet backbones: torchvision's architecture, pretrained weights from files, folders and
Lepton models, stem adaptation, and the load report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lepton_image.backbones import ResNetBackbone, adapt_stem_kernel, build_resnet
from safetensors.torch import save_file
from torch import nn
from torchvision import models

import lepton_platform as lp
from lepton_platform.errors import ArtifactError, ConfigError
from lepton_platform.testing.tiny import save_backbone


def _torchvision(arch: str, seed: int = 0) -> Any:
    torch.manual_seed(seed)
    net = getattr(models, arch)(weights=None)
    net.fc = nn.Identity()
    return net.eval()


def _state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.contiguous() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("arch", ["resnet18", "resnet50", "resnext50_32x4d"])
def test_standard_path_is_torchvisions_architecture(arch: str) -> None:
    ours = {k: tuple(v.shape) for k, v in ResNetBackbone(arch).state_dict().items()}
    theirs = {
        k: tuple(v.shape)
        for k, v in getattr(models, arch)(weights=None).state_dict().items()
        if not k.startswith("fc.")
    }
    assert ours == theirs


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch",
    [
        "resnet34",
        "resnet101",
        "resnet152",
        "resnext101_32x8d",
        "wide_resnet50_2",
        "wide_resnet101_2",
    ],
)
def test_standard_path_is_torchvisions_architecture_deep(arch: str) -> None:
    test_standard_path_is_torchvisions_architecture(arch)


def test_registry_lists_the_family() -> None:
    names = {s.name for s in lp.list_backbones("resnet*", domain="image")}
    assert {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"} <= names
    spec = lp.get_backbone("resnet50")
    assert spec.family == "resnet" and spec.provider is not None
    assert spec.provider.distribution == "lepton-image"
    backbone = lp.create_backbone("resnet18", pretrained=None, small_input=True, width=8)
    assert backbone.feature_dim == 64


def test_safetensors_file_gives_torchvisions_features(tmp_path: Path) -> None:
    reference = _torchvision("resnet18")
    save_file(_state(reference), str(tmp_path / "r18.safetensors"))
    backbone = ResNetBackbone("resnet18", pretrained=tmp_path / "r18.safetensors").eval()
    report = backbone.load_report
    assert report is not None
    assert not report.missing and not report.unexpected and not report.mismatched
    assert len(report.matched) == len(_state(reference))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(backbone(pixel_values=x), reference(x), atol=1e-5)


def test_pth_file_and_folder(tmp_path: Path) -> None:
    reference = _torchvision("resnet18", seed=1)
    (tmp_path / "one").mkdir()
    torch.save({"state_dict": reference.state_dict()}, tmp_path / "one" / "w.pth")
    backbone = ResNetBackbone("resnet18", pretrained=str(tmp_path / "one")).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(backbone(pixel_values=x), reference(x), atol=1e-5)
    torch.save({"x": 1}, tmp_path / "one" / "other.pt")
    with pytest.raises(ArtifactError, match="expected one weights file"):
        ResNetBackbone("resnet18", pretrained=tmp_path / "one")


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    torch.save({"model": nn.Linear(2, 2)}, tmp_path / "evil.pth")  # a pickled module
    with pytest.raises(ArtifactError, match="weights_only=True"):
        ResNetBackbone("resnet18", pretrained=tmp_path / "evil.pth")


def _saved(tmp_path: Path, source: ResNetBackbone, preprocessing: dict[str, Any]) -> Path:
    return save_backbone(
        tmp_path / "source-model",
        source,
        domain="image",
        name="resnet18",
        label_names=("a", "b", "c"),
        preprocessing=preprocessing,
    )


def test_lepton_model_folder_takes_the_backbone_weights(tmp_path: Path) -> None:
    source = ResNetBackbone("resnet18", small_input=True, width=8, image_size=16)
    preprocessing = {**source.preprocessor().config(), "mean": [0.1, 0.2, 0.3]}
    preprocessing["std"] = [0.5, 0.5, 0.5]
    folder = _saved(tmp_path, source, preprocessing)
    target = build_resnet("resnet18", pretrained=folder)  # the recorded architecture
    assert target.load_report is not None and not target.load_report.missing
    assert target.load_report.share == 1.0
    assert (target.width, target.image_size) == (8, 16)
    assert target.preprocessor().mean == (0.1, 0.2, 0.3)
    source.eval()
    target.eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(source(pixel_values=x), target(pixel_values=x), atol=1e-6)
    with pytest.raises(ArtifactError, match="is a Lepton model folder: build the backbone"):
        ResNetBackbone("resnet18", pretrained=folder)  # the unchecked path is refused
    # (the conformance kit checks that a tampered model.safetensors is refused)


def test_small_input_stem_adapts_the_7x7_kernel(tmp_path: Path) -> None:
    reference = _torchvision("resnet18", seed=2)
    save_file(_state(reference), str(tmp_path / "r18.safetensors"))
    small = ResNetBackbone("resnet18", pretrained=tmp_path / "r18.safetensors", small_input=True)
    report = small.load_report
    assert report is not None and report.adapted == ["conv1.weight"] and not report.mismatched
    full = reference.conv1.weight.detach()
    kernel = small.conv1.weight.detach()
    assert kernel.shape == (64, 3, 3, 3)
    centre = full[..., 2:5, 2:5]
    ratio = kernel.flatten(1).norm(dim=1) / centre.flatten(1).norm(dim=1)
    assert torch.allclose(kernel / ratio.view(-1, 1, 1, 1), centre, atol=1e-6)  # same shape
    assert torch.allclose(kernel.flatten(1).norm(dim=1), full.flatten(1).norm(dim=1), atol=1e-5)
    assert isinstance(small.maxpool, nn.Identity) and small.conv1.stride == (1, 1)
    assert small(pixel_values=torch.randn(2, 3, 28, 28)).shape == (2, 512)


def test_one_channel_stem_sums_colour_filters(tmp_path: Path) -> None:
    reference = _torchvision("resnet18", seed=3)
    save_file(_state(reference), str(tmp_path / "r18.safetensors"))
    grey = ResNetBackbone("resnet18", pretrained=tmp_path / "r18.safetensors", in_channels=1)
    grey.eval()
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        assert torch.allclose(grey(pixel_values=x), reference(x.repeat(1, 3, 1, 1)), atol=1e-4)
    assert grey.preprocessor().channels == 1
    both = adapt_stem_kernel(reference.conv1.weight, 3, 1)
    assert both.shape == (64, 1, 3, 3)


def test_other_shapes_are_reported(tmp_path: Path) -> None:
    save_file(_state(_torchvision("resnet18")), str(tmp_path / "r18.safetensors"))
    with pytest.warns(UserWarning, match="missing"):
        deeper = ResNetBackbone("resnet34", pretrained=tmp_path / "r18.safetensors")
    report = deeper.load_report
    assert report is not None
    assert "layer1.2.conv1.weight" in report.missing
    assert len(report.matched) == len(_state(_torchvision("resnet18")))
    narrow = ResNetBackbone("resnet18", small_input=True, width=8)
    save_file(_state(narrow), str(tmp_path / "narrow.safetensors"))
    with pytest.warns(UserWarning, match="other shapes"):
        wide = ResNetBackbone("resnet18", pretrained=tmp_path / "narrow.safetensors")
    assert wide.load_report is not None
    assert ("layer1.0.conv1.weight", (64, 64, 3, 3), (8, 8, 3, 3)) in wide.load_report.mismatched
    assert wide.load_report.to_json()["mismatched"]


def test_pretrained_names_and_paths_are_checked_before_any_download() -> None:
    with pytest.raises(ConfigError, match=r"no torchvision weights 'IMAGENET9K'.*IMAGENET1K_V1"):
        ResNetBackbone("resnet18", pretrained="IMAGENET9K")
    with pytest.raises(ArtifactError, match="do not exist"):
        ResNetBackbone("resnet18", pretrained="./missing/weights.safetensors")
    with pytest.raises(ConfigError, match="unknown ResNet architecture"):
        ResNetBackbone("resnet19")


def test_layer_groups_batchnorm_and_memory_format() -> None:
    torch.manual_seed(0)
    fast = ResNetBackbone(
        "resnet50", small_input=True, width=8, blocks=[1, 1, 1, 1], channels_last=True
    ).eval()
    assert fast.group_names() == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert len(fast.batchnorm_layers()) == 1 + 4 * 4  # stem + 3 per block + 1 downsample
    plain = ResNetBackbone("resnet50", small_input=True, width=8, blocks=[1, 1, 1, 1]).eval()
    assert not plain.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    plain.load_state_dict(fast.state_dict())
    assert fast.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(fast(pixel_values=x), plain(pixel_values=x), atol=1e-5)
    with pytest.raises(ConfigError, match="pixel_values"):
        fast(images=x)


def test_transfer_from_a_saved_lepton_model(tmp_path: Path) -> None:
    """A model Lepton trained on a source domain (saved by the artifacts module) seeds a
    backbone for another domain: here a grey-image one with its own 1-channel stem."""
    torch.manual_seed(0)
    source = ResNetBackbone("resnet18", small_input=True, width=8, image_size=16)
    folder = _saved(tmp_path, source, source.preprocessor().config())
    target = lp.create_backbone("resnet18", pretrained=str(folder), in_channels=1).eval()
    report = target.load_report
    assert report is not None and report.adapted == ["conv1.weight"]
    assert not report.missing and not report.unexpected and not report.mismatched
    source.eval()
    grey = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        expected = source(pixel_values=grey.repeat(1, 3, 1, 1))
        assert torch.allclose(target(pixel_values=grey), expected, atol=1e-4)


def test_torchvision_weights_are_checked_against_their_hash_and_never_unpickled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The torchvision loading path, offline: a file planted in $TORCH_HOME/hub/checkpoints
    under the weights' name is checked against the SHA-256 prefix in that name (on every load,
    not only on download), and a pickle payload there never runs."""
    from torchvision.models import ResNet18_Weights

    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    filename = ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.save(_torchvision("resnet18", seed=4).state_dict(), checkpoints / filename)
    with pytest.raises(ArtifactError, match="does not match the SHA-256 prefix 'f37072fd'"):
        ResNetBackbone("resnet18", pretrained="DEFAULT")
    marker = tmp_path / "payload-ran"
    (checkpoints / filename).write_bytes(_pickle_payload(marker))
    with pytest.raises(ArtifactError):
        ResNetBackbone("resnet18", pretrained="IMAGENET1K_V1")
    assert not marker.exists()


def _pickle_payload(marker: Path) -> bytes:
    """A pickle that creates ``marker`` when it is unpickled (what an attacker would plant)."""
    import io
    import pickle

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (open, (str(marker), "w"))

    buffer = io.BytesIO()
    torch.save({"conv1.weight": Payload()}, buffer, _use_new_zipfile_serialization=True)
    assert pickle  # the payload is a real pickle, as torch.save writes one
    return buffer.getvalue()
