"""The text domain reads every supported source from generated files, robustly."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from lepton_text.domain import TextDomain

import lepton_platform as lp
from lepton_platform.data import BadRecords
from lepton_platform.errors import ConfigError, DataError


def load(source: dict[str, object], policy: str = "error") -> datasets.Dataset:
    ds = TextDomain().load(source, bad_records=BadRecords(policy))  # type: ignore[arg-type]
    assert isinstance(ds, datasets.Dataset)
    return ds


def test_registered_through_the_entry_point() -> None:
    spec = lp.get_domain("text")
    assert spec.provider is not None and spec.provider.distribution == "lepton-text"
    assert isinstance(lp.create_domain("text"), TextDomain)


def test_review_style_tsv_crlf_no_header_with_stray_quotes(tmp_path: Path) -> None:
    # the shared review data: sentence<TAB>0/1, CRLF, no header, no quoting, quotes in text
    lines = [
        "Wow... Loved this place.\t1",
        '"Great" phone, if you like "quotes.\t1',
        'The "best" was "not good\t0',
        "Crust is not good.\t0",
    ]
    path = tmp_path / "reviews.txt"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    ds = load({"path": str(path)})
    assert ds["text"] == [line.split("\t")[0] for line in lines]
    assert ds.features["label"].names == ["0", "1"]
    assert ds["label"] == [1, 1, 0, 0]


def test_csv_with_header_quoted_delimiters_and_line_breaks(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text(
        'id,text,label\r\n1,"Hello, world",pos\r\n2,"two\r\nlines ""quoted""",neg\r\n3,,neg\r\n',
        encoding="utf-8",
        newline="",
    )
    ds = load({"path": str(path)})
    assert ds["text"] == ["Hello, world", 'two\r\nlines "quoted"', ""]
    assert ds.features["label"].names == ["neg", "pos"]
    assert ds["label"] == [1, 0, 0]


def test_byte_order_mark_and_unicode_line_separators_stay_inside_text(tmp_path: Path) -> None:
    texts = ["first\u2028still first", "second\u0085still second", "third\u2029\x0cend", ""]
    body = "text\tlabel\n" + "".join(f"{t}\t{i % 2}\n" for i, t in enumerate(texts))
    path = tmp_path / "odd.tsv"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    ds = load({"path": str(path)})
    assert ds["text"] == texts  # the BOM is not part of the header, separators are kept
    assert len(ds) == 4


def test_not_utf8_names_row_and_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "latin1.tsv"
    data = "good line\t1\nanother\t0\ncaf\xe9 au lait\t1\n".encode("latin-1")
    path.write_bytes(data)
    with pytest.raises(DataError) as info:
        load({"path": str(path)})
    message = str(info.value)
    assert "latin1.tsv" in message and "row 3" in message
    offset = data.index(b"\xe9")
    assert f"byte offset {offset}" in message


def test_utf16_file_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_bytes("text,label\nhi,1\n".encode("utf-16"))
    with pytest.raises(DataError, match="UTF-16"):
        load({"path": str(path)})


def test_bad_rows_stop_the_run_or_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text("fine\t1\nno label\t\ntoo\tmany\t1\t2\nalso fine\t0\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.tsv, row 2: missing label"):
        load({"path": str(path)})
    bad = BadRecords("skip")
    ds = TextDomain().load({"path": str(path)}, bad_records=bad)
    assert isinstance(ds, datasets.Dataset)
    assert ds["text"] == ["fine", "also fine"]
    assert [(r.row, r.reason.split(" ")[0]) for r in bad] == [(2, "missing"), (3, "has")]
    assert "has 4 columns, expected 2" in bad.records[1].reason


def test_sentence_pairs_from_three_columns_and_names(tmp_path: Path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text("a cat\ta dog\tno\nsame\tsame\tyes\n", encoding="utf-8")
    domain = TextDomain()
    ds = domain.load({"path": str(path)}, bad_records=BadRecords())
    assert isinstance(ds, datasets.Dataset)
    assert ds["text_pair"] == ["a dog", "same"]
    assert domain.input_columns == ("text", "text_pair")
    named = tmp_path / "named.csv"
    named.write_text("q,a,y\nwhy,because,1\nhow,so,0\n", encoding="utf-8")
    ds = load(
        {"path": str(named), "text_column": "q", "text_pair_column": "a", "label_column": "y"}
    )
    assert ds["text"] == ["why", "how"] and ds["text_pair"] == ["because", "so"]


def test_explicit_options_delimiter_header_quoting_columns(tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    path.write_text('1;"quoted; kept"\n0;plain\n', encoding="utf-8")
    ds = load(
        {
            "path": str(path),
            "delimiter": ";",
            "header": False,
            "columns": ["y", "sentence"],
            "text_column": "sentence",
            "label_column": "y",
            "quoting": "csv",
        }
    )
    assert ds["text"] == ["quoted; kept", "plain"]
    raw = load(
        {
            "path": str(path),
            "delimiter": ";",
            "columns": ["y", "sentence"],
            "text_column": "sentence",
            "label_column": "y",
            "quoting": "none",
            "header": False,
        },
        policy="skip",
    )
    assert raw["text"] == ["plain"]  # the quoted row splits into 3 columns: a bad record
    with pytest.raises(ConfigError, match="unknown key"):
        load({"path": str(path), "seperator": ";"})


def test_json_array_and_json_lines(tmp_path: Path) -> None:
    rows = [{"text": "a\u2028b", "label": "x"}, {"text": "", "label": "y"}]
    array = tmp_path / "data.json"
    array.write_text(json.dumps(rows), encoding="utf-8")
    ds = load({"path": str(array)})
    assert ds["text"] == ["a\u2028b", ""] and ds["label"] == [0, 1]

    lines = tmp_path / "data.jsonl"
    lines.write_text(
        "\r\n".join(
            [
                json.dumps({"text": "one\u0085two", "label": 1}, ensure_ascii=False),
                "{not json",
                json.dumps({"text": "no label"}),
                json.dumps({"text": 5, "label": 0}),
                "",
                json.dumps({"text": "last", "label": 0}),
            ]
        ),
        encoding="utf-8",
    )
    bad = BadRecords("skip")
    ds = TextDomain().load({"path": str(lines)}, bad_records=bad)
    assert isinstance(ds, datasets.Dataset)
    assert ds["text"] == ["one\u0085two", "last"]
    assert [r.row for r in bad] == [2, 3, 4]
    assert "not valid JSON" in bad.records[0].reason
    assert "missing label" in bad.records[1].reason
    assert "not a string" in bad.records[2].reason


def test_parquet(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    table = pa.table({"sentence": ["good", "bad", None], "stars": [1.0, 0.0, 1.0]})
    pq.write_table(table, path)
    bad = BadRecords("skip")
    ds = TextDomain(text_column="sentence", label_column="stars").load(
        {"path": str(path)}, bad_records=bad
    )
    assert isinstance(ds, datasets.Dataset)
    assert ds["text"] == ["good", "bad"] and ds.features["label"].names == ["0", "1"]
    assert [r.row for r in bad] == [2]
    with pytest.raises(DataError, match="no text_column 'text'"):
        load({"path": str(path)})


def test_hugging_face_datasets_saved_and_in_memory(tmp_path: Path) -> None:
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "y": datasets.ClassLabel(names=["neg", "pos"])}
    )
    train = datasets.Dataset.from_dict(
        {"sentence": ["nice", "awful", "ok"], "y": [1, 0, 1]}, features=features
    )
    test = datasets.Dataset.from_dict({"sentence": ["fine"], "y": [1]}, features=features)
    dsd = datasets.DatasetDict({"train": train, "test": test})
    folder = tmp_path / "saved"
    dsd.save_to_disk(str(folder))
    domain = TextDomain(text_column="sentence", label_column="y")
    loaded = domain.load({"path": str(folder)}, bad_records=BadRecords())
    assert isinstance(loaded, datasets.DatasetDict)
    assert loaded["train"]["text"] == ["nice", "awful", "ok"]
    assert loaded["train"].features["label"].names == ["neg", "pos"]
    assert loaded["test"]["label"] == [1]
    one = domain.load({"dataset": train}, bad_records=BadRecords())
    assert isinstance(one, datasets.Dataset) and one["label"] == [1, 0, 1]


def test_multi_label_from_separator_and_lists(tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    path.write_text("text,label\nfood and service,food|service\nprice,price\n", encoding="utf-8")
    ds = load({"path": str(path), "label_separator": "|"})
    names = ds.features["label"].feature.names
    assert names == ["food", "price", "service"]
    assert ds["label"] == [[0, 2], [1]]
    # the fine-tune engine turns the index lists into 0/1 vectors when it batches them
    from lepton_platform.engine._loop_utils import make_collate
    from lepton_platform.strategies.probe import FeaturePreprocessor

    collate = make_collate(FeaturePreprocessor(), train=False, with_labels=True, multi_hot=3)
    rows = [{"features": [0.0], "label": label} for label in ds["label"]]
    hot = collate((-1, rows))
    assert hot["labels"].tolist() == [[1, 0, 1], [0, 1, 0]]
    lines = tmp_path / "tags.jsonl"
    lines.write_text('{"text": "t", "label": ["a", "b"]}\n{"text": "u", "label": []}\n')
    ds = load({"path": str(lines)})
    assert ds["label"] == [[0, 1], []]


def test_through_the_data_layer(tmp_path: Path) -> None:
    from lepton_platform import load_data

    for name, offset in (("amazon", 0), ("yelp", 1)):
        rows = [f"sentence {i} from {name}\t{(i + offset) % 2}" for i in range(20)]
        (tmp_path / f"{name}.txt").write_bytes(("\r\n".join(rows) + "\r\n").encode())
    bundle = load_data(
        "text",
        [
            {"path": str(tmp_path / "amazon.txt"), "domain": "amazon", "split": "train"},
            {"path": str(tmp_path / "yelp.txt"), "domain": "yelp", "split": "test"},
        ],
    )
    assert bundle.label_names == ["0", "1"]
    assert set(bundle.test["domain"]) == {"yelp"}
    assert len(bundle.train) + len(bundle.validation) == 20


def test_from_inputs_and_example_dataset() -> None:
    domain = TextDomain()
    ds = domain.from_inputs(["a sentence", "another"])
    assert ds.column_names == ["text"]
    pairs = domain.from_inputs([("q", "a"), {"text": "q2", "text_pair": "a2"}])
    assert pairs["text_pair"] == ["a", "a2"]
    with pytest.raises(DataError, match="input 1"):
        domain.from_inputs(["ok", 3])
    example = domain.example_dataset(6, ["neg", "pos"], seed=1)
    assert len(example) == 6 and sorted(example["label"]) == [0, 0, 0, 1, 1, 1]
    assert example["text"] == domain.example_dataset(6, ["neg", "pos"], seed=1)["text"]
