"""The medical backbones: the image plugin's ResNets through the registry, 1-channel stem summed
from the 3-channel pretrained stem."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import lepton_platform as lp

TINY = {"image_size": 32, "width": 8, "blocks": [1, 1, 1, 1]}


@pytest.mark.parametrize("small_input", [False, True])
def test_gray_image_matches_rgb_replicated_through_pretrained_stem(
    tmp_path: Path, small_input: bool
) -> None:
    torch.manual_seed(0)
    rgb = lp.create_backbone("resnet18", pretrained=None, small_input=small_input, **TINY)
    weights = tmp_path / "rgb.safetensors"
    save_file({k: v.contiguous() for k, v in rgb.state_dict().items()}, str(weights))
    gray = lp.create_backbone(
        "medical-resnet18", pretrained=str(weights), small_input=small_input, **TINY
    )
    assert gray.config()["in_channels"] == 1
    assert gray.conv1.weight.shape[1] == 1
    if not small_input:  # same kernel: exactly the colour-summed weights
        assert torch.allclose(gray.conv1.weight, rgb.conv1.weight.sum(dim=1, keepdim=True))
    rgb.eval()
    gray.eval()
    image = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        expected = rgb(pixel_values=image.repeat(1, 3, 1, 1))
        got = gray(pixel_values=image)
    assert torch.allclose(expected, got, atol=1e-5), (expected - got).abs().max()
    # and the stem matters: a randomly initialised 1-channel stem gives other features
    other = lp.create_backbone("medical-resnet18", pretrained=None, small_input=small_input, **TINY)
    other.eval()
    with torch.no_grad():
        assert not torch.allclose(other(pixel_values=image), expected, atol=1e-3)


def test_registered_names_and_preprocessing() -> None:
    names = [s.name for s in lp.list_backbones("medical-*")]
    assert {"medical-resnet18", "medical-resnet50"} <= set(names)
    assert lp.get_backbone("medical-resnet50").domain == "medical-image"
    backbone = lp.create_backbone("medical-resnet50", pretrained=None, **TINY)
    assert backbone.feature_dim == 8 * 8 * 4
    assert backbone.preprocessor().config()["channels"] == 1
