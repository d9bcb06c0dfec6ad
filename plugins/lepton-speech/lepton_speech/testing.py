"""Helpers that write real audio files for tests: tones in any format, and the bad inputs the
speech domain must handle or refuse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = ["BAD_INPUTS", "tone", "write_bad_inputs", "write_tone"]

#: file name -> what :func:`write_bad_inputs` puts there and what the domain does with it.
BAD_INPUTS: dict[str, str] = {
    "truncated.wav": "refused: the data chunk is cut in half",
    "empty.wav": "refused: zero bytes",
    "header_only.wav": "refused: a valid header and no samples",
    "text.wav": "refused: a text file named .wav",
    "nan.wav": "refused: 32-bit float samples with NaN",
    "pcm8.wav": "converted: unsigned 8-bit PCM",
    "pcm24.wav": "converted: 24-bit PCM",
    "stereo.wav": "converted: two channels mixed down",
    "rate44k.wav": "converted: 44.1 kHz resampled",
    "long.flac": "cropped: 60 s, far longer than the maximum duration",
}


def tone(
    seconds: float, rate: int, freq: float = 440.0, channels: int = 1, amplitude: float = 0.5
) -> np.ndarray:
    """A sine tone, ``(frames,)`` or ``(frames, channels)`` (channel k at ``freq * (k+1)``)."""
    t = np.arange(round(seconds * rate)) / rate
    waves = [amplitude * np.sin(2 * np.pi * freq * (k + 1) * t) for k in range(channels)]
    out = np.stack(waves, axis=1) if channels > 1 else waves[0]
    return out.astype(np.float32)


def write_tone(
    path: str | Path,
    *,
    seconds: float = 0.25,
    rate: int = 16000,
    freq: float = 440.0,
    channels: int = 1,
    subtype: str | None = None,
) -> Path:
    """Write a tone; the format follows the extension (``.wav``, ``.flac``, ``.ogg``)."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    sf.write(file, tone(seconds, rate, freq, channels), rate, subtype=subtype)
    return file


def write_bad_inputs(folder: str | Path) -> dict[str, Path]:
    """Write every file of :data:`BAD_INPUTS` into ``folder`` and return their paths."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    whole = write_tone(root / "whole.tmp.wav", seconds=0.5)
    data = whole.read_bytes()
    whole.unlink()
    out["truncated.wav"] = root / "truncated.wav"
    out["truncated.wav"].write_bytes(data[: len(data) // 2])
    out["empty.wav"] = root / "empty.wav"
    out["empty.wav"].write_bytes(b"")
    out["header_only.wav"] = root / "header_only.wav"
    sf.write(out["header_only.wav"], np.zeros(0, dtype=np.float32), 16000)
    out["text.wav"] = root / "text.wav"
    out["text.wav"].write_text("label,path\nthis is not audio\n", encoding="utf-8")
    nan = tone(0.25, 16000)
    nan[100:110] = np.nan
    out["nan.wav"] = root / "nan.wav"
    sf.write(out["nan.wav"], nan, 16000, subtype="FLOAT")
    out["pcm8.wav"] = write_tone(root / "pcm8.wav", subtype="PCM_U8")
    out["pcm24.wav"] = write_tone(root / "pcm24.wav", subtype="PCM_24")
    out["stereo.wav"] = write_tone(root / "stereo.wav", channels=2)
    out["rate44k.wav"] = write_tone(root / "rate44k.wav", rate=44100)
    out["long.flac"] = write_tone(root / "long.flac", seconds=60.0, rate=16000)
    return out
