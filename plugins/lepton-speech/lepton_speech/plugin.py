"""The entry point of lepton-speech: the hooks Lepton calls.

This module stays light (no torch, no transformers): ``lepton plugins`` imports it to list what
the plugin provides. The factories import the heavy modules only when called.

Audio classification (keywords, speakers, accents, dialects) uses the core's ``classification``
task on the pooled features, so the plugin registers no task of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lepton_platform import BackboneSpec, DomainSpec, hookimpl

#: Options that build a tiny random wav2vec2 for the conformance suite (2 layers, width 32).
TINY_OPTIONS: dict[str, Any] = {
    "model_config": {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "conv_dim": [32, 32, 32],
        "conv_kernel": [10, 3, 3],
        "conv_stride": [5, 2, 2],
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 4,
        "mask_time_prob": 0.0,
        "layerdrop": 0.0,
    },
    "max_duration": 1.0,
}

_BACKBONES = {
    "wavlm-base": ("wavlm", "WavLM base (95M); pretrained=True: microsoft/wavlm-base"),
    "wav2vec2-base": ("wav2vec2", "wav2vec2 base (95M); pretrained=True: facebook/wav2vec2-base"),
    "hubert-base": ("hubert", "HuBERT base (95M); pretrained=True: facebook/hubert-base-ls960"),
    "hf-speech": (
        "wav2vec2",
        "any wav2vec2, HuBERT or WavLM checkpoint: pretrained is a Hub id or a local folder",
    ),
}


def _speech_domain(
    *, verify: str = "decode", extensions: Sequence[str] = (".wav", ".flac", ".ogg")
) -> Any:
    from lepton_speech.domain import SpeechDomain

    return SpeechDomain(verify=verify, extensions=extensions)


def _backbone_factory(name: str) -> Callable[..., Any]:
    def factory(
        pretrained: Any = None,
        *,
        family: str | None = None,
        model_config: Mapping[str, Any] | None = None,
        train_feature_encoder: bool = False,
        sampling_rate: int | None = None,
        max_duration: float | None = None,
        do_normalize: bool | None = None,
        augment: Mapping[str, Any] | None = None,
    ) -> Any:
        from lepton_speech.backbone import build_backbone

        return build_backbone(
            name,
            pretrained,
            family=family,
            model_config=model_config,
            train_feature_encoder=train_feature_encoder,
            sampling_rate=sampling_rate,
            max_duration=max_duration,
            do_normalize=do_normalize,
            augment=augment,
        )

    factory.__name__ = factory.__qualname__ = "create_" + name.replace("-", "_")
    factory.__doc__ = f"Build the {name!r} speech backbone (see lepton_speech.backbone)."
    return factory


@hookimpl
def lepton_domains() -> list[DomainSpec]:
    return [
        DomainSpec(
            name="speech",
            modality="audio",
            factory=_speech_domain,
            description="Audio clips (WAV, FLAC, OGG) from class folders, CSV or HF datasets",
            metadata={"input_columns": ["audio"]},
        )
    ]


@hookimpl
def lepton_backbones() -> list[BackboneSpec]:
    return [
        BackboneSpec(
            name=name,
            domain="speech",
            family=family,
            factory=_backbone_factory(name),
            description=description,
            tiny_options=TINY_OPTIONS,
            metadata={"sampling_rate": 16000, "pooling": "masked-mean"},
        )
        for name, (family, description) in _BACKBONES.items()
    ]
