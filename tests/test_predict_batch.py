"""``lepton predict`` on many inputs: folders (recursively, by the domain's file types),
standard input, CSV and JSONL tables, long vectors; bad inputs named while the rest are
predicted; output as a table, CSV or JSON lines, in input order; ``lp.predict`` the same."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

import lepton_platform as lp
from lepton_platform.errors import DataError
from tests._saved_models import LABELS, lepton, save_tiny, write_png

TEXTS = ["the food was good", "bad service", "=cmd|' /C calc'!A0", "the staff was really nice"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def scores(predictions: list[lp.Prediction]) -> list[list[float]]:
    return [[p.scores[n] for n in LABELS] for p in predictions]


def photo_folder(tmp_path: Path) -> tuple[Path, list[Path]]:
    """Pictures in nested folders, a broken one, a text file and a hidden folder."""
    photos = tmp_path / "photos"
    (photos / "b" / "deeper").mkdir(parents=True)
    good = [
        write_png(photos / "a.png", seed=1),
        write_png(photos / "b" / "c.PNG", seed=2),
        write_png(photos / "b" / "deeper" / "d.png", seed=3),
    ]
    (photos / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    (photos / "notes.txt").write_text("not an image")  # not the domain's file type
    (photos / ".hidden").mkdir()
    write_png(photos / ".hidden" / "e.png", seed=4)  # hidden: left out
    return photos, good


def test_a_folder_is_searched_for_the_domains_files_and_a_bad_one_is_named(
    tmp_path: Path,
) -> None:
    model = save_tiny(tmp_path / "model", "image")
    photos, good = photo_folder(tmp_path)
    result = lp.predict(model, [photos], batch_size=2)
    broken = str(photos / "b" / "broken.png")
    assert result.total == 4 and [b.name for b in result.bad] == [broken]
    assert result.bad[0].index == 1 and "broken.png" not in result.bad[0].reason
    assert result.inputs == [str(p) for p in sorted(good)]
    want = scores(lp.load(model).predict([str(p) for p in sorted(good)]))
    np.testing.assert_allclose(scores(result.predictions), want, atol=1e-6)
    assert [r["input"] for r in result.records()] == [str(good[0]), broken] + [
        str(p) for p in sorted(good)[1:]
    ]
    with pytest.raises(DataError, match=r"bad input .*broken\.png: .*--on-bad-input skip"):
        lp.predict(model, [photos], on_bad_input="error")


@pytest.mark.slow
def test_cli_predicts_a_folder_into_jsonl_and_names_the_bad_file(tmp_path: Path) -> None:
    model = save_tiny(tmp_path / "model", "image")
    photos, good = photo_folder(tmp_path)
    out = tmp_path / "preds.jsonl"
    cli = lepton("predict", str(model), f"{photos}/", "--output", str(out), cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    assert f"bad input {photos / 'b' / 'broken.png'}:" in cli.stderr
    assert "predicted 3 of 4 inputs" in cli.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    expected_order = sorted(good)  # a.png, b/broken.png (bad), b/c.PNG, b/deeper/d.png
    assert [r["input"] for r in rows] == [str(p) for p in expected_order]
    want = scores(lp.load(model).predict([str(p) for p in expected_order]))
    np.testing.assert_allclose([[r["scores"][n] for n in LABELS] for r in rows], want, atol=1e-6)
    assert [r["label"] for r in rows] == [LABELS[int(np.argmax(w))] for w in want]

    stop = lepton("predict", str(model), str(photos), "--on-bad-input", "error", cwd=tmp_path)
    assert stop.returncode == 1
    assert "broken.png" in stop.stderr and "--on-bad-input skip" in stop.stderr


@pytest.mark.slow
def test_cli_reads_standard_input_with_text_and_writes_csv(tmp_path: Path) -> None:
    model = save_tiny(tmp_path / "model", "text")
    out = tmp_path / "preds.csv"
    cli = lepton(
        "predict", str(model), "-", "--text", "--output", str(out), "--batch-size", "3",
        cwd=tmp_path, stdin="\n".join(TEXTS[:2]) + "\n\n" + "\n".join(TEXTS[2:]) + "\n",
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    with out.open(newline="") as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["input", "label", *[f"score_{n}" for n in LABELS]]
    assert [r[0] for r in table[1:]] == [TEXTS[0], TEXTS[1], "'" + TEXTS[2], TEXTS[3]]
    want = scores(lp.load(model).predict(TEXTS))
    np.testing.assert_allclose([[float(v) for v in r[2:]] for r in table[1:]], want, atol=1e-6)
    # the table on stdout: one line per input, in order
    lines = cli.stdout.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == TEXTS

    # a text file given as a path is not read as a sentence
    (tmp_path / "inputs.txt").write_text("\n".join(TEXTS))
    refused = lepton("predict", str(model), "inputs.txt", cwd=tmp_path)
    assert refused.returncode == 1
    assert "inputs.txt is a file, but the 'text' domain reads no files" in refused.stderr
    assert "--text" in refused.stderr


@pytest.mark.slow
def test_cli_reads_tables_with_a_column_and_long_vector_arguments(tmp_path: Path) -> None:
    model = save_tiny(tmp_path / "model", "tabular", num_features=128, hidden=[8, 6])
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, 128)).round(4).tolist()
    names = [f"x{i}" for i in range(128)]
    table = tmp_path / "rows.csv"
    with table.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", *names])
        for i, v in enumerate(vectors):
            writer.writerow([i, *v])
        writer.writerow([3, *vectors[0][:100]])  # a short row: bad, named by its line
    cli = lepton("predict", str(model), str(table), "--column", ",".join(names), "--json",
                 cwd=tmp_path)  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    records = json.loads(cli.stdout)
    assert [r["input"] for r in records] == [f"{table} line {n}" for n in (2, 3, 4, 5)]
    assert "error" in records[3] and f"{table} line 5" in cli.stderr
    want = scores(lp.load(model).predict(vectors))
    np.testing.assert_allclose([[r["scores"][n] for n in LABELS] for r in records[:3]], want,
                               atol=1e-5)  # fmt: skip

    # a 128-number JSON list as an argument is a vector, not a file name that is too long
    argument = json.dumps(vectors[1])
    single = lepton("predict", str(model), argument, "--json", cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    np.testing.assert_allclose(
        [json.loads(single.stdout)[0]["scores"][n] for n in LABELS], want[1], atol=1e-5
    )


def test_jsonl_and_csv_tables_and_vectors_through_the_python_api(tmp_path: Path) -> None:
    model = save_tiny(tmp_path / "model", "tabular", num_features=128, hidden=[8, 6])
    vectors = np.random.default_rng(1).normal(size=(3, 128)).round(4).tolist()
    want = scores(lp.load(model).predict(vectors))
    lines = tmp_path / "rows.jsonl"
    lines.write_text("".join(json.dumps({"v": v}) + "\n" for v in vectors) + '{"w": 1}\n')
    result = lp.predict(model, [lines, json.dumps(vectors[2])], column="v")
    assert result.total == 5 and len(result.predictions) == 4
    assert [b.name for b in result.bad] == [f"{lines} line 4"]
    assert "no value in column 'v'" in result.bad[0].reason
    np.testing.assert_allclose(scores(result.predictions), [*want, want[2]], atol=1e-5)
    with pytest.raises(DataError, match=r"rows\.jsonl line 4: no value in column 'v'"):
        lp.predict(model, [lines], column="v", on_bad_input="error")
    table = tmp_path / "rows.csv"
    table.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"rows\.csv: no column 'v' \(it has a, b\)"):
        lp.predict(model, [table], column="v")
    with pytest.raises(DataError, match="name the column that holds the inputs with --column"):
        lp.predict(model, [table])


def test_python_api_collects_inputs_and_names_what_it_cannot_read(tmp_path: Path) -> None:
    model = save_tiny(tmp_path / "model", "text")
    result = lp.predict(model, ["-"], strings=True, stdin=io.StringIO("good\n\nbad food\n"))
    assert [r["input"] for r in result.rows()] == ["good", "bad food"]
    np.testing.assert_allclose(
        scores(result.predictions), scores(lp.load(model).predict(["good", "bad food"]))
    )
    with pytest.raises(DataError, match=r"no such file or folder.*--text"):
        lp.predict(model, ["a sentence, not a file"])
    with pytest.raises(DataError, match="is a folder, but the 'text' domain reads no files"):
        lp.predict(model, [tmp_path])


@pytest.mark.slow
def test_under_accelerate_launch_the_inputs_are_split_and_gathered_in_order(
    tmp_path: Path,
) -> None:
    import os
    import socket
    import subprocess
    import sys

    model = save_tiny(tmp_path / "model", "tabular")  # 4 features
    vectors = np.random.default_rng(2).normal(size=(7, 4)).round(4).tolist()
    rows = [json.dumps({"v": v}) for v in vectors]
    rows.insert(3, json.dumps({"w": 0}))  # a bad row in the first process's share
    (tmp_path / "rows.jsonl").write_text("\n".join(rows) + "\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONWARNINGS": "ignore", "ACCELERATE_USE_CPU": "1"}  # fmt: skip
    launch = [
        str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu",
        "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", str(port),
        "-m", "lepton_platform.cli.main", "predict", str(model), "rows.jsonl", "--column", "v",
        "--batch-size", "2", "--output", "two.jsonl", "--quiet",
    ]  # fmt: skip
    done = subprocess.run(launch, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("bad input") == 1 and "rows.jsonl line 4" in done.stderr
    two = [json.loads(line) for line in (tmp_path / "two.jsonl").read_text().splitlines()]
    assert [r["input"] for r in two] == [f"rows.jsonl line {n}" for n in (1, 2, 3, 5, 6, 7, 8)]
    want = scores(lp.load(model).predict(vectors))
    np.testing.assert_allclose([[r["scores"][n] for n in LABELS] for r in two], want, atol=1e-5)
