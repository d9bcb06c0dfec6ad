"""Reading audio without a system library: decode, check, mix down, resample.

Audio is decoded with the ``soundfile`` wheel, which ships its own libsndfile (WAV, FLAC, OGG
Vorbis and more). ``torchaudio.load`` and the ``datasets`` ``Audio`` decoder are not used: in the
pinned versions both need torchcodec and a system FFmpeg.

An audio reference is what the ``audio`` column of the speech domain holds: a mapping with a
``path`` (a file) and/or ``bytes`` (an encoded file in memory, as Hugging Face datasets embed
them). Every problem raises :class:`~lepton_platform.errors.DataError` naming the file.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf

from lepton_platform.errors import DataError

__all__ = [
    "AudioInfo",
    "check_audio",
    "describe",
    "encode_wav",
    "probe_audio",
    "read_audio",
    "resample",
    "to_mono",
]

#: The encodings the speech domain reads (anything libsndfile reads works too).
EXTENSIONS = (".wav", ".flac", ".ogg")

_BLOCK = 1 << 16


@dataclass(frozen=True)
class AudioInfo:
    """What a full check of one file found."""

    frames: int
    sampling_rate: int
    channels: int
    format: str
    subtype: str

    @property
    def duration(self) -> float:
        return self.frames / self.sampling_rate


def describe(ref: Mapping[str, Any] | str) -> str:
    """The name of an audio reference for messages: its path, or ``<audio bytes>``."""
    if isinstance(ref, str):
        return ref
    path = ref.get("path")
    if path:
        return str(path)
    return "<audio bytes>"


def _source(ref: Mapping[str, Any] | str) -> tuple[str | BinaryIO, str]:
    """An object soundfile can open, and the name to use in messages."""
    name = describe(ref)
    data = None if isinstance(ref, str) else ref.get("bytes")
    if data is not None:
        if len(data) == 0:
            raise DataError(f"{name}: empty audio (0 bytes)")
        _check_riff(bytes(data[:4096]), len(data), name)
        return io.BytesIO(data), name
    path = ref if isinstance(ref, str) else ref.get("path")
    if not path:
        raise DataError("an audio reference has neither a path nor bytes")
    file = Path(path)
    if not file.is_file():
        raise DataError(f"{name}: no such audio file")
    size = file.stat().st_size
    if size == 0:
        raise DataError(f"{name}: empty file (0 bytes); re-export or remove it")
    with file.open("rb") as handle:
        head = handle.read(4096)
    _check_riff(head, size, name)
    return str(file), name


def _check_riff(head: bytes, size: int, name: str) -> None:
    """Refuse a WAV whose ``data`` chunk claims more bytes than the file holds.

    libsndfile silently reads what is there, so a truncated download would otherwise pass as a
    shorter clip. Sizes of 0 or 0xFFFFFFFF (written by streaming recorders) are not checked.
    """
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    offset = 12
    while offset + 8 <= len(head):
        chunk_id = head[offset : offset + 4]
        (chunk_size,) = struct.unpack("<I", head[offset + 4 : offset + 8])
        if chunk_id == b"data":
            if chunk_size in (0, 0xFFFFFFFF):
                return
            available = size - (offset + 8)
            if chunk_size > available:
                raise DataError(
                    f"{name}: truncated WAV: its header declares {chunk_size} bytes of audio, "
                    f"the file holds {max(available, 0)}; re-copy or re-export the file"
                )
            return
        offset += 8 + chunk_size + (chunk_size & 1)


def _open(ref: Mapping[str, Any] | str) -> tuple[sf.SoundFile, str]:
    source, name = _source(ref)
    try:
        handle = sf.SoundFile(source)
    except (sf.LibsndfileError, sf.SoundFileError, RuntimeError, TypeError) as exc:
        raise DataError(
            f"{name}: not a readable audio file (WAV, FLAC or OGG expected): {exc}"
        ) from None
    return handle, name


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Mix ``(frames, channels)`` down to ``(frames,)`` by averaging the channels."""
    if samples.ndim == 1:
        return samples.astype(np.float32, copy=False)
    return np.asarray(samples.mean(axis=1, dtype=np.float32), dtype=np.float32)


def read_audio(
    ref: Mapping[str, Any] | str, *, max_seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """Decode ``ref`` to mono float32 samples in [-1, 1] at its own sampling rate.

    Only the first ``max_seconds`` are decoded (a clip far longer than the model's maximum
    duration is cropped without reading it all). 8/16/24/32-bit PCM and float are converted;
    several channels are averaged. Raises :class:`DataError` naming the file for an empty,
    truncated or unreadable file, and for NaN or infinite samples.
    """
    handle, name = _open(ref)
    with handle:
        rate = int(handle.samplerate)
        frames = int(handle.frames)
        if frames <= 0:
            raise DataError(f"{name}: holds no audio samples")
        want = frames if max_seconds is None else min(frames, math.ceil(max_seconds * rate) + 1)
        try:
            data = handle.read(frames=want, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, sf.SoundFileError, RuntimeError) as exc:
            raise DataError(f"{name}: decoding failed: {exc}") from None
    if data.shape[0] == 0:
        raise DataError(f"{name}: holds no audio samples")
    mono = to_mono(data)
    if not np.isfinite(mono).all():
        raise DataError(f"{name}: holds NaN or infinite samples; fix or remove the file")
    return mono, rate


def probe_audio(ref: Mapping[str, Any] | str) -> AudioInfo:
    """Open ``ref`` and read its header only (fast); :class:`DataError` when it cannot."""
    handle, name = _open(ref)
    with handle:
        info = AudioInfo(
            frames=int(handle.frames),
            sampling_rate=int(handle.samplerate),
            channels=int(handle.channels),
            format=str(handle.format),
            subtype=str(handle.subtype),
        )
    if info.frames <= 0:
        raise DataError(f"{name}: holds no audio samples")
    return info


def check_audio(ref: Mapping[str, Any] | str) -> AudioInfo:
    """Decode all of ``ref`` block by block (little memory) and say what it holds.

    The same problems as :func:`read_audio` raise :class:`DataError`; this is how the speech
    domain finds bad files when it loads a source rather than in the middle of training.
    """
    handle, name = _open(ref)
    with handle:
        info = AudioInfo(
            frames=int(handle.frames),
            sampling_rate=int(handle.samplerate),
            channels=int(handle.channels),
            format=str(handle.format),
            subtype=str(handle.subtype),
        )
        if info.frames <= 0:
            raise DataError(f"{name}: holds no audio samples")
        seen = 0
        try:
            for block in handle.blocks(blocksize=_BLOCK, dtype="float32", always_2d=True):
                if not np.isfinite(block).all():
                    at = seen / info.sampling_rate
                    raise DataError(
                        f"{name}: holds NaN or infinite samples (near {at:.2f} s); "
                        "fix or remove the file"
                    )
                seen += block.shape[0]
        except (sf.LibsndfileError, sf.SoundFileError, RuntimeError) as exc:
            raise DataError(f"{name}: decoding failed: {exc}") from None
    if seen == 0:
        raise DataError(f"{name}: holds no audio samples")
    return info


def resample(samples: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Resample mono float32 samples with ``torchaudio.functional.resample`` (windowed sinc)."""
    if orig_rate == new_rate:
        return samples
    import torch
    from torchaudio.functional import resample as _resample

    wave = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    out = _resample(wave, int(orig_rate), int(new_rate))
    return np.asarray(out.numpy(), dtype=np.float32)


def encode_wav(samples: Any, sampling_rate: int) -> bytes:
    """Encode mono or ``(frames, channels)`` float samples as a 32-bit float WAV in memory."""
    array = np.asarray(samples, dtype=np.float32)
    if array.ndim not in (1, 2) or array.size == 0:
        raise DataError(
            f"audio arrays must be 1-D (frames) or 2-D (frames, channels) and non-empty, "
            f"got shape {array.shape}"
        )
    # Written here rather than by libsndfile, whose float WAVs carry a PEAK chunk stamped with
    # the current second: the same samples would give other bytes (and another data
    # fingerprint) a second later.
    frames = array.reshape(array.shape[0], -1)
    channels, rate = frames.shape[1], int(sampling_rate)
    data = frames.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHHH", 3, channels, rate, rate * channels * 4, channels * 4, 32, 0)
    body = b"".join(
        [
            b"WAVE",
            b"fmt " + struct.pack("<I", len(fmt)) + fmt,  # 3: IEEE float
            b"fact" + struct.pack("<II", 4, frames.shape[0]),
            b"data" + struct.pack("<I", len(data)) + data,
        ]
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body
