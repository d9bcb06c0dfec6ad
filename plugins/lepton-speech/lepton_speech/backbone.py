"""The wav2vec2 family (wav2vec2, HuBERT, WavLM) as Lepton backbones.

The three share one shape in ``transformers``: a convolutional feature encoder on the raw
waveform (``feature_extractor``), a feature projection, and a transformer encoder
(``encoder.layers``). One class serves them all. Pooled features are the masked mean of the last
hidden states over the frames that hold audio (padding excluded).

Fine-tuning keeps the convolutional feature encoder frozen by default, as is usual for wav2vec2:
its parameters get ``requires_grad = False`` when the backbone is built
(``train_feature_encoder=True`` trains it), and while they are frozen no gradient flows back
through the convolutions at all. A strategy that sets ``requires_grad`` itself overrides this.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from lepton_platform.artifacts import is_model_folder, load_backbone
from lepton_platform.errors import ArtifactError, ConfigError
from lepton_platform.models import Backbone, ExportInputs, ExportUnsupported, HubExport, LayerGroup
from lepton_speech.preprocess import Augmentation, SpeechPreprocessor

__all__ = [
    "FAMILIES",
    "HUB_IDS",
    "SpeechBackbone",
    "build_backbone",
]

log = logging.getLogger(__name__)

#: model_type -> (config class, model class) in ``transformers``.
FAMILIES: dict[str, tuple[str, str]] = {
    "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model"),
    "hubert": ("HubertConfig", "HubertModel"),
    "wavlm": ("WavLMConfig", "WavLMModel"),
}

#: Registered name -> (family, Hub id used for ``pretrained=True``).
HUB_IDS: dict[str, tuple[str, str]] = {
    "wav2vec2-base": ("wav2vec2", "facebook/wav2vec2-base"),
    "hubert-base": ("hubert", "facebook/hubert-base-ls960"),
    "wavlm-base": ("wavlm", "microsoft/wavlm-base"),
}

_DROP_KEYS = ("transformers_version", "architectures", "_name_or_path", "id2label", "label2id")


def _classes(family: str) -> tuple[Any, Any]:
    import transformers

    if family not in FAMILIES:
        raise ConfigError(
            f"unknown speech model family {family!r}; supported: {', '.join(FAMILIES)}"
        )
    config_name, model_name = FAMILIES[family]
    return getattr(transformers, config_name), getattr(transformers, model_name)


def receptive_field(conv_kernel: Any, conv_stride: Any) -> int:
    """Samples the convolutional encoder needs to produce one frame (400 for wav2vec2)."""
    field = 1
    for kernel, stride in reversed(list(zip(conv_kernel, conv_stride, strict=True))):
        field = (field - 1) * int(stride) + int(kernel)
    return field


class _Params(nn.Module):
    """Holds bare parameters (``masked_spec_embed``) so that a layer group can name them."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        super().__init__()
        for i, param in enumerate(params):
            self.register_parameter(f"p{i}", param)


class SpeechBackbone(Backbone):
    """A wav2vec2-family encoder with masked mean pooling over frames.

    ``forward(input_values, attention_mask)`` takes what :class:`SpeechPreprocessor` collates.
    The attention mask is handed to the transformer only when the model's feature encoder uses
    layer norm (``feat_extract_norm="layer"``), as Hugging Face's feature extractors do; the base
    models (group norm) were trained on zero-padded batches without one. Pooling always uses it.
    """

    #: The ``transformers`` model (``Wav2Vec2Model``, ``HubertModel`` or ``WavLMModel``).
    model: Any

    def __init__(
        self,
        model: nn.Module,
        *,
        family: str,
        train_feature_encoder: bool = False,
        sampling_rate: int = 16000,
        max_duration: float = 10.0,
        do_normalize: bool = True,
        augment: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.family = family
        self.feature_dim = int(self.model.config.hidden_size)
        self.train_feature_encoder = bool(train_feature_encoder)
        self.sampling_rate = int(sampling_rate)
        self.max_duration = float(max_duration)
        self.do_normalize = bool(do_normalize)
        self.augment = Augmentation.from_options(augment)
        self.min_samples = receptive_field(
            self.model.config.conv_kernel, self.model.config.conv_stride
        )
        self.pass_attention_mask = self.model.config.feat_extract_norm == "layer"
        self.load_report = None  # set when weights are loaded
        self.preprocessor()  # validates the preprocessing options now, not at training time
        if not self.train_feature_encoder:
            self.freeze_feature_encoder()

    def freeze_feature_encoder(self) -> None:
        """``requires_grad = False`` on the convolutional feature encoder."""
        for param in self.model.feature_extractor.parameters():
            param.requires_grad = False

    def frame_mask(self, attention_mask: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``(batch, frames)`` boolean mask of the frames computed from real samples."""
        lengths = attention_mask.sum(dim=-1)
        frames = self.model._get_feat_extract_output_lengths(lengths)
        frames = torch.as_tensor(frames, device=attention_mask.device).long()
        frames = frames.clamp(min=1, max=num_frames)
        steps = torch.arange(num_frames, device=attention_mask.device)
        return steps[None, :] < frames[:, None]

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Masked mean of the last hidden states: ``(batch, hidden_size)``."""
        values = inputs["input_values"]
        attention_mask = inputs.get("attention_mask")
        encoder = self.model.feature_extractor
        if hasattr(encoder, "_requires_grad"):
            # transformers makes the waveform require grad in training unless the encoder is
            # marked frozen; then autograd would still run back through every convolution. Follow
            # the parameters, so that a strategy that unfreezes them later is obeyed too.
            encoder._requires_grad = any(p.requires_grad for p in encoder.parameters())
        hidden = self.model(
            values,
            attention_mask=attention_mask if self.pass_attention_mask else None,
        ).last_hidden_state
        if attention_mask is None:
            return cast(torch.Tensor, hidden.mean(dim=1))
        mask = self.frame_mask(attention_mask, hidden.shape[1]).to(hidden.dtype)[..., None]
        return cast(torch.Tensor, (hidden * mask).sum(dim=1) / mask.sum(dim=1))

    def layer_groups(self) -> list[LayerGroup]:
        """feature_encoder, feature_projection, encoder.embed (positional convolution and the
        input layer norm), encoder.layer.N for each transformer layer, encoder.final."""
        model = self.model
        encoder = model.encoder
        stable = bool(getattr(model.config, "do_stable_layer_norm", False))
        projection: list[nn.Module] = [model.feature_projection]
        spec_embed = getattr(model, "masked_spec_embed", None)
        if isinstance(spec_embed, nn.Parameter):
            projection.append(_Params([spec_embed]))
        embed: list[nn.Module] = [encoder.pos_conv_embed]
        final: list[nn.Module] = []
        (final if stable else embed).append(encoder.layer_norm)
        if getattr(model, "adapter", None) is not None:
            final.append(model.adapter)
        groups = [
            LayerGroup("feature_encoder", (model.feature_extractor,)),
            LayerGroup("feature_projection", tuple(projection)),
            LayerGroup("encoder.embed", tuple(embed)),
        ]
        groups += [
            LayerGroup(f"encoder.layer.{i}", (layer,)) for i, layer in enumerate(encoder.layers)
        ]
        covered = {id(p) for g in groups for p in g.parameters()}
        covered |= {id(p) for m in final for p in m.parameters()}
        rest = [p for p in self.parameters() if id(p) not in covered]
        if rest:
            final.append(_Params(rest))
        if final:
            groups.append(LayerGroup("encoder.final", tuple(final)))
        return groups

    def preprocessor(self) -> SpeechPreprocessor:
        return SpeechPreprocessor(
            sampling_rate=self.sampling_rate,
            max_duration=self.max_duration,
            do_normalize=self.do_normalize,
            min_samples=self.min_samples,
            augment=self.augment,
        )

    def config(self) -> dict[str, Any]:
        model_config = {k: v for k, v in self.model.config.to_dict().items() if k not in _DROP_KEYS}
        return {
            "family": self.family,
            "model_config": model_config,
            "train_feature_encoder": self.train_feature_encoder,
            "sampling_rate": self.sampling_rate,
            "max_duration": self.max_duration,
            "do_normalize": self.do_normalize,
            "augment": self.augment.config(),
        }

    def example_batch(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """Random waveforms of up to 0.25 s (at least 4 receptive fields); the second is
        shorter, so the mask is exercised."""
        longest = max(self.min_samples * 4, min(self.sampling_rate // 4, self.max_samples()))
        values = torch.randn(batch_size, longest)
        mask = torch.ones(batch_size, longest, dtype=torch.long)
        for i in range(1, batch_size):
            keep = max(self.min_samples, longest - i * longest // (2 * batch_size))
            values[i, keep:] = 0.0
            mask[i, keep:] = 0
        return {"input_values": values, "attention_mask": mask}

    def max_samples(self) -> int:
        return math.floor(self.max_duration * self.sampling_rate)

    # -- export (``lepton export``) ----------------------------------------------------------

    def export_inputs(self) -> ExportInputs:
        """Batch and number of samples are dynamic; the check batch is longer."""
        example = self.example_batch(2)
        longest = example["input_values"].shape[1]
        extra = min(self.max_samples(), longest + self.min_samples * 2) - longest
        generator = torch.Generator().manual_seed(1)
        values = torch.randn(3, longest + extra, generator=generator)
        mask = torch.ones_like(values, dtype=torch.long)
        values[2, longest:] = 0.0
        mask[2, longest:] = 0
        return ExportInputs(
            example=example,
            check={"input_values": values, "attention_mask": mask},
            dynamic_axes={name: {0: "batch", 1: "samples"} for name in example},
        )

    def hub_export(
        self, classifier: nn.Linear, label_names: Sequence[str], *, multi_label: bool
    ) -> HubExport:
        """The Hugging Face format: ``AutoModelForAudioClassification`` (the family's
        ``*ForSequenceClassification``) with the label names in its config, and its feature
        extractor (``AutoFeatureExtractor``). The transformers head projects, then averages
        over the frames, then classifies; both steps are linear, so an identity projector and
        this model's classifier give the same logits as its masked mean pooling. (A base
        model with group norm reads no attention mask in transformers, as its feature
        extractor makes none: a clip predicted on its own gives the same scores.)"""
        from transformers import AutoModelForAudioClassification, Wav2Vec2FeatureExtractor

        if multi_label:
            raise ExportUnsupported("transformers' audio classification classes are single-label")
        names = [str(n) for n in label_names]
        hidden = int(self.model.config.hidden_size)
        config: Any = copy.deepcopy(self.model.config)
        config.num_labels = len(names)
        config.id2label = dict(enumerate(names))
        config.label2id = {n: i for i, n in enumerate(names)}
        config.classifier_proj_size = hidden
        config.use_weighted_layer_sum = False
        hf: Any = AutoModelForAudioClassification.from_config(config)  # type: ignore[no-untyped-call]
        hf.eval()
        missing, unexpected = hf.base_model.load_state_dict(self.model.state_dict(), strict=False)
        if missing or unexpected:
            raise ExportUnsupported(
                f"the weights do not fit {type(hf).__name__} (missing {missing[:4]}, "
                f"unexpected {unexpected[:4]})"
            )
        with torch.no_grad():
            hf.projector.weight.copy_(torch.eye(hidden))
            hf.projector.bias.zero_()
            hf.classifier.weight.copy_(classifier.weight.detach().float())
            if classifier.bias is not None:
                hf.classifier.bias.copy_(classifier.bias.detach().float())
            else:
                hf.classifier.bias.zero_()
        extractor = Wav2Vec2FeatureExtractor(  # type: ignore[no-untyped-call]
            feature_size=1,
            sampling_rate=self.sampling_rate,
            padding_value=0.0,
            do_normalize=self.do_normalize,
            return_attention_mask=self.pass_attention_mask,
        )
        masked = self.pass_attention_mask
        usage = (
            "import torch\n"
            "from transformers import AutoFeatureExtractor, AutoModelForAudioClassification\n\n"
            'extractor = AutoFeatureExtractor.from_pretrained("{path}")\n'
            'model = AutoModelForAudioClassification.from_pretrained("{path}").eval()\n'
            f"waveform = torch.zeros({self.sampling_rate}).numpy()  # one clip, mono, "
            f"{self.sampling_rate} Hz\n"
            f"batch = extractor(waveform, sampling_rate={self.sampling_rate}, "
            'return_tensors="pt")\n'
            "with torch.no_grad():\n"
            "    scores = model(**batch).logits.softmax(-1)\n"
            "print({model.config.id2label[i]: float(s) for i, s in enumerate(scores[0])})\n"
        )

        def write(folder: Path) -> None:
            hf.save_pretrained(str(folder))
            extractor.save_pretrained(str(folder))

        def load(folder: Path) -> Any:
            from transformers import AutoModelForAudioClassification

            loaded = AutoModelForAudioClassification.from_pretrained(str(folder)).eval()

            def run(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
                mask = batch.get("attention_mask") if masked else None
                with torch.no_grad():
                    logits = loaded(batch["input_values"], attention_mask=mask).logits
                return cast(torch.Tensor, logits)

            return run

        unpadded = None if masked else self._unpadded_check()
        return HubExport(
            library="transformers", write=write, load=load, usage=usage, check=unpadded
        )

    def _unpadded_check(self) -> dict[str, torch.Tensor]:
        """Clips of one length (no padding): what a model without attention mask is checked
        on."""
        length = max(self.min_samples * 4, min(self.sampling_rate // 4, self.max_samples()))
        values = torch.randn(2, length, generator=torch.Generator().manual_seed(2))
        return {"input_values": values, "attention_mask": torch.ones_like(values, dtype=torch.long)}


# -- building ------------------------------------------------------------------------------------


def _family_of(name: str, family: str | None, model_config: Mapping[str, Any] | None) -> str:
    fixed = HUB_IDS[name][0] if name in HUB_IDS else None
    seen = None if model_config is None else model_config.get("model_type")
    chosen = family or seen or fixed or "wav2vec2"
    for other in (fixed, seen, family):
        if other is not None and other != chosen:
            raise ConfigError(
                f"backbone {name!r} is a {fixed or chosen} model, but the options ask for "
                f"{other!r}; use backbone 'hf-speech' for other families"
            )
    if chosen not in FAMILIES:
        raise ConfigError(
            f"backbone {name!r}: unknown family {chosen!r}; supported: {', '.join(FAMILIES)}"
        )
    return chosen


def _random_model(family: str, model_config: Mapping[str, Any] | None) -> nn.Module:
    config_cls, model_cls = _classes(family)
    options = {k: v for k, v in dict(model_config or {}).items() if k not in _DROP_KEYS}
    options.pop("model_type", None)
    try:
        config = config_cls.from_dict(options)
    except Exception as exc:  # transformers validates with several error classes
        raise ConfigError(f"model_config for a {family} model is not valid: {exc}") from None
    return cast(nn.Module, model_cls(config))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: cannot read it as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a JSON object")
    return data


def _hf_preprocessing(source: str) -> dict[str, Any]:
    """``sampling_rate`` and ``do_normalize`` from a feature extractor config, if there is one."""
    folder = Path(source)
    data: Mapping[str, Any] | None = None
    if folder.is_dir():
        file = folder / "preprocessor_config.json"
        data = _read_json(file) if file.is_file() else None
    else:
        try:
            from transformers import AutoFeatureExtractor

            data = AutoFeatureExtractor.from_pretrained(source).to_dict()  # type: ignore[no-untyped-call]
        except Exception:  # no feature extractor published: keep the defaults
            data = None
    if not data:
        return {}
    out: dict[str, Any] = {}
    if "sampling_rate" in data:
        out["sampling_rate"] = int(data["sampling_rate"])
    if "do_normalize" in data:
        out["do_normalize"] = bool(data["do_normalize"])
    return out


def _hf_model(name: str, family: str | None, source: str) -> tuple[nn.Module, str]:
    """A model from a Hugging Face folder or Hub id (``from_pretrained``)."""
    from transformers import AutoConfig

    folder = Path(source)
    try:
        config = AutoConfig.from_pretrained(source)
    except Exception as exc:
        hint = (
            "the folder has no valid config.json"
            if folder.is_dir()
            else "a Hub id needs a network (HF_HUB_OFFLINE may be set) or the Hub cache; "
            "pass a local folder instead"
        )
        raise ArtifactError(f"cannot load speech model {source!r}: {hint} ({exc})") from None
    chosen = _family_of(name, family, {"model_type": config.model_type})
    _, model_cls = _classes(chosen)
    try:
        model, info = model_cls.from_pretrained(  # a .bin file: tensors only, no pickle
            source, output_loading_info=True, weights_only=True
        )
    except pickle.UnpicklingError as exc:
        raise ArtifactError(
            f"{source}: its weights file holds pickled objects other than tensors ("
            f"{_refused_global(exc)}); Lepton never unpickles them (weights are read "
            "with weights_only=True, so no code in a weights file runs): use model.safetensors, "
            "or a .bin that torch.save wrote from a state dict"
        ) from None
    except Exception as exc:
        raise ArtifactError(f"cannot load the weights of {source!r}: {exc}") from None
    missing = list(info.get("missing_keys", []))
    if missing:
        log.warning("%s: %d weights were not in the checkpoint: %s", source, len(missing), missing)
    return model, chosen


def build_backbone(
    name: str,
    pretrained: Any = None,
    *,
    family: str | None = None,
    model_config: Mapping[str, Any] | None = None,
    train_feature_encoder: bool = False,
    sampling_rate: int | None = None,
    max_duration: float | None = None,
    do_normalize: bool | None = None,
    augment: Mapping[str, Any] | None = None,
) -> SpeechBackbone:
    """Build the backbone registered as ``name``.

    ``pretrained``: None (random weights from ``model_config`` over the family's defaults),
    True (the name's Hub checkpoint, needs a network), a Hub id, a local Hugging Face folder
    (``config.json`` + weights), or a Lepton model folder (``lepton.json`` +
    ``model.safetensors``) trained on another domain: its recorded architecture is rebuilt and
    its ``backbone.`` weights loaded. Preprocessing options left as None come from the
    checkpoint (its ``preprocessor_config.json`` or recorded config) or default to 16 kHz,
    10 s, normalised.
    """
    if name not in HUB_IDS and name != "hf-speech":
        raise ConfigError(f"unknown speech backbone {name!r}")
    preprocessing: dict[str, Any] = {"sampling_rate": 16000, "max_duration": 10.0}
    preprocessing["do_normalize"] = True

    if isinstance(pretrained, str | Path) and is_model_folder(pretrained):
        if model_config is not None:
            raise ConfigError(
                "model_config is for random initialisation (pretrained=None); a Lepton model "
                f"folder brings its own architecture ({pretrained})"
            )
        given = {
            "family": family,
            "train_feature_encoder": train_feature_encoder or None,
            "sampling_rate": sampling_rate,
            "max_duration": max_duration,
            "do_normalize": do_normalize,
            "augment": augment,
        }

        def build(**config: Any) -> SpeechBackbone:
            return build_backbone(name, None, **config)

        backbone, _ = load_backbone(
            pretrained, build, {k: v for k, v in given.items() if v is not None}
        )
        report = backbone.load_report
        assert report is not None
        log.info("%s", report.summary())
        return backbone
    if pretrained is True:
        if name not in HUB_IDS:
            raise ConfigError(
                "backbone 'hf-speech' has no default checkpoint: pass pretrained as a Hub id "
                "or a local folder"
            )
        pretrained = HUB_IDS[name][1]
    if pretrained is None or pretrained is False:
        chosen = _family_of(name, family, model_config)
        model = _random_model(chosen, model_config)
    elif isinstance(pretrained, str | Path):
        source = str(pretrained)
        folder = Path(source)
        if model_config is not None:
            raise ConfigError(
                "model_config is for random initialisation (pretrained=None); a checkpoint "
                f"brings its own architecture ({source})"
            )
        if folder.exists() and not folder.is_dir():
            raise ArtifactError(
                f"{source}: pretrained must be a folder (Hugging Face or Lepton model), "
                "a Hub id, True or None"
            )
        elif not folder.exists() and (source.startswith((".", "/", "~")) or "\\" in source):
            raise ArtifactError(f"{source}: no such folder")
        else:
            model, chosen = _hf_model(name, family, source)
            preprocessing.update(_hf_preprocessing(source))
    else:
        raise ConfigError(
            f"pretrained must be None, True, a Hub id or a folder, got {type(pretrained).__name__}"
        )

    for key, value in (
        ("sampling_rate", sampling_rate),
        ("max_duration", max_duration),
        ("do_normalize", do_normalize),
    ):
        if value is not None:
            preprocessing[key] = value
    backbone = SpeechBackbone(
        model,
        family=chosen,
        train_feature_encoder=train_feature_encoder,
        augment=augment,
        **preprocessing,
    )
    return backbone


def _refused_global(exc: BaseException) -> str:
    """What torch's weights-only unpickler refused (``Unsupported global: builtins.open``)."""
    lines = [line.strip() for line in str(exc).splitlines()]
    return next((line for line in lines if "Unsupported" in line), "not a plain state dict")[:200]
