"""Unlabelled target audio (domain adaptation): folders of any structure, single files, labelled
sources with their labels dropped, bad files, and CORAL adapting to such a folder."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
import torch
from lepton_speech.domain import SpeechDomain
from lepton_speech.testing import BAD_INPUTS, write_bad_inputs, write_tone

import lepton_platform as lp
from lepton_platform.data import BadRecords, load_unlabelled
from lepton_platform.errors import ConfigError, DataError


def unlabelled(
    source: dict[str, object], policy: str = "error", domain: SpeechDomain | None = None
) -> datasets.Dataset:
    ds = (domain or SpeechDomain()).load_unlabelled(source, bad_records=BadRecords(policy))  # type: ignore[arg-type]
    assert isinstance(ds, datasets.Dataset)
    return ds


def test_a_folder_of_recordings_at_any_depth(tmp_path: Path) -> None:
    root = tmp_path / "calls"
    write_tone(root / "a.wav")
    write_tone(root / "b.flac", rate=8000)
    write_tone(root / "monday" / "c.ogg")
    write_tone(root / "monday" / "late" / "d.wav")
    (root / "notes.txt").write_text("not audio")  # other extensions are not picked up
    ds = unlabelled({"path": str(root)})
    assert ds.column_names == ["audio"] and len(ds) == 4
    assert all(Path(ref["path"]).is_absolute() for ref in ds["audio"])
    with pytest.raises(DataError, match="its own subfolder or give a pattern"):
        SpeechDomain().load({"path": str(root)}, bad_records=BadRecords())


def test_labelled_sources_read_without_labels(class_folder: Path, tmp_path: Path) -> None:
    ds = unlabelled({"path": str(class_folder)})
    assert ds.column_names == ["audio"] and len(ds) == 6
    pattern = {"path": str(class_folder), "pattern": r"(?P<label>x)"}  # matches nothing
    assert len(unlabelled(pattern)) == 6  # the pattern reads labels: not used here
    (tmp_path / "list.csv").write_text(
        f"path,label\n{class_folder}/yes/a.wav,yes\n{class_folder}/no/a.ogg,\n"
    )
    assert len(unlabelled({"path": str(tmp_path / "list.csv")})) == 2
    (tmp_path / "paths.csv").write_text(f"file\n{class_folder}/yes/b.wav\n")
    assert unlabelled({"path": str(tmp_path / "paths.csv")}).column_names == ["audio"]
    with pytest.raises(DataError, match="no label column"):
        SpeechDomain().load({"path": str(tmp_path / "paths.csv")}, bad_records=BadRecords())
    raw = datasets.Dataset.from_dict(
        {"audio": [str(class_folder / "yes" / "a.wav")], "intent": ["up"]}
    ).cast_column("audio", datasets.Audio(sampling_rate=16000))
    assert unlabelled({"dataset": raw}).column_names == ["audio"]


def test_a_file_and_a_list_of_files(class_folder: Path) -> None:
    files = [str(class_folder / "yes" / "c.flac"), str(class_folder / "no" / "b.ogg")]
    assert unlabelled({"path": files[0]})["audio"][0]["path"] == files[0]
    assert len(load_unlabelled(SpeechDomain(), files)) == 2
    with pytest.raises(ConfigError, match="one audio file has no label"):
        SpeechDomain().load({"path": files[0]}, bad_records=BadRecords())


def test_bad_files_are_named_and_skipped(tmp_path: Path) -> None:
    files = write_bad_inputs(tmp_path / "target")
    with pytest.raises(DataError, match="on_bad_record: skip"):
        unlabelled({"path": str(tmp_path / "target")})
    bad = BadRecords("skip")
    ds = SpeechDomain().load_unlabelled({"path": str(tmp_path / "target")}, bad_records=bad)
    refused = {n for n, what in BAD_INPUTS.items() if what.startswith("refused")}
    assert {r.file for r in bad} == {str(files[n]) for n in refused}
    assert len(ds) == len(BAD_INPUTS) - len(refused)
    skipped = load_unlabelled(SpeechDomain(), str(tmp_path / "target"), on_bad_record="skip")
    assert len(skipped) == len(ds)


def test_empty_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DataError, match=f"{tmp_path / 'empty'}: no audio files"):
        unlabelled({"path": str(tmp_path / "empty")})


def test_coral_adapts_to_a_folder_of_recordings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEPTON_CACHE_DIR", str(tmp_path / "cache"))
    for i in range(6):
        write_tone(tmp_path / "source" / "low" / f"{i}.wav", freq=200 + 10 * i, seconds=0.1)
        write_tone(tmp_path / "source" / "high" / f"{i}.wav", freq=900 + 10 * i, seconds=0.1)
    for i in range(5):
        write_tone(tmp_path / "target" / f"{i}.wav", freq=300 + 100 * i, seconds=0.1, rate=8000)
    torch.manual_seed(0)
    result = lp.transfer(
        domain="speech",
        data={"path": str(tmp_path / "source")},
        split={"validation": 0.25, "test": 0.25},
        backbone="wav2vec2-base",
        backbone_options=lp.get_backbone("wav2vec2-base").tiny_options,
        strategy="coral",
        train={"epochs": 1, "batch_size": 4, "progress": False, "trackers": ()},
        unlabelled_target=str(tmp_path / "target"),
        bootstrap=0,
    )
    assert result.details["target_examples"] == 5
