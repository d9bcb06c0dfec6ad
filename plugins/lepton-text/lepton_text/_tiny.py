"""Tiny architectures and a tiny WordPiece vocabulary, in plain Python (no torch).

The specs' ``tiny_options`` come from here, so ``lepton plugins`` can list them without importing
anything heavy; the conformance suite and the tests build CPU-fast random backbones from them.
"""

from __future__ import annotations

import string
from typing import Any

#: Words :meth:`lepton_text.domain.TextDomain.example_dataset` draws from; the tiny vocabulary
#: holds each of them whole, so example sentences tokenise to real word pieces.
EXAMPLE_WORDS: tuple[str, ...] = (
    "the",
    "a",
    "food",
    "service",
    "phone",
    "battery",
    "screen",
    "place",
    "staff",
    "price",
    "was",
    "is",
    "very",
    "not",
    "really",
    "good",
    "great",
    "bad",
    "awful",
    "nice",
    "slow",
    "fast",
    "loved",
    "hated",
    "and",
    "but",
    "it",
    "this",
    "i",
    "will",
    "come",
    "back",
    "never",
)

SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def tiny_vocab() -> list[str]:
    """Special tokens, single characters, ``##`` continuations and the example words."""
    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab = list(SPECIAL_TOKENS)
    vocab += list(chars)
    vocab += ["##" + c for c in string.ascii_lowercase + string.digits]
    vocab += [w for w in EXAMPLE_WORDS if w not in vocab]
    return vocab


def tiny_model_config(model_type: str, vocab_size: int) -> dict[str, Any]:
    """A 2-layer, 32-wide random configuration of ``model_type`` (bert, distilbert, roberta)."""
    if model_type == "distilbert":
        return {
            "model_type": "distilbert",
            "vocab_size": vocab_size,
            "dim": 32,
            "n_layers": 2,
            "n_heads": 2,
            "hidden_dim": 64,
            "max_position_embeddings": 72,
            "pad_token_id": 0,
        }
    config: dict[str, Any] = {
        "model_type": model_type,
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 72,
        "type_vocab_size": 2,
        "pad_token_id": 0,
    }
    if model_type == "roberta":
        # RoBERTa numbers positions from pad_token_id + 1 and has a single token type.
        config.update(type_vocab_size=1, max_position_embeddings=74)
    return config


def tiny_options(model_type: str = "bert") -> dict[str, Any]:
    """The options that build a tiny random backbone of ``model_type`` with the tiny vocabulary."""
    vocab = tiny_vocab()
    return {
        "model_config": tiny_model_config(model_type, len(vocab)),
        "vocab": vocab,
        "max_length": 64,
    }
