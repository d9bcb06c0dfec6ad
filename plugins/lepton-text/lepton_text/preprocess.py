"""The text preprocessor: tokenisation (cached through ``datasets.map``), dynamic padding per
batch, and the example lengths for length-grouped batching.

- :meth:`TextPreprocessor.transform` tokenises ``text`` (and ``text_pair`` when the dataset has
  it) with the backbone's ``tokenizers.Tokenizer``, adds the special tokens, truncates to
  ``max_length`` and pads nothing. It writes ``input_ids``, ``token_type_ids`` (for models that
  read token types) and ``length`` (the number of tokens).
- :meth:`TextPreprocessor.collate` pads a batch to its longest example (``padding="longest"``,
  optionally rounded up to ``pad_to_multiple_of``) or to ``max_length``
  (``padding="max_length"``, the slow baseline) and builds ``attention_mask``.
- :attr:`TextPreprocessor.length_column` names the lengths column and
  its ``length`` column lets the engine group examples of similar length into batches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from tokenizers import Tokenizer

from lepton_platform.errors import ConfigError, DataError
from lepton_platform.models import Preprocessor

__all__ = ["TextPreprocessor"]

Padding = Literal["longest", "max_length"]


def _as_list(value: Any) -> list[int]:
    if isinstance(value, torch.Tensor):
        return [int(v) for v in value.tolist()]
    return [int(v) for v in value]


class TextPreprocessor(Preprocessor):
    """Tokeniser plus padding for one backbone.

    ``tokenizer`` is a ``tokenizers.Tokenizer`` whose post-processor adds the special tokens
    (``[CLS] A [SEP] B [SEP]`` for BERT); ``token_type_ids`` says whether the model reads token
    types (BERT does, DistilBERT and RoBERTa do not); ``pad_token_id`` fills padded positions.
    """

    #: ``text_pair`` is read too when the dataset has it (sentence pairs); it is optional.
    input_columns: tuple[str, ...] = ("text",)
    #: The column :meth:`transform` writes with each example's number of tokens: the fine-tune
    #: engine batches sentences of similar length together (``TrainConfig.group_by_length``).
    length_column = "length"

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        max_length: int,
        token_type_ids: bool,
        pad_token_id: int,
        padding: Padding = "longest",
        pad_to_multiple_of: int | None = None,
    ) -> None:
        if max_length < 2:
            raise ConfigError(
                f"max_length must be at least 2 (room for [CLS] and [SEP]), got {max_length}"
            )
        if padding not in ("longest", "max_length"):
            raise ConfigError(f"padding must be 'longest' or 'max_length', got {padding!r}")
        if pad_to_multiple_of is not None and pad_to_multiple_of < 1:
            raise ConfigError(f"pad_to_multiple_of must be positive, got {pad_to_multiple_of}")
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=int(max_length))
        self.max_length = int(max_length)
        self.token_type_ids = bool(token_type_ids)
        self.pad_token_id = int(pad_token_id)
        self.padding: Padding = padding
        self.pad_to_multiple_of = pad_to_multiple_of
        outputs = (
            ["input_ids", "token_type_ids", "length"]
            if token_type_ids
            else [
                "input_ids",
                "length",
            ]
        )
        self.output_columns = tuple(outputs)

    def with_padding(
        self, padding: Padding = "longest", pad_to_multiple_of: int | None = None
    ) -> TextPreprocessor:
        """A copy that pads batches another way (same tokenisation, same cache)."""
        return TextPreprocessor(
            self.tokenizer,
            max_length=self.max_length,
            token_type_ids=self.token_type_ids,
            pad_token_id=self.pad_token_id,
            padding=padding,
            pad_to_multiple_of=pad_to_multiple_of,
        )

    # -- the three steps ---------------------------------------------------------------------

    def transform(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """Tokenise a batch of ``text`` (and ``text_pair``); deterministic, no padding."""
        if "text" not in batch:
            raise DataError(
                f"text preprocessing needs a 'text' column; the batch has {sorted(batch)}"
            )
        texts = batch["text"]
        pairs = batch.get("text_pair")
        inputs: list[str | tuple[str, str]] = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise DataError(
                    f"row {i} of the batch: 'text' must be a string, got {type(text).__name__}"
                )
            pair = None if pairs is None else pairs[i]
            if pair is None:
                inputs.append(text)
            elif isinstance(pair, str):
                inputs.append((text, pair))
            else:
                raise DataError(
                    f"row {i} of the batch: 'text_pair' must be a string, got {type(pair).__name__}"
                )
        encodings = self.tokenizer.encode_batch(inputs) if inputs else []
        out: dict[str, list[Any]] = {
            "input_ids": [e.ids for e in encodings],
            "length": [len(e.ids) for e in encodings],
        }
        if self.token_type_ids:
            out["token_type_ids"] = [e.type_ids for e in encodings]
        return out

    def collate(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Pad the batch (dynamic padding) into ``input_ids``, ``attention_mask`` and, when the
        model reads them, ``token_type_ids``."""
        if not examples:
            raise DataError("cannot collate an empty batch")
        ids = [_as_list(ex["input_ids"]) for ex in examples]
        longest = max(len(seq) for seq in ids)
        width = self.max_length if self.padding == "max_length" else longest
        width = max(width, longest)
        if self.pad_to_multiple_of:
            step = self.pad_to_multiple_of
            width = -(-width // step) * step
        input_ids = torch.full((len(ids), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
        types = torch.zeros((len(ids), width), dtype=torch.long) if self.token_type_ids else None
        for row, seq in enumerate(ids):
            n = len(seq)
            input_ids[row, :n] = torch.tensor(seq, dtype=torch.long)
            attention_mask[row, :n] = 1
            if types is not None:
                example_types = examples[row].get("token_type_ids")
                if example_types is not None:
                    types[row, :n] = torch.tensor(_as_list(example_types), dtype=torch.long)
        out = {"input_ids": input_ids, "attention_mask": attention_mask}
        if types is not None:
            out["token_type_ids"] = types
        return out

    def config(self) -> dict[str, Any]:
        """What decides the tokens: the tokenizer (by hash), ``max_length`` and token types.

        Padding is left out: it happens per batch and does not change the cached columns.
        """
        digest = hashlib.sha256(self.tokenizer.to_str().encode()).hexdigest()[:16]
        return {
            "tokenizer_sha256": digest,
            "max_length": self.max_length,
            "token_type_ids": self.token_type_ids,
            "pad_token_id": self.pad_token_id,
        }

    # -- pickling (datasets.map hashes and may pickle the transform) -------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["tokenizer"] = self.tokenizer.to_str()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        tokenizer = Tokenizer.from_str(state.pop("tokenizer"))
        self.__dict__.update(state)
        self.tokenizer = tokenizer
