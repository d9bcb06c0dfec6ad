"""The preprocessor: resample, crop, pad, normalise, batch with masks, augment when asked."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from lepton_speech.domain import SpeechDomain
from lepton_speech.preprocess import Augmentation, SpeechPreprocessor
from lepton_speech.testing import write_bad_inputs, write_tone

from lepton_platform.data import BadRecords
from lepton_platform.errors import ConfigError, DataError


def test_transform_resamples_crops_pads_and_normalises(tmp_path: Path) -> None:
    files = write_bad_inputs(tmp_path)
    short = write_tone(tmp_path / "short.wav", seconds=0.01)
    pre = SpeechPreprocessor(sampling_rate=16000, max_duration=2.0, min_samples=400)
    refs = [{"path": str(files[n]), "bytes": None} for n in ("rate44k.wav", "long.flac")]
    refs.append({"path": str(short), "bytes": None})
    out = pre.transform({"audio": refs})["input_values"]
    assert [len(x) for x in out] == [4000, 32000, 400]  # 0.25 s at 16 kHz, 2 s, the field
    for values in out:
        assert abs(float(np.mean(values))) < 1e-4
        assert float(np.std(values)) == pytest.approx(1.0, abs=1e-3)
    raw = SpeechPreprocessor(do_normalize=False).process(str(files["pcm24.wav"]))
    assert float(np.abs(raw).max()) == pytest.approx(0.5, abs=1e-3)


def test_transform_names_the_bad_file(tmp_path: Path) -> None:
    files = write_bad_inputs(tmp_path)
    with pytest.raises(DataError, match=r"text\.wav: not a readable audio file"):
        SpeechPreprocessor().transform({"audio": [{"path": str(files["text.wav"])}]})


def test_transform_through_datasets_map_is_cached_and_repeatable(
    class_folder: Path, tmp_path: Path
) -> None:
    ds = SpeechDomain().load({"path": str(class_folder)}, bad_records=BadRecords())
    pre = SpeechPreprocessor(sampling_rate=16000, max_duration=0.2)
    pickle.loads(pickle.dumps(pre))
    mapped = ds.map(pre.transform, batched=True, remove_columns=["audio"])
    assert mapped.column_names == ["label", "input_values"]
    assert all(len(v) == 3200 for v in mapped["input_values"])  # 0.25 s cropped to 0.2 s
    again = ds.map(pre.transform, batched=True, remove_columns=["audio"])
    assert mapped.data.table.equals(again.data.table)


def test_collate_pads_and_masks() -> None:
    pre = SpeechPreprocessor()
    batch = pre.collate(
        [{"input_values": [1.0, 2.0, 3.0]}, {"input_values": np.array([4.0], np.float32)}]
    )
    assert batch["input_values"].tolist() == [[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["attention_mask"].dtype == torch.long


def test_augmentation_is_off_by_default_and_seeded_when_on() -> None:
    example = {"input_values": np.sin(np.arange(8000) / 7).astype(np.float32), "label": 1}
    plain = SpeechPreprocessor()
    assert plain.augment(example) is example
    noisy = SpeechPreprocessor(augment={"noise_snr_db": [10, 10], "p": 1.0})
    torch.manual_seed(0)
    first = noisy.augment(example)["input_values"]
    torch.manual_seed(0)
    second = noisy.augment(example)["input_values"]
    assert np.array_equal(first, second)
    noise = first - example["input_values"]
    snr = 10 * np.log10(np.mean(example["input_values"] ** 2) / np.mean(noise**2))
    assert snr == pytest.approx(10.0, abs=0.5)

    louder = SpeechPreprocessor(augment={"gain_db": 6.0, "p": 1.0}).augment(example)
    assert np.allclose(louder["input_values"], example["input_values"] * 10 ** (6 / 20), atol=1e-5)
    faster = SpeechPreprocessor(augment={"speed": [1.25], "p": 1.0}).augment(example)
    assert len(faster["input_values"]) == 6400 and faster["label"] == 1


def test_augmentation_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        Augmentation.from_options({"reverb": 0.3})
    with pytest.raises(ConfigError, match=r"low 30\.0 is above high 10\.0"):
        Augmentation.from_options({"noise_snr_db": [30, 10]})
    with pytest.raises(ConfigError, match=r"\[0.5, 2.0\]"):
        Augmentation.from_options({"speed": [3.0]})
    with pytest.raises(ConfigError, match="p must be"):
        Augmentation.from_options({"gain_db": 1, "p": 2})


def test_fingerprint_ignores_augmentation_but_not_the_rate() -> None:
    base = SpeechPreprocessor()
    assert SpeechPreprocessor(augment={"gain_db": [-3, 3]}).fingerprint() == base.fingerprint()
    assert SpeechPreprocessor(sampling_rate=8000).fingerprint() != base.fingerprint()
    assert SpeechPreprocessor(augment={"gain_db": [-3, 3]}).config()["augment"] == {
        "noise_snr_db": None,
        "gain_db": [-3.0, 3.0],
        "speed": None,
        "p": 0.5,
    }


def test_bad_preprocessing_options() -> None:
    with pytest.raises(ConfigError, match="max_duration"):
        SpeechPreprocessor(max_duration=0)
    with pytest.raises(ConfigError, match="receptive field"):
        SpeechPreprocessor(max_duration=0.01, min_samples=400)
