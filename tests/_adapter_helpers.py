"""Real tiny models and data for the peft and distillation tests: a BERT saved as a transformers
folder (the "pretrained" weights), a tiny wordpiece tokenizer, review-like sentences in a file,
and helpers to run a command with ``import peft`` blocked."""

from __future__ import annotations

import random
import textwrap
from pathlib import Path
from typing import Any

POSITIVE = ["good", "great", "nice", "loved", "fast"]
NEGATIVE = ["bad", "awful", "slow", "hated", "never"]
FILLER = ["the", "food", "service", "was", "very", "really", "it", "this", "place", "staff"]


def sentence(rng: random.Random, word: str) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(1, 5))]
    words.insert(rng.randint(0, len(words)), word)
    return " ".join(words)


def write_reviews(path: Path, rows: int = 160, seed: int = 0, noise: float = 0.0) -> Path:
    """``sentence<TAB>label`` lines (the shared review sentences' format), labels 0 and 1;
    ``noise`` of the rows get the other word's polarity."""
    rng = random.Random(seed)
    lines = []
    for i in range(rows):
        label = i % 2
        words = POSITIVE if label else NEGATIVE
        if rng.random() < noise:
            words = NEGATIVE if label else POSITIVE
        lines.append(f"{sentence(rng, rng.choice(words))}\t{label}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def bert_config(hidden: int = 128, layers: int = 2, intermediate: int = 512) -> dict[str, Any]:
    from lepton_text._tiny import tiny_vocab

    return {
        "model_type": "bert",
        "vocab_size": len(tiny_vocab()),
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": 2,
        "intermediate_size": intermediate,
        "max_position_embeddings": 72,
        "type_vocab_size": 2,
        "pad_token_id": 0,
    }


def save_pretrained_bert(folder: Path, seed: int = 0, **config: Any) -> Path:
    """A random tiny BERT and its wordpiece tokenizer saved as a transformers model folder:
    what ``pretrained=<folder>`` loads, like a Hub model."""
    import torch
    from lepton_text._tiny import tiny_vocab
    from lepton_text.backbone import wordpiece_tokenizer
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    values = bert_config(**config)
    values.pop("model_type")
    model = BertModel(BertConfig(**values), add_pooling_layer=True)
    model.save_pretrained(folder)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=wordpiece_tokenizer(tiny_vocab()),
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    tokenizer.save_pretrained(folder)
    return folder


#: ``sitecustomize`` that makes ``import peft`` fail, as if it were not installed.
BLOCK_PEFT = textwrap.dedent(
    """
    import sys

    class _NoPeft:
        def find_spec(self, name, path=None, target=None):
            if name == "peft" or name.startswith("peft."):
                raise ImportError("peft is blocked in this test: No module named 'peft'")
            return None

    sys.meta_path.insert(0, _NoPeft())
    """
)


def env_without_peft(folder: Path) -> dict[str, str]:
    """The environment of a subprocess in which ``import peft`` fails."""
    import os

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(BLOCK_PEFT, encoding="utf-8")
    path = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "PYTHONPATH": str(folder) + (os.pathsep + path if path else ""),
        "HF_HUB_OFFLINE": "1",
    }
