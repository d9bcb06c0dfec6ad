"""Decoding with soundfile: formats, sample widths, channels, rates, and refused files."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lepton_speech.audio import check_audio, encode_wav, probe_audio, read_audio, resample
from lepton_speech.testing import tone, write_bad_inputs, write_tone

from lepton_platform.errors import DataError


def _peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(samples.shape[0], 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize("name", ["a.wav", "a.flac", "a.ogg"])
def test_formats_decode_to_the_same_tone(tmp_path: Path, name: str) -> None:
    file = write_tone(tmp_path / name, seconds=0.5, freq=500)
    samples, rate = read_audio(str(file))
    assert rate == 16000
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(samples.shape[0] - 8000) <= 100  # OGG may pad a little
    assert _peak_hz(samples, rate) == pytest.approx(500, abs=4)


def test_sample_widths_are_converted_to_float(tmp_path: Path) -> None:
    bad = write_bad_inputs(tmp_path)
    reference = tone(0.25, 16000)
    for name, tolerance in (("pcm8.wav", 1 / 64), ("pcm24.wav", 1e-6)):
        samples, _ = read_audio(str(bad[name]))
        assert np.abs(samples - reference).max() < tolerance, name


def test_stereo_is_mixed_down_to_the_channel_mean(tmp_path: Path) -> None:
    file = write_tone(tmp_path / "s.wav", channels=2)
    samples, _ = read_audio(str(file))
    both = tone(0.25, 16000, channels=2)
    assert np.allclose(samples, both.mean(axis=1), atol=1e-4)


def test_resampling_keeps_the_pitch_and_the_duration(tmp_path: Path) -> None:
    file = write_tone(tmp_path / "hi.wav", rate=44100, seconds=0.5, freq=700)
    samples, rate = read_audio(str(file))
    out = resample(samples, rate, 16000)
    assert out.shape[0] == 8000
    assert _peak_hz(out, 16000) == pytest.approx(700, abs=4)


def test_long_clips_are_read_only_as_far_as_needed(tmp_path: Path) -> None:
    file = write_tone(tmp_path / "long.flac", seconds=60.0)
    samples, rate = read_audio(str(file), max_seconds=2.0)
    assert samples.shape[0] == 2 * rate + 1
    assert check_audio(str(file)).duration == pytest.approx(60.0)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated.wav", "truncated WAV"),
        ("empty.wav", "empty file"),
        ("header_only.wav", "no audio samples"),
        ("text.wav", "not a readable audio file"),
        ("nan.wav", "NaN or infinite"),
    ],
)
def test_bad_files_are_refused_with_their_path(tmp_path: Path, name: str, reason: str) -> None:
    bad = write_bad_inputs(tmp_path)
    with pytest.raises(DataError) as info:
        check_audio(str(bad[name]))
    assert str(bad[name]) in str(info.value) and reason in str(info.value)
    if name != "nan.wav":  # a header probe cannot see NaN samples
        with pytest.raises(DataError, match=reason):
            read_audio({"path": str(bad[name]), "bytes": None})


def test_nan_samples_are_found_on_decode_not_on_probe(tmp_path: Path) -> None:
    bad = write_bad_inputs(tmp_path)
    assert probe_audio(str(bad["nan.wav"])).frames == 4000
    with pytest.raises(DataError, match="NaN"):
        read_audio(str(bad["nan.wav"]))


def test_in_memory_bytes_decode_and_truncation_is_caught(tmp_path: Path) -> None:
    data = encode_wav(tone(0.1, 8000), 8000)
    samples, rate = read_audio({"path": None, "bytes": data})
    assert rate == 8000 and samples.shape == (800,)
    with pytest.raises(DataError, match="truncated WAV"):
        read_audio({"path": "clip.wav", "bytes": data[:-100]})
    with pytest.raises(DataError, match=r"clip\.wav: empty audio"):
        read_audio({"path": "clip.wav", "bytes": b""})


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere\.wav: no such audio file"):
        read_audio(str(tmp_path / "nowhere.wav"))


def test_encode_wav_gives_the_same_bytes_a_second_later() -> None:
    """No timestamp in the file (libsndfile's PEAK chunk had one): the same samples give the
    same bytes, hence the same data fingerprint, and decode to exactly those samples."""
    samples = np.random.default_rng(0).uniform(-1, 1, size=(700, 2)).astype(np.float32)
    first = encode_wav(samples, 8000)
    time.sleep(1.1)
    assert encode_wav(samples, 8000) == first
    assert b"PEAK" not in first
    decoded, rate = sf.read(io.BytesIO(first), dtype="float32")
    assert rate == 8000 and np.array_equal(decoded, samples)


def test_encode_wav_refuses_empty_arrays() -> None:
    with pytest.raises(DataError, match="non-empty"):
        encode_wav(np.zeros(0), 16000)
    assert sf.info(io.BytesIO(encode_wav(np.zeros((10, 2)), 8000))).channels == 2
