"""The ResNet backbones: torchvision's architecture, pretrained weights from files, folders and
Lepton models, stem adaptation, and the load report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from lepton_image.backbones import ResNetBackbone, adapt_stem_kernel
from safetensors.torch import save_file
from torch import nn
from torchvision import models

import lepton_platform as lp
from lepton_platform.errors import ArtifactError, ConfigError


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


def test_lepton_model_folder_takes_the_backbone_weights(tmp_path: Path) -> None:
    source = ResNetBackbone("resnet18", small_input=True, width=8, image_size=16)
    weights = {f"backbone.{k}": v.contiguous() for k, v in source.state_dict().items()}
    weights["head.weight"] = torch.zeros(3, 64)
    save_file(weights, str(tmp_path / "model.safetensors"))
    manifest = {"preprocessing": {"mean": [0.1, 0.2, 0.3], "std": [0.5, 0.5, 0.5]}}
    (tmp_path / "lepton.json").write_text(json.dumps(manifest))
    target = ResNetBackbone(
        "resnet18", pretrained=tmp_path, small_input=True, width=8, image_size=16
    )
    assert target.load_report is not None and not target.load_report.missing
    assert target.preprocessor().mean == (0.1, 0.2, 0.3)
    source.eval()
    target.eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(source(pixel_values=x), target(pixel_values=x), atol=1e-6)


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
    from lepton_platform.api.predictor import save_model
    from lepton_platform.models import TransferModel
    from lepton_platform.tasks import ClassificationTask

    torch.manual_seed(0)
    source = ResNetBackbone("resnet18", small_input=True, width=8, image_size=16)
    task = ClassificationTask(["a", "b"])
    model = TransferModel(source, task.build_head(source.feature_dim))
    folder = save_model(
        tmp_path / "source-model",
        model,
        domain="image",
        backbone="resnet18",
        backbone_config=source.config(),
        task="classification",
        task_config=task.config(),
        label_names=task.label_names,
        preprocessing=source.preprocessor().config(),
        strategy={"name": "full-finetune"},
        metrics={},
        data_fingerprints={},
    )
    target = ResNetBackbone(
        "resnet18", pretrained=folder, small_input=True, width=8, image_size=16, in_channels=1
    ).eval()
    report = target.load_report
    assert report is not None and report.adapted == ["conv1.weight"]
    assert not report.missing and not report.unexpected and not report.mismatched
    source.eval()
    grey = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        expected = source(pixel_values=grey.repeat(1, 3, 1, 1))
        assert torch.allclose(target(pixel_values=grey), expected, atol=1e-4)


def test_torchvision_weights_name_reads_a_warm_torch_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real torchvision loading path, offline: torchvision finds the file in
    $TORCH_HOME/hub/checkpoints and downloads nothing (here random weights stand in)."""
    from torchvision.models import ResNet18_Weights

    reference = _torchvision("resnet18", seed=4)
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    filename = ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    torch.save(reference.state_dict(), checkpoints / filename)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    backbone = ResNetBackbone("resnet18", pretrained="DEFAULT").eval()
    assert backbone.load_report is not None and not backbone.load_report.missing
    prep = backbone.preprocessor()
    assert (prep.image_size, prep.resize_size) == (224, 256)
    assert prep.mean == (0.485, 0.456, 0.406)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(backbone(pixel_values=x), reference(x), atol=1e-5)
