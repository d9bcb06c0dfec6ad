"""Intensity handling: from scanner values (Hounsfield units, raw 16-bit counts) to 8-bit pixels.

Two ways, chosen per source (``window`` wins when both are given):

- a **window** ``(centre, width)``: values below ``centre - width / 2`` become black, above
  ``centre + width / 2`` white, linear in between. A preset name (:data:`WINDOW_PRESETS`), a
  mapping ``{"center": 40, "width": 400}``, or ``"file"`` (the DICOM file's own
  WindowCenter / WindowWidth);
- a **normalisation**: ``"image"`` stretches each image between its ``percentiles`` (default
  the minimum and maximum), ``"dataset"`` uses the percentiles of every image of the source,
  ``{"range": [low, high]}`` a fixed range, ``"none"`` keeps 8-bit data and scales 16-bit data
  by its type's range; ``"auto"`` (the default) is ``"none"`` for 8-bit data, else ``"image"``.

Colour images ``(H, W, 3)`` go through the same window or normalisation. The percentiles of
``image`` and ``dataset`` are taken over all channels together by default, which keeps the
colour balance (the stain's tint); ``per_channel: true`` stretches each channel between its
own percentiles instead (a simple colour normalisation, which removes global tints).

    >>> import numpy as np
    >>> window_to_uint8(np.array([-1000.0, 40.0, 1000.0]), *resolve_window("soft-tissue"))
    array([  0, 128, 255], dtype=uint8)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lepton_platform.errors import ConfigError

__all__ = [
    "WINDOW_PRESETS",
    "Intensity",
    "resolve_window",
    "scale_to_uint8",
    "window_to_uint8",
]

#: Named windows ``(centre, width)`` in Hounsfield units (CT), as radiologists read them.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "soft-tissue": (40.0, 400.0),
    "abdomen": (60.0, 400.0),
    "liver": (30.0, 150.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
}
_ALIASES = {"soft_tissue": "soft-tissue", "softtissue": "soft-tissue", "mediastinal": "mediastinum"}
_NORMALIZE = ("auto", "image", "dataset", "none")


def resolve_window(window: str | Mapping[str, Any] | Sequence[float]) -> tuple[float, float]:
    """``(centre, width)`` of a preset name, a ``{"center", "width"}`` mapping or a pair."""
    if isinstance(window, str):
        key = _ALIASES.get(window.lower(), window.lower())
        if key not in WINDOW_PRESETS:
            raise ConfigError(
                f"unknown window preset {window!r}; known: {', '.join(sorted(WINDOW_PRESETS))}, "
                "or give {'center': c, 'width': w}, or 'file' for the DICOM file's own window"
            )
        return WINDOW_PRESETS[key]
    if isinstance(window, Mapping):
        centre = window.get("center", window.get("centre"))
        width = window.get("width")
        if centre is None or width is None:
            raise ConfigError(f"a window mapping needs 'center' and 'width', got {dict(window)}")
    elif isinstance(window, Sequence) and not isinstance(window, str) and len(window) == 2:
        centre, width = window[0], window[1]
    else:
        raise ConfigError(f"window must be a preset name, a mapping or a pair, got {window!r}")
    if not float(width) > 0:
        raise ConfigError(f"window width must be positive, got {width}")
    return float(centre), float(width)


def window_to_uint8(values: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Apply a linear window to an array (any shape), giving ``uint8``."""
    low = centre - width / 2.0
    scaled = (np.asarray(values, dtype=np.float64) - low) / width
    return np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)


def scale_to_uint8(values: np.ndarray, low: Any, high: Any) -> np.ndarray:
    """Stretch ``[low, high]`` onto ``0..255`` (a constant image becomes black). ``low`` and
    ``high`` are numbers, or one per channel (the last axis) of a colour image."""
    arr = np.asarray(values, dtype=np.float64)
    lo, hi = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    span = hi - lo
    flat = span <= 0
    scaled = (arr - lo) * (255.0 / np.where(flat, 1.0, span))
    scaled = np.where(flat, 0.0, scaled)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Intensity:
    """The intensity settings of one source (see the module docstring).

    ``window`` is ``None``, ``"file"`` or ``(centre, width)``; ``normalize`` one of ``auto``,
    ``image``, ``dataset``, ``none`` or ``range``; ``percentiles`` bound the stretch, over
    all channels of a colour image or (``per_channel``) each channel on its own.
    """

    window: tuple[float, float] | str | None = None
    normalize: str = "auto"
    percentiles: tuple[float, float] = (0.0, 100.0)
    value_range: tuple[float, float] | None = None
    per_channel: bool = False

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], defaults: Intensity | None = None
    ) -> Intensity:
        """Read ``window``, ``normalize``, ``percentiles`` and ``per_channel`` from a source
        mapping (falling back to ``defaults``, the domain's settings)."""
        base = defaults or cls()
        window: tuple[float, float] | str | None = base.window
        if "window" in options:
            raw = options["window"]
            window = raw if raw is None or raw == "file" else resolve_window(raw)
        normalize, value_range = base.normalize, base.value_range
        if "normalize" in options:
            raw_norm = options["normalize"]
            if isinstance(raw_norm, Mapping):
                if "range" not in raw_norm or len(raw_norm["range"]) != 2:
                    raise ConfigError(
                        f"normalize mapping needs 'range': [low, high], got {raw_norm}"
                    )
                low, high = (float(v) for v in raw_norm["range"])
                if not high > low:
                    raise ConfigError(f"normalize range must have high > low, got {[low, high]}")
                normalize, value_range = "range", (low, high)
            elif raw_norm in _NORMALIZE:
                normalize, value_range = str(raw_norm), None
            else:
                raise ConfigError(
                    f"normalize must be one of {', '.join(_NORMALIZE)} or {{'range': [lo, hi]}}, "
                    f"got {raw_norm!r}"
                )
        percentiles = base.percentiles
        if "percentiles" in options:
            raw_p = options["percentiles"]
            if not isinstance(raw_p, Sequence) or len(raw_p) != 2:
                raise ConfigError(f"percentiles must be [low, high], got {raw_p!r}")
            lo, hi = float(raw_p[0]), float(raw_p[1])
            if not 0.0 <= lo < hi <= 100.0:
                raise ConfigError(f"percentiles must satisfy 0 <= low < high <= 100, got {raw_p}")
            percentiles = (lo, hi)
        per_channel = base.per_channel
        if "per_channel" in options:
            if not isinstance(options["per_channel"], bool):
                raise ConfigError(
                    f"per_channel must be true or false, got {options['per_channel']!r}"
                )
            per_channel = options["per_channel"]
        return cls(
            window=window,
            normalize=normalize,
            percentiles=percentiles,
            value_range=value_range,
            per_channel=per_channel,
        )

    def needs_dataset_statistics(self) -> bool:
        return self.normalize == "dataset" and not isinstance(self.window, tuple)

    def _range(self, values: np.ndarray) -> tuple[Any, Any]:
        """The percentiles of ``values`` (``(N, C)`` per channel, or flat)."""
        if self.per_channel and values.ndim == 2:
            low, high = np.percentile(values, self.percentiles, axis=0)
            return low, high
        low, high = np.percentile(values, self.percentiles)
        return float(low), float(high)

    def dataset_range(self, arrays: Sequence[np.ndarray]) -> tuple[Any, Any]:
        """The percentiles over every value of every array (``normalize: dataset``); per
        channel when ``per_channel`` and the arrays are colour ``(H, W, 3)``."""
        colour = [np.asarray(a).ndim == 3 for a in arrays]
        if self.per_channel and all(colour):
            stacked = np.concatenate(
                [np.asarray(a, dtype=np.float64).reshape(-1, 3) for a in arrays]
            )
            return self._range(stacked)
        flat = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])
        return self._range(flat)

    def to_uint8(
        self,
        values: np.ndarray,
        *,
        file_window: tuple[float, float] | None = None,
        dataset_range: tuple[Any, Any] | None = None,
        integer_bits: int | None = None,
    ) -> np.ndarray:
        """Map one image's values (``(H, W)`` or colour ``(H, W, 3)``) to ``uint8``.
        ``file_window`` is the DICOM file's own window (used for ``window: "file"``, and by
        default for DICOM when no normalisation is set); ``integer_bits`` the bit depth of
        integer data (8 keeps it as is under ``auto``)."""
        window = self.window
        if window == "file":  # no window in the file: fall back to the normalisation
            window = file_window
        if isinstance(window, tuple):
            return window_to_uint8(values, *window)
        mode = self.normalize
        if mode == "auto":
            mode = "none" if integer_bits == 8 else "image"
        if mode == "none":
            if integer_bits is not None and integer_bits > 8:
                return scale_to_uint8(values, 0.0, float(2**integer_bits - 1))
            return np.clip(np.rint(np.asarray(values, dtype=np.float64)), 0, 255).astype(np.uint8)
        if mode == "range":
            assert self.value_range is not None
            return scale_to_uint8(values, *self.value_range)
        if mode == "dataset":
            if dataset_range is None:
                raise ConfigError("normalize: dataset needs the dataset's range (internal error)")
            return scale_to_uint8(values, *dataset_range)
        arr = np.asarray(values, dtype=np.float64)
        return scale_to_uint8(
            arr, *self._range(arr.reshape(-1, arr.shape[-1]) if arr.ndim == 3 else arr.ravel())
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "window": list(self.window) if isinstance(self.window, tuple) else self.window,
            "normalize": self.normalize,
            "percentiles": list(self.percentiles),
            "range": None if self.value_range is None else list(self.value_range),
            "per_channel": self.per_channel,
        }
