"""Backbones: local folders, real MiniLM weights, Lepton model folders, pooling, layer groups,
weight-loading reports, and the preprocessor (tokenisation, truncation, padding, caching)."""

from __future__ import annotations

import logging
from pathlib import Path

import datasets
import pytest
import torch
from lepton_text._tiny import tiny_options, tiny_vocab
from lepton_text.backbone import TextBackbone, wordpiece_tokenizer
from lepton_text.preprocess import TextPreprocessor
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

import lepton_platform as lp
from lepton_platform.errors import ConfigError
from lepton_platform.testing.tiny import save_backbone


def tiny(**overrides: object) -> TextBackbone:
    torch.manual_seed(0)
    options = {**tiny_options("bert"), **overrides}
    backbone = lp.create_backbone("hf-text", pretrained=None, **options)
    assert isinstance(backbone, TextBackbone)
    return backbone


def save_transformers_folder(folder: Path, *, hidden: int = 32) -> BertModel:
    """A tiny random BERT saved the way transformers saves any model: config, weights, tokenizer."""
    vocab = tiny_vocab()
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(1)
    model = BertModel(config)
    model.save_pretrained(folder)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=wordpiece_tokenizer(vocab),
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(folder)
    return model


def test_local_transformers_folder_loads_with_its_weights(tmp_path: Path) -> None:
    original = save_transformers_folder(tmp_path / "bert")
    backbone = lp.create_backbone("hf-text", pretrained=str(tmp_path / "bert"), pooling="pooler")
    assert isinstance(backbone, TextBackbone)
    assert backbone.load_report.missing == [] and backbone.load_report.unexpected == []
    torch.testing.assert_close(
        backbone.model.embeddings.word_embeddings.weight,
        original.embeddings.word_embeddings.weight,
    )
    assert backbone.group_names() == ["embeddings", "encoder.0", "encoder.1", "pooler"]
    batch = backbone.preprocessor().collate(
        [{"input_ids": [2, 120, 3]}, {"input_ids": [2, 121, 122, 3]}]
    )
    backbone.eval()
    original.eval()
    with torch.no_grad():
        expected = original(**batch).pooler_output
        got = backbone(**{k: v for k, v in batch.items()})
    torch.testing.assert_close(got, expected)


def test_bad_pretrained_values_say_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="neither a transformers model folder"):
        lp.create_backbone("hf-text", pretrained=str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="not a folder here and not a Hub id"):
        lp.create_backbone("hf-text", pretrained="./no/such/folder/here")
    with pytest.raises(ConfigError, match="needs model_config"):
        lp.create_backbone("bert-base-uncased", pretrained=None)
    with pytest.raises(ConfigError, match="has no option 'pooling_mode'"):
        lp.create_backbone("hf-text", pretrained=None, pooling_mode="cls")
    with pytest.raises(ConfigError, match="pooling must be one of"):
        tiny(pooling="max")


def test_pooling_cls_and_masked_mean() -> None:
    backbone = tiny(pooling="mean")
    backbone.eval()
    batch = backbone.example_batch(3)
    with torch.no_grad():
        pooled = backbone(**batch)
        hidden = backbone.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
        ).last_hidden_state
    keep = int(batch["attention_mask"][2].sum())
    assert keep < batch["input_ids"].shape[1]  # row 2 is padded
    torch.testing.assert_close(pooled[2], hidden[2, :keep].mean(dim=0))
    backbone.pooling = "cls"
    with torch.no_grad():
        torch.testing.assert_close(backbone(**batch), hidden[:, 0])
    # padding does not change a sentence's mean-pooled features
    backbone.pooling = "mean"
    pre = backbone.preprocessor()
    row = pre.transform({"text": ["the food was good"]})
    alone = pre.collate([{"input_ids": row["input_ids"][0]}])
    padded = pre.with_padding("max_length").collate([{"input_ids": row["input_ids"][0]}])
    assert padded["input_ids"].shape[1] == backbone.max_length
    with torch.no_grad():
        a = backbone(**alone)
        b = backbone(**padded)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_layer_groups_for_each_architecture() -> None:
    for name, layers in (("bert-base-uncased", 2), ("distilbert-base-uncased", 2)):
        spec = lp.get_backbone(name)
        backbone = spec.create(pretrained=None, **spec.tiny_options)
        names = backbone.group_names()
        assert names == ["embeddings"] + [f"encoder.{i}" for i in range(layers)]
    spec = lp.get_backbone("bert-base-uncased")
    backbone = spec.create(pretrained=None, pooling="pooler", **spec.tiny_options)
    assert backbone.group_names()[-1] == "pooler"


def test_minilm_real_weights_give_meaningful_sentence_features(minilm_folder: Path) -> None:
    backbone = lp.create_backbone("all-minilm-l6-v2", pretrained=True)
    assert isinstance(backbone, TextBackbone)
    assert Path(str(backbone.source)) == minilm_folder
    assert backbone.pooling == "mean" and backbone.feature_dim == 384
    assert len(backbone.group_names()) == 7  # embeddings + 6 layers
    pre = backbone.preprocessor()
    sentences = [
        "The food was delicious.",
        "This meal tasted wonderful.",
        "My phone battery died after an hour.",
    ]
    encoded = pre.transform({"text": sentences})
    batch = pre.collate([{k: encoded[k][i] for k in encoded} for i in range(3)])
    backbone.eval()
    with torch.no_grad():
        features = torch.nn.functional.normalize(backbone(**batch), dim=-1)
    similar = float(features[0] @ features[1])
    unrelated = float(features[0] @ features[2])
    assert similar > unrelated + 0.3, (similar, unrelated)
    # the same folder given explicitly loads the same weights
    again = lp.create_backbone("hf-text", pretrained=str(minilm_folder), pooling="mean")
    again.eval()
    with torch.no_grad():
        torch.testing.assert_close(torch.nn.functional.normalize(again(**batch), dim=-1), features)


def test_options_given_with_a_lepton_model_folder_win(tmp_path: Path) -> None:
    """(The conformance kit checks that a Lepton model folder's weights all load.)"""
    backbone = tiny()
    with torch.no_grad():
        for p in backbone.parameters():
            p.add_(0.01)
    folder = save_backbone(tmp_path / "source-model", backbone, domain="text", name="hf-text")
    transferred = lp.create_backbone("hf-text", pretrained=str(folder), pooling="mean")
    assert isinstance(transferred, TextBackbone)
    assert transferred.pooling == "mean"  # an explicit option wins over the recorded one
    assert backbone.pooling == "cls" and transferred.load_report is not None


def test_shape_mismatch_is_reported_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    small = tiny()
    # weights of a larger vocabulary (and an extra tensor) saved under the small one's config
    embeddings = small.model.embeddings.word_embeddings  # type: ignore[union-attr]
    small.model.embeddings.word_embeddings = torch.nn.Embedding(  # type: ignore[union-attr]
        embeddings.num_embeddings + 7, embeddings.embedding_dim
    )
    small.model.extra = torch.nn.Linear(1, 3)  # type: ignore[union-attr]
    folder = save_backbone(
        tmp_path / "m", small, domain="text", name="hf-text", config=tiny().config()
    )
    with caplog.at_level(logging.WARNING, logger="lepton_text"):
        loaded = lp.create_backbone("hf-text", pretrained=str(folder))
    assert isinstance(loaded, TextBackbone)
    report = loaded.load_report
    assert report is not None
    assert sorted(report.unexpected) == ["model.extra.bias", "model.extra.weight"]
    n = len(tiny_vocab())
    assert report.mismatched == [("model.embeddings.word_embeddings.weight", (n, 32), (n + 7, 32))]
    assert report.missing == ["model.embeddings.word_embeddings.weight"]
    assert "1 shape mismatches" in caplog.text


def test_preprocessor_truncates_pairs_types_and_pads() -> None:
    backbone = tiny(max_length=8)
    pre = backbone.preprocessor()
    assert isinstance(pre, TextPreprocessor)
    out = pre.transform(
        {"text": ["the food was very very good and nice", "bad"], "text_pair": ["it is", "nice"]}
    )
    assert out["length"] == [8, 5]
    assert all(len(ids) <= 8 for ids in out["input_ids"])
    cls_id, sep_id = (
        backbone.tokenizer.token_to_id("[CLS]"),
        backbone.tokenizer.token_to_id("[SEP]"),
    )
    assert out["input_ids"][1][0] == cls_id and out["input_ids"][1].count(sep_id) == 2
    assert out["token_type_ids"][1] == [0, 0, 0, 1, 1]
    batch = pre.collate([{k: out[k][i] for k in out} for i in range(2)])
    assert batch["input_ids"].shape == (2, 8)
    assert batch["attention_mask"].sum(dim=1).tolist() == [8, 5]
    assert batch["token_type_ids"][1].tolist() == [0, 0, 0, 1, 1, 0, 0, 0]
    rounded = pre.with_padding("longest", pad_to_multiple_of=4).collate(
        [{"input_ids": out["input_ids"][1]}]
    )
    assert rounded["input_ids"].shape == (1, 8)
    distil = lp.get_backbone("distilbert-base-uncased")
    no_types = distil.create(pretrained=None, **distil.tiny_options).preprocessor()
    assert "token_type_ids" not in no_types.transform({"text": ["hi"]})
    assert "token_type_ids" not in no_types.collate([{"input_ids": [2, 3]}])


def test_transform_runs_through_the_data_layer_cache(tmp_path: Path) -> None:
    from lepton_platform.data import prepare

    pre = tiny().preprocessor()
    ds = datasets.Dataset.from_dict(
        {"text": ["the phone is great", "awful service", ""], "label": [1, 0, 0]},
        features=datasets.Features(
            {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["n", "p"])}
        ),
    )
    first = prepare(ds, pre, cache=tmp_path)
    again = prepare(ds, tiny().preprocessor(), cache=tmp_path)
    assert first["input_ids"] == again["input_ids"]
    assert first["length"] == [len(x) for x in first["input_ids"]]
    assert first["length"][2] == 2  # an empty sentence is [CLS] [SEP]
    assert len(list((tmp_path / "prepared").glob("*.arrow"))) == 1  # reused, not recomputed
    longer = prepare(ds, tiny(max_length=4).preprocessor(), cache=tmp_path)
    assert max(longer["length"]) == 4
    assert len(list((tmp_path / "prepared").glob("*.arrow"))) == 2
