"""Sequence classification through the core's fine-tune engine: single-label, and multi-label
sentence pairs, on tiny random BERTs and learnable generated data.

Marked slow: a few hundred optimiser steps, which take minutes on a busy 2-core machine."""

from __future__ import annotations

import json
import random
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from lepton_text._tiny import tiny_options
from lepton_text.domain import TextDomain

import lepton_platform as lp
from lepton_platform.data import BadRecords, prepare
from lepton_platform.engine.finetune import TrainConfig, Trainer
from lepton_platform.models import TransferModel

POSITIVE = ["good", "great", "nice", "loved"]
NEGATIVE = ["bad", "awful", "slow", "hated"]
FILLER = ["the", "food", "service", "was", "very", "really", "it", "this", "place", "staff"]


def sentence(rng: random.Random, word: str) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(1, 5))]
    words.insert(rng.randint(0, len(words)), word)
    return " ".join(words)


def tiny_model(label_names: list[str], name: str) -> TransferModel:
    torch.manual_seed(0)
    spec = lp.get_backbone("bert-base-uncased")
    backbone = spec.create(pretrained=None, **{**tiny_options("bert"), "pooling": "mean"})
    head = lp.create_task(name, label_names=label_names).build_head(backbone.feature_dim)
    return TransferModel(backbone, head)


@pytest.mark.slow
def test_single_label_sentiment_from_a_tsv(tmp_path: Path) -> None:
    rng = random.Random(0)
    lines = []
    for i in range(160):
        label = i % 2
        lines.append(f"{sentence(rng, rng.choice(POSITIVE if label else NEGATIVE))}\t{label}")
    path = tmp_path / "reviews.txt"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    ds = TextDomain().load({"path": str(path)}, bad_records=BadRecords())
    assert isinstance(ds, datasets.Dataset)
    train, test = ds.select(range(120)), ds.select(range(120, 160))
    names = ds.features["label"].names
    model = tiny_model(names, "classification")
    pre = model.backbone.preprocessor()
    task = lp.create_task("classification", label_names=names)
    config = TrainConfig(epochs=6, batch_size=16, lr=3e-3, progress=False, trackers=())
    trainer = Trainer(model, task, config)
    trainer.fit(prepare(train, pre, cache=tmp_path), None, pre)
    logits, labels = trainer.predict(prepare(test, pre, cache=tmp_path), pre)
    assert labels is not None
    accuracy = float((logits.argmax(axis=1) == labels).mean())
    assert accuracy >= 0.9, accuracy


@pytest.mark.slow
def test_multi_label_sentence_pairs(tmp_path: Path) -> None:
    rng = random.Random(1)
    rows = []
    for _ in range(200):
        tags = [t for t in ("good", "bad") if rng.random() < 0.5]
        first = sentence(rng, tags[0]) if tags else sentence(rng, "food")
        second = sentence(rng, tags[1]) if len(tags) > 1 else sentence(rng, "staff")
        rows.append({"text": first, "text_pair": second, "label": tags})
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    ds = TextDomain().load({"path": str(path)}, bad_records=BadRecords())
    assert isinstance(ds, datasets.Dataset) and "text_pair" in ds.column_names
    names = ds.features["label"].feature.names
    assert names == ["bad", "good"]
    train, test = ds.select(range(150)), ds.select(range(150, 200))
    model = tiny_model(names, "multilabel-classification")
    pre = model.backbone.preprocessor()
    task = lp.create_task("multilabel-classification", label_names=names)
    config = TrainConfig(epochs=10, batch_size=16, lr=5e-3, progress=False, trackers=())
    trainer = Trainer(model, task, config)
    trainer.fit(prepare(train, pre, cache=tmp_path), None, pre)
    logits, labels = trainer.predict(prepare(test, pre, cache=tmp_path), pre)
    assert labels is not None
    predicted = (torch.from_numpy(logits).sigmoid() >= 0.5).numpy().astype(int)
    exact = float((predicted == np.asarray(labels)).all(axis=1).mean())
    assert exact >= 0.8, exact
