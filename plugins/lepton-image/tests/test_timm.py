"""timm backbones: the registered family, timm's pretrained mechanism (offline, from a warm
Hugging Face cache), local weights files, stem adaptation in the load report, timm's layer
groups, the scratch baseline, ranking, and a ``lepton compare`` run on a tiny timm model.
Nothing is downloaded: models are built with random weights and tiny configs."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch
from lepton_image.testing import write_image
from lepton_image.timm_backbones import TimmBackbone
from safetensors.torch import save_file

import lepton_platform as lp
from lepton_platform.errors import ArtifactError, ConfigError

TINY_RESNET = {"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64], "stem_width": 8}
TEST_RESNET = {"model": "test_resnet", "image_size": 32}
CONVNEXT = {"depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64]}
LEPTON = [sys.executable, "-m", "lepton_platform.cli.main"]


def _state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.contiguous() for k, v in net.state_dict().items()}


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache; the process is offline (the root conftest sets it)."""
    cache = tmp_path / "hf"
    cache.mkdir()
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def _plant(cache: Path, repo: str, state: dict[str, torch.Tensor]) -> None:
    """Put ``state`` where huggingface_hub keeps a downloaded ``model.safetensors`` of ``repo``."""
    revision = "0" * 40
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "snapshots" / revision).mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(revision)
    save_file(state, str(folder / "snapshots" / revision / "model.safetensors"))


def test_the_family_is_registered_with_metadata() -> None:
    names = {s.name for s in lp.list_backbones(family="timm")}
    assert {"timm", "timm-resnet50", "timm-convnext_tiny", "timm-vit_small_patch16_224"} <= names
    spec = lp.get_backbone("timm-convnext_tiny")
    assert spec.metadata["architecture"] == "convnext" and spec.metadata["feature_dim"] == 768
    assert "fb_in1k" in spec.metadata["pretrained_tags"]
    assert [s.name for s in lp.list_backbones(family="timm", architecture="vit")] == [
        "timm-vit_small_patch16_224"
    ]
    summary = json.loads(json.dumps(lp.get_backbone("timm").summary()))
    assert "model" in summary["options"]


def test_any_timm_model_by_name_with_timms_groups_and_feature_dim() -> None:
    backbone = lp.create_backbone("timm", model="resnet18", image_size=32, model_args=TINY_RESNET)
    assert isinstance(backbone, TimmBackbone) and backbone.feature_dim == 64
    assert backbone.group_names() == ["stem", "layer1", "layer2", "layer3", "layer4"]
    vit = lp.create_backbone(
        "timm-vit_small_patch16_224",
        image_size=32,
        model_args={"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2},
    )
    assert vit.group_names() == ["stem", "blocks.0", "blocks.1"]  # cls_token, pos_embed first
    assert vit(**vit.example_batch(2)).shape == (2, 32)
    mobile = lp.create_backbone("timm-mobilenetv3_small_100", image_size=32)
    assert mobile.feature_dim == 1024  # the pre-logits layer after pooling (head_hidden_size)
    prep = backbone.preprocessor().config()
    assert prep["interpolation"] == "bicubic" and prep["resize_size"] == round(32 / 0.95)


def test_names_tags_and_options_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"no model 'resnt18'; did you mean .*'resnet18'"):
        lp.create_backbone("timm", model="resnt18")
    with pytest.raises(ConfigError, match=r"no pretrained tag 'bogus'; its tags: .*a1_in1k"):
        lp.create_backbone("timm", model="resnet18", pretrained="bogus")
    with pytest.raises(ConfigError, match="model_args may not set 'in_chans'"):
        lp.create_backbone("timm", model="resnet18", model_args={"in_chans": 1})
    with pytest.raises(ConfigError, match="'timm-resnet50' builds timm's resnet50"):
        lp.create_backbone("timm-resnet50", model="convnext_tiny")
    with pytest.raises(ConfigError, match="give model"):
        lp.create_backbone("timm")
    with pytest.raises(ConfigError, match="has no option 'model_arg'"):
        lp.create_backbone("timm", model="resnet18", model_arg={})


def test_timms_pretrained_weights_from_a_warm_cache(hf_cache: Path) -> None:
    """``pretrained=True`` goes through timm's own mechanism (the Hub, here its cache):
    every tensor loads, the load report says so; a grey backbone gets the stem summed."""
    torch.manual_seed(1)
    reference = timm.create_model("test_resnet", num_classes=0).eval()
    full = timm.create_model("test_resnet")  # the checkpoint has its classifier
    full.load_state_dict({**full.state_dict(), **reference.state_dict()})
    _plant(hf_cache, "timm/test_resnet.r160_in1k", _state(full))
    backbone = lp.create_backbone("timm", model="test_resnet", pretrained=True).eval()
    report = backbone.load_report
    assert report is not None and report.share == 1.0 and not report.unexpected
    assert report.source == "timm:test_resnet" and backbone.pretrained == report.source
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(backbone(pixel_values=x), reference(x), atol=1e-5)
    grey = lp.create_backbone(
        "timm", model="test_resnet", pretrained="r160_in1k", in_channels=1
    ).eval()
    assert grey.load_report is not None and grey.load_report.adapted == ["conv1.0.weight"]
    assert grey.config()["model"] == "test_resnet.r160_in1k"
    g = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(grey(pixel_values=g), reference(g.repeat(1, 3, 1, 1)), atol=1e-4)
    with pytest.raises(ArtifactError, match=r"test_convnext.*need a network"):
        lp.create_backbone("timm", model="test_convnext", pretrained=True)


def test_a_local_weights_file_and_the_load_report(tmp_path: Path) -> None:
    torch.manual_seed(2)
    source = timm.create_model("resnet18", **TINY_RESNET)  # with its 1000-way fc
    save_file(_state(source), str(tmp_path / "w.safetensors"))
    backbone = lp.create_backbone(
        "timm", model="resnet18", pretrained=str(tmp_path / "w.safetensors"),
        model_args=TINY_RESNET, image_size=32,
    )  # fmt: skip
    report = backbone.load_report
    assert report is not None and report.share == 1.0 and not report.unexpected  # fc dropped
    rgb = lp.create_backbone(
        "timm", model="resnet18", pretrained=str(tmp_path / "w.safetensors"),
        model_args=TINY_RESNET, in_channels=1,
    )  # fmt: skip
    assert rgb.load_report is not None and rgb.load_report.adapted == ["conv1.weight"]
    # a grey source into a colour backbone: the one filter repeated, scaled by 1/3
    torch.save({"state_dict": _state(rgb.net)}, tmp_path / "grey.pth")
    colour = TimmBackbone(
        "resnet18", pretrained=tmp_path / "grey.pth", model_args=TINY_RESNET
    ).eval()
    assert colour.load_report is not None and colour.load_report.adapted == ["conv1.weight"]
    assert torch.allclose(colour.net.conv1.weight, rgb.net.conv1.weight.repeat(1, 3, 1, 1) / 3)
    narrow = {**TINY_RESNET, "channels": [4, 8, 16, 32]}
    with pytest.warns(UserWarning, match="other shapes"):
        other = TimmBackbone("resnet18", pretrained=tmp_path / "w.safetensors", model_args=narrow)
    assert other.load_report is not None and other.load_report.mismatched


def test_pickled_weights_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (open, (str(marker), "w"))

    buffer = io.BytesIO()
    torch.save({"conv1.weight": Payload()}, buffer)
    (tmp_path / "evil.pth").write_bytes(buffer.getvalue())
    assert pickle  # a real pickle, as torch.save writes one
    with pytest.raises(ArtifactError, match="weights_only=True"):
        TimmBackbone("resnet18", pretrained=tmp_path / "evil.pth", model_args=TINY_RESNET)
    assert not marker.exists()


def _pets(root: Path) -> Path:
    for i in range(12):
        write_image(root / "red" / f"{i}.png", size=(16, 16), seed=i)
        write_image(root / "blue" / f"{i}.png", size=(16, 16), seed=100 + i)
    return root


def test_rank_and_the_scratch_baseline(tmp_path: Path) -> None:
    from lepton_platform.api.job import scratch_architecture

    data = _pets(tmp_path / "pets")
    ranking = lp.rank(
        domain="image",
        data=[{"path": str(data)}],
        candidates=[
            {"name": "timm", "label": "test_resnet", "options": TEST_RESNET},
            {"name": "timm-convnext_tiny", "options": {"image_size": 32, "model_args": CONVNEXT}},
            {"name": "resnet18", "options": lp.get_backbone("resnet18").tiny_options},
        ],
        cache=False,
    )
    assert sorted(ranking.order) == ["resnet18", "test_resnet", "timm-convnext_tiny"]
    assert all(isinstance(r["logme"], float) for r in ranking.rows)
    torch.manual_seed(0)
    source = TimmBackbone("test_resnet", image_size=32)
    save_file(_state(source.net), str(tmp_path / "t.safetensors"))
    name, architecture = scratch_architecture(
        "timm", str(tmp_path / "t.safetensors"), {"model": "test_resnet", "image_size": 32}
    )
    scratch = lp.create_backbone(name, pretrained=None, **architecture)
    assert scratch.load_report is None and scratch.config() == source.config()


COMPARE = """\
domain: image
data:
  sources: [pets]
  split: {validation: 0.25, test: 0.25, seed: 0}
backbone:
  name: timm
  pretrained: t.safetensors
  options: {model: test_convnext, image_size: 32, augmentation: {hflip: 0}}
train: {epochs: 1, batch_size: 8, lr: 0.01, progress: false, trackers: []}
evaluation: {bootstrap: 50}
compare:
  strategies: [finetune, linear-probe]
  seeds: [0]
  baselines: [scratch]
output: {root: runs}
"""


def _lepton(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LEPTON_CACHE_DIR": str(cwd / "cache")}
    return subprocess.run(
        [*LEPTON, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_lepton_plugins_lists_the_timm_family(tmp_path: Path) -> None:
    result = _lepton(tmp_path, "plugins", "--json")
    assert result.returncode == 0, result.stderr
    image = next(p for p in json.loads(result.stdout)["plugins"] if p["name"] == "image")
    timm_specs = {s["name"]: s for s in image["specs"]["backbone"] if s.get("family") == "timm"}
    assert {"timm", "timm-convnext_tiny", "timm-efficientnet_b0"} <= set(timm_specs)
    vit = timm_specs["timm-vit_small_patch16_224"]["metadata"]
    assert vit["architecture"] == "vit" and vit["feature_dim"] == 384
    assert "augreg_in1k" in vit["pretrained_tags"]


@pytest.mark.slow
def test_lepton_compare_with_a_tiny_timm_model(tmp_path: Path) -> None:
    """``lepton compare`` as a real subprocess: a timm source model (a weights file) fine-tuned
    and probed beside the from-scratch baseline, the same architecture with random weights."""
    _pets(tmp_path / "pets")
    torch.manual_seed(0)
    net = timm.create_model("test_convnext", num_classes=0)
    save_file(_state(net), str(tmp_path / "t.safetensors"))
    (tmp_path / "cmp.yaml").write_text(COMPARE, encoding="utf-8")
    result = _lepton(tmp_path, "compare", "cmp.yaml", "--quiet", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    table = json.loads(result.stdout)
    rows = {r["name"]: r for r in table["rows"]}
    assert table["metric"] == "accuracy"
    assert set(rows) == {"finetune", "linear-probe", "scratch"}
    assert rows["scratch"]["kind"] == "baseline"
    assert set(rows["finetune"]["differences"]) >= {"scratch"}
    for row in rows.values():
        assert 0.0 <= row["mean"] <= 1.0 and len(row["runs"]) == 1


def test_timm_slash_model_names_build_train_save_and_load(tmp_path: Path) -> None:
    """``timm/<model>`` is the ``timm`` backbone with that model (the spec's ``name_option``),
    through the whole path: a run, its saved model, ``lp.load``."""
    assert lp.get_backbone("timm/resnet18").name == "timm"
    backbone = lp.create_backbone("timm/resnet18", image_size=32, model_args=TINY_RESNET)
    assert isinstance(backbone, TimmBackbone) and backbone.registered_name == "timm/resnet18"
    assert backbone.group_names() == ["stem", "layer1", "layer2", "layer3", "layer4"]
    with pytest.raises(ConfigError, match="sets model='resnet18', but the options give"):
        lp.create_backbone("timm/resnet18", model="convnext_tiny")
    with pytest.raises(ConfigError, match=r"give the model after '/' \(timm/<model>\)"):
        lp.create_backbone("timm/")
    with pytest.raises(ConfigError, match="'resnet18' does not take a name after '/'"):
        lp.create_backbone("resnet18/x")

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(24, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(24) % 2
    images[labels == 1, :, :, 0] = 255  # a red channel: learnable
    result = lp.transfer(
        domain="image",
        data={"images": images, "labels": labels},
        backbone="timm/resnet18",
        backbone_options={"image_size": 32, "model_args": TINY_RESNET, "augmentation": False},
        pretrained=None,
        strategy="finetune",
        train={"epochs": 1, "batch_size": 8, "progress": False},
        output_dir=tmp_path / "run",
    )
    model = lp.load(tmp_path / "run" / "model")
    saved = model.manifest["backbone"]
    assert saved["name"] == "timm/resnet18" and saved["config"]["model"] == "resnet18"
    assert isinstance(model.model.backbone, TimmBackbone)
    trained = result.model.state_dict()  # the loaded model is the trained one
    loaded = model.model.state_dict()
    assert trained.keys() == loaded.keys()
    assert all(torch.equal(trained[k].cpu(), loaded[k].cpu()) for k in trained)
    assert {p.label for p in model.predict(list(images[:4]))} <= {"0", "1"}
