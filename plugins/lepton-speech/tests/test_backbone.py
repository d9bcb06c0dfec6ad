"""The wav2vec2-family backbones: tiny configs, masks, freezing, groups, and every way to load
weights (random, a local Hugging Face folder, a Lepton model trained on another domain)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from lepton_speech.backbone import SpeechBackbone
from lepton_speech.plugin import TINY_OPTIONS

from lepton_platform import create_backbone
from lepton_platform.errors import ArtifactError, ConfigError
from lepton_platform.testing.tiny import save_backbone

TINY: dict[str, Any] = dict(TINY_OPTIONS["model_config"])


def _tiny(name: str = "wav2vec2-base", **options: Any) -> SpeechBackbone:
    torch.manual_seed(0)
    config = {**TINY, **options.pop("model_config", {})}
    backbone = create_backbone(name, pretrained=None, model_config=config, **options)
    assert isinstance(backbone, SpeechBackbone)
    return backbone


@pytest.mark.parametrize(
    ("name", "family"),
    [("wav2vec2-base", "wav2vec2"), ("hubert-base", "hubert"), ("wavlm-base", "wavlm")],
)
def test_each_family_builds_pools_and_groups(name: str, family: str) -> None:
    backbone = _tiny(name)
    assert backbone.family == family
    assert type(backbone.model).__name__.lower().startswith(family)
    batch = backbone.example_batch(3)
    out = backbone(**batch)
    assert out.shape == (3, 32) and torch.isfinite(out).all()
    assert backbone.group_names() == [
        "feature_encoder",
        "feature_projection",
        "encoder.embed",
        "encoder.layer.0",
        "encoder.layer.1",
    ]
    seen = [id(p) for g in backbone.layer_groups() for p in g.parameters()]
    assert sorted(seen) == sorted(id(p) for p in backbone.parameters())


def test_feature_encoder_is_frozen_by_default() -> None:
    frozen = _tiny()
    encoder = list(frozen.model.feature_extractor.parameters())
    assert encoder and not any(p.requires_grad for p in encoder)
    others = [p for n, p in frozen.named_parameters() if ".feature_extractor." not in f".{n}"]
    assert all(p.requires_grad for p in others)
    outputs: list[torch.Tensor] = []
    frozen.model.feature_extractor.register_forward_hook(lambda m, i, o: outputs.append(o))
    frozen.train()
    frozen(**frozen.example_batch(2)).pow(2).mean().backward()
    assert all(p.grad is None for p in encoder)
    assert not outputs[-1].requires_grad  # autograd does not run back through the convolutions
    for param in encoder:  # a strategy unfreezing it later is obeyed
        param.requires_grad_(True)
    frozen(**frozen.example_batch(2)).pow(2).mean().backward()
    assert outputs[-1].requires_grad and all(p.grad is not None for p in encoder)
    trained = _tiny(train_feature_encoder=True)
    trained(**trained.example_batch(2)).pow(2).mean().backward()
    assert all(p.grad is not None for p in trained.model.feature_extractor.parameters())


def test_frame_mask_follows_the_conv_arithmetic() -> None:
    backbone = _tiny()  # kernels 10,3,3 strides 5,2,2: receptive field 40, hop 20
    assert backbone.min_samples == 40
    mask = torch.zeros(3, 400, dtype=torch.long)
    for i, n in enumerate((400, 100, 40)):
        mask[i, :n] = 1
    frames = backbone.frame_mask(mask, num_frames=19).sum(dim=1).tolist()
    assert frames == [19, 4, 1]  # floor((n - 40) / 20) + 1


def test_masked_pooling_ignores_padding_when_the_encoder_uses_layer_norm() -> None:
    backbone = _tiny(model_config={"feat_extract_norm": "layer"}).eval()
    assert backbone.pass_attention_mask
    short = torch.randn(1, 300)
    long = torch.randn(1, 800)
    with torch.no_grad():
        alone = backbone(input_values=short, attention_mask=torch.ones(1, 300, dtype=torch.long))
        batch = backbone.preprocessor().collate(
            [{"input_values": short[0].numpy()}, {"input_values": long[0].numpy()}]
        )
        padded = backbone(**batch)
        unmasked = backbone(input_values=batch["input_values"])
    assert torch.allclose(alone[0], padded[0], atol=1e-5)
    assert not torch.allclose(alone[0], unmasked[0], atol=1e-3)


def test_group_norm_models_get_no_attention_mask_but_pool_over_real_frames() -> None:
    backbone = _tiny().eval()
    assert not backbone.pass_attention_mask  # as the wav2vec2-base feature extractor does
    batch = backbone.example_batch(2)
    with torch.no_grad():
        hidden = backbone.model(batch["input_values"]).last_hidden_state
        pooled = backbone(**batch)
    frames = int(backbone.frame_mask(batch["attention_mask"], hidden.shape[1])[1].sum())
    assert frames < hidden.shape[1]
    assert torch.allclose(pooled[1], hidden[1, :frames].mean(dim=0), atol=1e-5)


def test_config_rebuilds_the_same_architecture() -> None:
    backbone = _tiny("hubert-base", sampling_rate=8000, max_duration=2.0, augment={"gain_db": 3})
    config = json.loads(json.dumps(backbone.config()))
    rebuilt = create_backbone("hubert-base", pretrained=None, **config)
    assert rebuilt.config() == config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in backbone.state_dict().items()
    }
    assert rebuilt.preprocessor().config()["sampling_rate"] == 8000
    with pytest.raises(ConfigError, match="hf-speech"):
        create_backbone("wav2vec2-base", pretrained=None, **config)


def test_local_hugging_face_folder(tmp_path: Path) -> None:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(1)
    source = Wav2Vec2Model(Wav2Vec2Config(**TINY))
    source.eval()
    folder = tmp_path / "my-wav2vec2"
    source.save_pretrained(folder)
    extractor = Wav2Vec2FeatureExtractor(sampling_rate=8000, do_normalize=False)  # type: ignore[no-untyped-call]
    extractor.save_pretrained(folder)

    backbone = create_backbone("hf-speech", pretrained=str(folder)).eval()
    assert backbone.family == "wav2vec2"
    assert backbone.preprocessor().config()["sampling_rate"] == 8000
    assert backbone.preprocessor().config()["do_normalize"] is False
    values = torch.randn(1, 1000)
    with torch.no_grad():
        expected = source(values).last_hidden_state.mean(dim=1)
        got = backbone(input_values=values)
    assert torch.allclose(expected, got, atol=1e-5)
    with pytest.raises(ConfigError, match="hf-speech"):
        create_backbone("hubert-base", pretrained=str(folder))
    with pytest.raises(ConfigError, match="model_config is for random"):
        create_backbone("hf-speech", pretrained=str(folder), model_config=TINY)


def test_lepton_model_trained_on_a_source_domain(tmp_path: Path) -> None:
    source = _tiny(sampling_rate=8000)
    with torch.no_grad():
        for param in source.parameters():
            param.add_(0.01)  # weights that no random init reproduces
    folder = save_backbone(tmp_path / "source-model", source, domain="speech", name="wav2vec2-base")
    target = create_backbone("wav2vec2-base", pretrained=str(folder), train_feature_encoder=True)
    assert isinstance(target, SpeechBackbone)
    assert target.sampling_rate == 8000  # the recorded preprocessing comes along
    assert target.train_feature_encoder
    assert target.load_report is not None  # the kit checks that every weight loads


def test_lepton_model_of_another_domain_is_refused(tmp_path: Path) -> None:
    mlp = create_backbone("mlp", pretrained=None, num_features=4, hidden=[8])
    folder = save_backbone(tmp_path / "tabular-model", mlp, domain="tabular", name="mlp")
    with pytest.raises(ArtifactError, match="built on backbone 'mlp' \\(from lepton-tabular\\)"):
        create_backbone("wav2vec2-base", pretrained=str(folder))


def test_pretrained_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="no such folder"):
        create_backbone("wav2vec2-base", pretrained="./not-here")
    with pytest.raises(ConfigError, match="no default checkpoint"):
        create_backbone("hf-speech", pretrained=True)
    with pytest.raises(ConfigError, match="pretrained must be"):
        create_backbone("wav2vec2-base", pretrained=3)
    with pytest.raises(ConfigError, match="no option 'hidden_size'"):
        create_backbone("wav2vec2-base", pretrained=None, hidden_size=8)
    with pytest.raises(ConfigError, match="model_config for a wav2vec2"):
        create_backbone("wav2vec2-base", pretrained=None, model_config={"conv_dim": [1, 2]})
