"""The speech preprocessor: from an audio reference to the model's ``input_values``.

``transform`` (deterministic, cached by ``datasets.map``): decode with soundfile, mix down to
mono, resample with torchaudio to the backbone's rate, crop to ``max_duration`` (the start of the
clip is kept), pad a clip shorter than the convolutional receptive field with silence, and
normalise to zero mean and unit variance when the backbone's feature extractor does
(``do_normalize``). ``augment`` (random, training only, off by default): speed perturbation,
gain, and noise at a signal-to-noise ratio, all from ``torchaudio.functional``. ``collate`` pads
a batch to its longest clip and returns the ``attention_mask`` (1 on samples, 0 on padding).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lepton_platform.errors import ConfigError
from lepton_platform.models import Preprocessor, config_fingerprint
from lepton_speech.audio import read_audio, resample

__all__ = ["Augmentation", "SpeechPreprocessor", "normalize"]

_AUGMENT_KEYS = ("noise_snr_db", "gain_db", "speed", "p")


def normalize(samples: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance, as ``Wav2Vec2FeatureExtractor(do_normalize=True)`` does."""
    samples = samples.astype(np.float32, copy=False)
    scaled = (samples - samples.mean()) / np.sqrt(samples.var() + 1e-7)
    return np.asarray(scaled, dtype=np.float32)


def _range(key: str, value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return (float(value), float(value))
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"augment.{key} must be a number or a [low, high] pair, got {value!r}"
        ) from None
    if low > high:
        raise ConfigError(f"augment.{key}: low {low} is above high {high}")
    return (low, high)


@dataclass(frozen=True)
class Augmentation:
    """Training-time perturbations, each applied with probability ``p`` when configured.

    ``noise_snr_db``: white noise at a signal-to-noise ratio drawn from ``[low, high]`` dB
    (``torchaudio.functional.add_noise``). ``gain_db``: a gain drawn from ``[low, high]`` dB
    (``torchaudio.functional.gain``). ``speed``: factors to choose from, e.g. ``[0.9, 1.0, 1.1]``
    (``torchaudio.functional.speed``; it changes duration and pitch, as Kaldi's perturbation).
    """

    noise_snr_db: tuple[float, float] | None = None
    gain_db: tuple[float, float] | None = None
    speed: tuple[float, ...] | None = None
    p: float = 0.5

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | Augmentation | None) -> Augmentation:
        """Validate a mapping such as ``{"noise_snr_db": [10, 30], "p": 0.5}``."""
        if options is None:
            return cls()
        if isinstance(options, Augmentation):
            return options
        if not isinstance(options, Mapping):
            raise ConfigError(f"augment must be a mapping of {_AUGMENT_KEYS}, got {options!r}")
        unknown = sorted(set(options) - set(_AUGMENT_KEYS))
        if unknown:
            raise ConfigError(
                f"augment has unknown key(s) {unknown}; allowed: {', '.join(_AUGMENT_KEYS)}"
            )
        p = float(options.get("p", 0.5))
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"augment.p must be in [0, 1], got {p}")
        speed = options.get("speed")
        factors: tuple[float, ...] | None = None
        if speed is not None:
            if isinstance(speed, int | float):
                speed = [speed]
            factors = tuple(round(float(f), 2) for f in speed)
            if not factors or any(not 0.5 <= f <= 2.0 for f in factors):
                raise ConfigError(f"augment.speed factors must lie in [0.5, 2.0], got {speed!r}")
        return cls(
            noise_snr_db=_range("noise_snr_db", options.get("noise_snr_db")),
            gain_db=_range("gain_db", options.get("gain_db")),
            speed=factors,
            p=p,
        )

    @property
    def enabled(self) -> bool:
        return self.p > 0 and any(
            v is not None for v in (self.noise_snr_db, self.gain_db, self.speed)
        )

    def config(self) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        return {
            "noise_snr_db": None if self.noise_snr_db is None else list(self.noise_snr_db),
            "gain_db": None if self.gain_db is None else list(self.gain_db),
            "speed": None if self.speed is None else list(self.speed),
            "p": self.p,
        }


def _uniform(bounds: tuple[float, float]) -> float:
    low, high = bounds
    return low + (high - low) * float(torch.rand(()))


class SpeechPreprocessor(Preprocessor):
    """Audio references (the ``audio`` column) to normalised waveforms at ``sampling_rate``.

    ``min_samples`` is the backbone's receptive field: a shorter clip is padded with silence so
    that the convolutional encoder yields at least one frame.
    """

    input_columns = ("audio",)
    output_columns = ("input_values",)

    def __init__(
        self,
        *,
        sampling_rate: int = 16000,
        max_duration: float = 10.0,
        do_normalize: bool = True,
        min_samples: int = 400,
        augment: Mapping[str, Any] | Augmentation | None = None,
    ) -> None:
        if int(sampling_rate) < 1000:
            raise ConfigError(f"sampling_rate must be at least 1000 Hz, got {sampling_rate}")
        if not float(max_duration) > 0:
            raise ConfigError(f"max_duration must be positive seconds, got {max_duration}")
        self.sampling_rate = int(sampling_rate)
        self.max_duration = float(max_duration)
        self.do_normalize = bool(do_normalize)
        self.min_samples = max(int(min_samples), 1)
        self.augmentation = Augmentation.from_options(augment)
        if self.min_samples > self.max_samples:
            raise ConfigError(
                f"max_duration {self.max_duration} s is shorter than the model's receptive field "
                f"({self.min_samples} samples at {self.sampling_rate} Hz)"
            )

    @property
    def max_samples(self) -> int:
        return math.floor(self.max_duration * self.sampling_rate)

    # -- deterministic ---------------------------------------------------------------------------

    def process(self, ref: Mapping[str, Any] | str) -> np.ndarray:
        """One audio reference (``{"path": ..., "bytes": ...}`` or a path) to input values."""
        samples, rate = read_audio(ref, max_seconds=self.max_duration)
        samples = resample(samples, rate, self.sampling_rate)
        return self._finish(samples)

    def _finish(self, samples: np.ndarray) -> np.ndarray:
        samples = samples[: self.max_samples]
        if samples.shape[0] < self.min_samples:
            samples = np.pad(samples, (0, self.min_samples - samples.shape[0]))
        return normalize(samples) if self.do_normalize else samples.astype(np.float32)

    def transform(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """``{"audio": [ref, ...]}`` to ``{"input_values": [float32 array, ...]}``."""
        return {"input_values": [self.process(ref) for ref in batch["audio"]]}

    # -- random ----------------------------------------------------------------------------------

    def augment(self, example: dict[str, Any]) -> dict[str, Any]:
        """Speed, gain and noise perturbation of one example (the torch RNG draws them)."""
        aug = self.augmentation
        if not aug.enabled:
            return example
        from torchaudio import functional as AF

        wave = torch.as_tensor(np.asarray(example["input_values"], dtype=np.float32))[None]
        if aug.speed is not None and float(torch.rand(())) < aug.p:
            factor = aug.speed[int(torch.randint(len(aug.speed), ()))]
            if factor != 1.0:
                wave, _ = AF.speed(wave, self.sampling_rate, factor)
        if aug.gain_db is not None and float(torch.rand(())) < aug.p:
            wave = AF.gain(wave, _uniform(aug.gain_db))
        if aug.noise_snr_db is not None and float(torch.rand(())) < aug.p:
            snr = torch.tensor([_uniform(aug.noise_snr_db)])
            wave = AF.add_noise(wave, torch.randn_like(wave), snr)
        samples = wave[0].numpy().astype(np.float32)
        samples = samples[: self.max_samples]
        if samples.shape[0] < self.min_samples:
            samples = np.pad(samples, (0, self.min_samples - samples.shape[0]))
        return {**example, "input_values": samples}

    # -- batching --------------------------------------------------------------------------------

    def collate(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Pad to the longest clip with zeros; ``attention_mask`` marks the real samples."""
        if not examples:
            raise ValueError("collate needs at least one example")
        waves = [
            torch.as_tensor(np.asarray(e["input_values"], dtype=np.float32)).reshape(-1)
            for e in examples
        ]
        longest = max(w.shape[0] for w in waves)
        values = torch.zeros(len(waves), longest, dtype=torch.float32)
        mask = torch.zeros(len(waves), longest, dtype=torch.long)
        for i, wave in enumerate(waves):
            values[i, : wave.shape[0]] = wave
            mask[i, : wave.shape[0]] = 1
        return {"input_values": values, "attention_mask": mask}

    # -- description -----------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {
            "sampling_rate": self.sampling_rate,
            "max_duration": self.max_duration,
            "do_normalize": self.do_normalize,
            "min_samples": self.min_samples,
            "augment": self.augmentation.config(),
        }

    def fingerprint(self) -> str:
        """Keys the ``transform`` cache: augmentation settings do not change it."""
        config = {k: v for k, v in self.config().items() if k != "augment"}
        return config_fingerprint({"class": type(self).__qualname__, **config})
