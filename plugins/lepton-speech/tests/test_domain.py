"""The speech domain: class folders, name patterns, CSV lists, Hugging Face datasets, bad files."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
from lepton_speech.audio import read_audio
from lepton_speech.domain import SpeechDomain
from lepton_speech.testing import BAD_INPUTS, tone, write_bad_inputs, write_tone

from lepton_platform import create_domain
from lepton_platform.data import BadRecords
from lepton_platform.errors import ConfigError, DataError


@pytest.fixture
def domain() -> SpeechDomain:
    made = create_domain("speech")
    assert isinstance(made, SpeechDomain)
    return made


def test_class_folder(domain: SpeechDomain, class_folder: Path) -> None:
    ds = domain.load({"path": str(class_folder)}, bad_records=BadRecords())
    assert ds.features["label"].names == ["no", "yes"]
    assert sorted(ds["label"]) == [0, 0, 0, 1, 1, 1]
    paths = [a["path"] for a in ds["audio"]]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in paths)
    assert {Path(p).suffix for p in paths} == {".wav", ".flac", ".ogg"}
    assert "group" not in ds.column_names


def test_flat_folder_needs_a_pattern(domain: SpeechDomain, tmp_path: Path) -> None:
    for digit in (0, 1):
        for speaker in ("ann", "bob"):
            write_tone(tmp_path / f"{digit}_{speaker}_0.wav", freq=200 + 100 * digit)
    with pytest.raises(DataError, match="its own subfolder or give a pattern"):
        domain.load({"path": str(tmp_path)}, bad_records=BadRecords())
    source = {"path": str(tmp_path), "pattern": r"(?P<label>\d)_(?P<group>[a-z]+)_\d+\.wav"}
    ds = domain.load(source, bad_records=BadRecords())
    rows = sorted(zip(ds["label"], ds["group"], strict=True))
    assert rows == [(0, "ann"), (0, "bob"), (1, "ann"), (1, "bob")]
    with pytest.raises(ConfigError, match="named group"):
        domain.load({"path": str(tmp_path), "pattern": r"\d_.*"}, bad_records=BadRecords())


def test_csv_with_speakers_and_relative_paths(domain: SpeechDomain, tmp_path: Path) -> None:
    write_tone(tmp_path / "clips" / "a.wav")
    write_tone(tmp_path / "clips" / "b.flac")
    write_tone(tmp_path / "clips" / "c.ogg")
    table = tmp_path / "clips.csv"
    table.write_text(
        "file,intent,speaker\nclips/a.wav,stop,s1\nclips/b.flac,go,s2\nclips/c.ogg,stop,s2\n",
        encoding="utf-8",
    )
    source = {"path": str(table), "label_column": "intent", "group_column": "speaker"}
    ds = domain.load(source, bad_records=BadRecords())
    assert ds.features["label"].names == ["go", "stop"]
    assert ds["label"] == [1, 0, 1]
    assert ds["group"] == ["s1", "s2", "s2"]
    assert ds["audio"][1]["path"] == str((tmp_path / "clips" / "b.flac").resolve())


def test_csv_bad_rows_name_the_line(domain: SpeechDomain, tmp_path: Path) -> None:
    write_tone(tmp_path / "ok.wav")
    bad = write_bad_inputs(tmp_path / "bad")
    table = tmp_path / "list.csv"
    table.write_text(
        f"path,label\nok.wav,a\n{bad['text.wav']},b\nmissing.wav,a\n,a\nok.wav,b\n",
        encoding="utf-8",
    )
    with pytest.raises(DataError) as info:
        domain.load({"path": str(table)}, bad_records=BadRecords())
    assert f"{table.resolve()}, row 3" in str(info.value) and "text.wav" in str(info.value)
    skipped = BadRecords("skip")
    ds = domain.load({"path": str(table)}, bad_records=skipped)
    assert len(ds) == 2
    assert [(r.row, r.reason.split(":")[-1].strip()) for r in skipped][1:] == [
        (4, "no such audio file"),
        (5, "empty audio path in column 'path'"),
    ]


def test_bad_inputs_are_converted_cropped_or_refused(domain: SpeechDomain, tmp_path: Path) -> None:
    root = tmp_path / "data"
    files = write_bad_inputs(root / "noisy")
    write_tone(root / "clean" / "ok.wav")
    with pytest.raises(DataError) as info:
        domain.load({"path": str(root)}, bad_records=BadRecords())
    assert "noisy" in str(info.value) and "on_bad_record: skip" in str(info.value)

    skipped = BadRecords("skip")
    ds = domain.load({"path": str(root)}, bad_records=skipped)
    refused = {Path(r.file).name: r.reason for r in skipped}
    expected = {name for name, what in BAD_INPUTS.items() if what.startswith("refused")}
    assert set(refused) == expected
    assert "truncated WAV" in refused["truncated.wav"]
    assert "0 bytes" in refused["empty.wav"]
    assert "no audio samples" in refused["header_only.wav"]
    assert "not a readable audio file" in refused["text.wav"]
    assert "NaN" in refused["nan.wav"]
    kept = {Path(a["path"]).name for a in ds["audio"]}
    assert kept == {"ok.wav"} | {n for n, w in BAD_INPUTS.items() if not w.startswith("refused")}
    assert all(str(files[name]) == r.file for name in expected for r in skipped if name in r.file)


def test_header_verification_misses_only_what_needs_decoding(
    domain: SpeechDomain, tmp_path: Path
) -> None:
    write_bad_inputs(tmp_path / "noisy")
    skipped = BadRecords("skip")
    domain.load({"path": str(tmp_path), "verify": "header"}, bad_records=skipped)
    assert "nan.wav" not in {Path(r.file).name for r in skipped}
    assert "truncated.wav" in {Path(r.file).name for r in skipped}


def _hf_dataset(tmp_path: Path) -> datasets.Dataset:
    files = [write_tone(tmp_path / f"{i}.wav", freq=300 + 50 * i) for i in range(4)]
    raw = datasets.Dataset.from_dict(
        {
            "audio": [str(f) for f in files],
            "intent": ["up", "down", "up", "down"],
            "speaker_id": [7, 7, 8, 8],
        }
    )
    return raw.cast_column("audio", datasets.Audio(sampling_rate=16000))


def test_hf_dataset_with_an_audio_column_is_read_without_torchcodec(
    domain: SpeechDomain, tmp_path: Path
) -> None:
    raw = _hf_dataset(tmp_path / "src")
    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": raw, "test": raw.select([0, 1])}).save_to_disk(str(saved))
    for path in sorted((tmp_path / "src").iterdir()):
        path.unlink()  # the saved dataset must carry the audio bytes itself
    source = {"path": str(saved), "label_column": "intent", "group_column": "speaker_id"}
    loaded = domain.load(source, bad_records=BadRecords())
    assert set(loaded) == {"train", "test"}
    train = loaded["train"]
    assert train.features["label"].names == ["down", "up"]
    assert train["group"] == ["7", "7", "8", "8"]
    first = train["audio"][0]
    assert first["bytes"] and first["path"] == "0.wav"
    samples, rate = read_audio(first)
    assert rate == 16000 and samples.shape == (4000,)
    only = domain.load({**source, "split": "test"}, bad_records=BadRecords())
    assert isinstance(only, datasets.Dataset) and len(only) == 2


def test_hf_dataset_object_and_its_bad_rows(domain: SpeechDomain, tmp_path: Path) -> None:
    raw = _hf_dataset(tmp_path)
    broken = write_bad_inputs(tmp_path / "bad")["truncated.wav"]
    extra = datasets.Dataset.from_dict(
        {"audio": [str(broken)], "intent": ["up"], "speaker_id": [9]}
    ).cast_column("audio", datasets.Audio(sampling_rate=16000))
    data = datasets.concatenate_datasets([raw, extra])
    skipped = BadRecords("skip")
    ds = domain.load({"dataset": data, "label_column": "intent"}, bad_records=skipped)
    assert len(ds) == 4
    (record,) = list(skipped)
    assert record.row == 4 and "truncated WAV" in record.reason and str(broken) in record.reason


def test_from_inputs_accepts_paths_bytes_and_arrays(
    domain: SpeechDomain, class_folder: Path
) -> None:
    wav = class_folder / "yes" / "a.wav"
    inputs = [
        str(wav),
        wav,
        wav.read_bytes(),
        (tone(0.1, 8000), 8000),
        {"array": np.zeros(1000), "sampling_rate": 16000},
    ]
    ds = domain.from_inputs(inputs)
    assert ds.column_names == ["audio"] and len(ds) == 5
    lengths = [read_audio(ref)[0].shape[0] for ref in ds["audio"]]
    assert lengths == [4000, 4000, 4000, 800, 1000]
    with pytest.raises(DataError, match="input 1: expected an audio file path"):
        domain.from_inputs([str(wav), 3.5])
    with pytest.raises(DataError, match=r"input 0: .*no such audio file"):
        domain.from_inputs([str(class_folder / "nope.wav")])
    with pytest.raises(DataError, match=r"input 0: .*NaN"):
        domain.from_inputs([(np.full(100, np.nan), 8000)])


def test_example_dataset_is_repeatable_and_decodes(domain: SpeechDomain) -> None:
    ds = domain.example_dataset(6, ["low", "mid", "high"], seed=3)
    again = domain.example_dataset(6, ["low", "mid", "high"], seed=3)
    assert ds.data.table.equals(again.data.table)
    assert ds["label"] == [0, 1, 2, 0, 1, 2]
    samples, rate = read_audio(ds["audio"][2])
    assert rate == 16000 and 0.2 * rate <= samples.shape[0] <= 0.4 * rate


def test_source_errors_name_what_to_fix(domain: SpeechDomain, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        domain.load({"path": str(tmp_path), "labels": "x"}, bad_records=BadRecords())
    with pytest.raises(DataError, match="does not exist"):
        domain.load({"path": str(tmp_path / "absent")}, bad_records=BadRecords())
    with pytest.raises(DataError, match="no audio files"):
        domain.load({"path": str(tmp_path)}, bad_records=BadRecords())
    with pytest.raises(ConfigError, match="verify"):
        create_domain("speech", verify="sometimes")
