"""Unlabelled target sentences (domain adaptation): one per line, delimited files and JSON Lines
without a label column, labelled sources with their labels dropped, bad records, and CORAL."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import torch
from lepton_text.domain import TextDomain

import lepton_platform as lp
from lepton_platform.data import BadRecords, load_unlabelled
from lepton_platform.errors import ConfigError, DataError


def unlabelled(
    source: dict[str, object], policy: str = "error", domain: TextDomain | None = None
) -> datasets.Dataset:
    ds = (domain or TextDomain()).load_unlabelled(source, bad_records=BadRecords(policy))  # type: ignore[arg-type]
    assert isinstance(ds, datasets.Dataset)
    return ds


def test_one_sentence_per_line(tmp_path: Path) -> None:
    lines = ['"Great" phone, if you like "quotes.', "text", "", "Battery died; sad.", "  "]
    path = tmp_path / "sentences.txt"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    ds = unlabelled({"path": str(path)})
    assert ds.column_names == ["text"]
    assert ds["text"] == ['"Great" phone, if you like "quotes.', "text", "Battery died; sad."]
    with pytest.raises(ConfigError):  # no label: not labelled data
        TextDomain().load({"path": str(path)}, bad_records=BadRecords())
    tabs = tmp_path / "raw.log"  # format: lines keeps tabs and reads any extension
    tabs.write_text("a\tb c\nsecond\n", encoding="utf-8")
    assert unlabelled({"path": str(tabs), "format": "lines"})["text"] == ["a\tb c", "second"]
    with pytest.raises(ConfigError, match="holds no labels"):
        TextDomain().load({"path": str(tabs), "format": "lines"}, bad_records=BadRecords())


def test_files_without_a_label_column(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text('id,review\n1,"Hello, world"\n2,fine\n', encoding="utf-8")
    ds = unlabelled({"path": str(tmp_path / "a.csv"), "text_column": "review"})
    assert ds.column_names == ["text"] and ds["text"] == ["Hello, world", "fine"]
    (tmp_path / "b.tsv").write_text("one\ntwo\nthree\n", encoding="utf-8")  # no header, 1 column
    assert unlabelled({"path": str(tmp_path / "b.tsv")})["text"] == ["one", "two", "three"]
    rows = [{"text": "x", "text_pair": "y"}, {"text": "z", "text_pair": "w"}]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    domain = TextDomain()
    pairs = unlabelled({"path": str(tmp_path / "c.jsonl")}, domain=domain)
    assert pairs.column_names == ["text", "text_pair"] and pairs["text_pair"] == ["y", "w"]
    assert domain.input_columns == ("text", "text_pair")


def test_labelled_sources_drop_their_labels(tmp_path: Path) -> None:
    reviews = tmp_path / "reviews.txt"  # the shared review layout: sentence<TAB>0/1
    reviews.write_bytes(b"Wow... Loved this place.\t1\r\nCrust is not good.\t0\r\n")
    ds = unlabelled({"path": str(reviews)})
    assert ds.column_names == ["text"]
    assert ds["text"] == ["Wow... Loved this place.", "Crust is not good."]
    (tmp_path / "l.csv").write_text("text,label,who\nhi,pos,a\nno label here,,b\n")
    assert unlabelled({"path": str(tmp_path / "l.csv"), "group_column": "who"})["text"] == [
        "hi",
        "no label here",  # a missing label is no bad record: labels are not read
    ]
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["a", "b"])}
    )
    hf = datasets.Dataset.from_dict({"text": ["p", "q"], "label": [0, 1]}, features=features)
    splits = TextDomain().load_unlabelled(
        {"dataset": datasets.DatasetDict({"train": hf, "test": hf})}, bad_records=BadRecords()
    )
    assert isinstance(splits, datasets.DatasetDict)
    assert [part.column_names for part in splits.values()] == [["text"], ["text"]]


def test_bad_records_are_named_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "target.jsonl"
    path.write_text('{"text": "good"}\n{"text": 3}\nnot json\n{"text": "also good"}\n')
    with pytest.raises(DataError) as info:
        unlabelled({"path": str(path)})
    assert f"{path}, row 3: not valid JSON" in str(info.value)  # lines are parsed first
    bad = BadRecords("skip")
    ds = TextDomain().load_unlabelled({"path": str(path)}, bad_records=bad)
    assert sorted((r.file, r.row) for r in bad) == [(str(path), 2), (str(path), 3)]
    assert ds["text"] == ["good", "also good"]
    assert len(load_unlabelled(TextDomain(), str(path), on_bad_record="skip")) == 2


def test_empty_sources_are_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: folder holds no text data file"):
        unlabelled({"path": str(tmp_path / "empty")})
    (tmp_path / "blank.txt").write_text("\n \n")
    with pytest.raises(DataError, match=r"blank\.txt: no readable records"):
        unlabelled({"path": str(tmp_path / "blank.txt")})


def test_coral_adapts_to_a_file_of_sentences(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEPTON_CACHE_DIR", str(tmp_path / "cache"))
    words = {"1": ["good", "great", "loved"], "0": ["bad", "awful", "hated"]}
    lines = [f"the phone was {words[str(i % 2)][i % 3]}\t{i % 2}" for i in range(24)]
    (tmp_path / "phones.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    target = [f"the food was {w}" for w in ("good", "bad", "great", "awful", "fine")]
    (tmp_path / "food.txt").write_text("\n".join(target) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    result = lp.transfer(
        domain="text",
        data={"path": str(tmp_path / "phones.txt")},
        split={"validation": 0.25, "test": 0.25},
        backbone="bert-base-uncased",
        backbone_options=lp.get_backbone("bert-base-uncased").tiny_options,
        strategy="coral",
        train={"epochs": 1, "batch_size": 8, "progress": False, "trackers": ()},
        unlabelled_target=str(tmp_path / "food.txt"),
        bootstrap=0,
    )
    assert result.details["target_examples"] == 5
