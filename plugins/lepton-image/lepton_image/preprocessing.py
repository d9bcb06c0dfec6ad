"""Image preprocessing: decode, resize and crop once (cached), augment and normalise per batch.

- :meth:`ImagePreprocessor.transform` (deterministic, run through ``datasets.map`` and cached)
  decodes each image, converts it to RGB (or grayscale for 1-channel backbones), resizes its
  short side to ``resize_size`` and crops the centre ``image_size`` square. It stores raw
  ``uint8`` HWC pixels as bytes in ``pixel_values``: 150 KB for a 224x224 RGB image, a quarter of
  float32, and fast to read back in any dataset format.
- :meth:`ImagePreprocessor.augment` (training only): random resized crop and horizontal flip.
- :meth:`ImagePreprocessor.collate` stacks, converts to float, normalises with the weights'
  mean and std and returns ``pixel_values`` ``(B, C, H, W)``; with ``channels_last=True`` in
  channels-last memory format, for free (the cached pixels are HWC already). Measured on the
  development CPU, channels-last made ResNet-18 training slower (0.9x, see
  ``docs/benchmarks.md``), so it is off by default; turn it on for GPUs with mixed precision.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from lepton_image.decode import DEFAULT_MAX_PIXELS, ImageReadError, open_image, to_mode
from lepton_platform.errors import ConfigError, DataError
from lepton_platform.models import Preprocessor, config_fingerprint

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Augmentation", "ImagePreprocessor"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_INTERPOLATIONS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def pixel_values(inputs: dict[str, torch.Tensor], owner: str, channels_last: bool) -> torch.Tensor:
    """The ``pixel_values`` batch that :class:`ImagePreprocessor` collates, as a backbone's
    forward reads it (channels-last when the backbone stores its weights so); another key is
    a :class:`ConfigError` naming ``owner``."""
    if "pixel_values" not in inputs:
        raise ConfigError(
            f"{owner} reads 'pixel_values' (from its preprocessor's collate); got {sorted(inputs)}"
        )
    x = inputs["pixel_values"]
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def example_pixels(
    batch_size: int, channels: int, size: int, channels_last: bool
) -> dict[str, torch.Tensor]:
    """A random ``pixel_values`` batch as :class:`ImagePreprocessor` collates it, in the
    backbone's layout (a backbone's ``example_batch``)."""
    pixels = torch.randn(batch_size, channels, size, size)
    if channels_last:
        pixels = pixels.contiguous(memory_format=torch.channels_last)
    return {"pixel_values": pixels}


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation. ``enabled=False`` turns it off; ``hflip`` is the probability of
    a horizontal flip (0 for digits and text-like images); ``scale`` and ``ratio`` bound the
    random resized crop (area fraction and aspect ratio), as in torchvision."""

    enabled: bool = True
    scale: tuple[float, float] = (0.35, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.5

    def to_json(self) -> dict[str, Any]:
        """The options as a backbone's ``config()`` records them (what :meth:`from_options`
        reads back)."""
        return {
            "enabled": self.enabled,
            "scale": list(self.scale),
            "ratio": list(self.ratio),
            "hflip": self.hflip,
        }

    @classmethod
    def from_options(cls, options: Augmentation | Mapping[str, Any] | bool | None) -> Augmentation:
        """Build from a mapping (config files), a bool, ``None`` (the defaults) or itself."""
        if isinstance(options, Augmentation):
            return options
        if options is None or options is True:
            return cls()
        if options is False:
            return cls(enabled=False)
        if not isinstance(options, Mapping):
            raise ConfigError(f"augmentation must be a mapping or a bool, got {options!r}")
        known = {"enabled", "scale", "ratio", "hflip"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"augmentation has no option(s) {unknown}; known: {sorted(known)}")
        kwargs: dict[str, Any] = dict(options)
        for key in ("scale", "ratio"):
            if key in kwargs:
                kwargs[key] = tuple(float(v) for v in kwargs[key])
        made = cls(**kwargs)
        lo, hi = made.scale
        if not 0 < lo <= hi <= 1:
            raise ConfigError(
                f"augmentation scale must satisfy 0 < low <= high <= 1, got {made.scale}"
            )
        if not 0 < made.ratio[0] <= made.ratio[1]:
            raise ConfigError(f"augmentation ratio must satisfy 0 < low <= high, got {made.ratio}")
        if not 0 <= made.hflip <= 1:
            raise ConfigError(f"augmentation hflip is a probability, got {made.hflip}")
        return made


class ImagePreprocessor(Preprocessor):
    """The input pipeline of the image backbones (see the module docstring).

    Example::

        prep = ImagePreprocessor(image_size=224, resize_size=256)
        batch = prep.transform({"image": [pil_image]})     # {"pixel_values": [b"..."]}
        tensors = prep.collate([{"pixel_values": batch["pixel_values"][0]}])
        tensors["pixel_values"].shape                       # (1, 3, 224, 224)
    """

    input_columns = ("image",)
    output_columns = ("pixel_values",)

    def __init__(
        self,
        *,
        image_size: int = 224,
        resize_size: int | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        channels: int = 3,
        interpolation: str = "bilinear",
        augmentation: Augmentation | Mapping[str, Any] | bool | None = None,
        channels_last: bool = False,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        if channels not in (1, 3):
            raise ConfigError(f"image preprocessing: channels must be 1 or 3, got {channels}")
        if image_size < 1:
            raise ConfigError(f"image_size must be positive, got {image_size}")
        if interpolation not in _INTERPOLATIONS:
            raise ConfigError(
                f"interpolation must be one of {sorted(_INTERPOLATIONS)}, got {interpolation!r}"
            )
        self.image_size = int(image_size)
        self.resize_size = int(resize_size) if resize_size else self.image_size
        if self.resize_size < self.image_size:
            raise ConfigError(
                f"resize_size ({self.resize_size}) must be at least image_size ({self.image_size})"
            )
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise ConfigError(f"mean {mean} and std {std} need {channels} values, std > 0")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.channels = channels
        self.interpolation = interpolation
        self.augmentation = Augmentation.from_options(augmentation)
        self.channels_last = bool(channels_last)
        self.max_pixels = int(max_pixels)

    # -- deterministic, cached -------------------------------------------------------------

    def _resize_crop(self, image: Image.Image) -> np.ndarray:
        if self.channels == 1 and image.mode in ("RGB", "RGBA", "CMYK", "YCbCr"):
            warnings.warn(
                f"a 1-channel backbone makes {image.mode} colour images grey, so colour never "
                "reaches the model; give colour data a 3-channel backbone (in_channels: 3)",
                stacklevel=2,
            )
        image = to_mode(image, "RGB" if self.channels == 3 else "L")
        width, height = image.size
        scale = self.resize_size / min(width, height)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        if (new_w, new_h) != (width, height):
            image = image.resize((new_w, new_h), _INTERPOLATIONS[self.interpolation])
        left = (new_w - self.image_size) // 2
        top = (new_h - self.image_size) // 2
        image = image.crop((left, top, left + self.image_size, top + self.image_size))
        return np.asarray(image, dtype=np.uint8)

    def transform(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """``image`` (PIL images, paths, ``{"bytes", "path"}`` or arrays) to ``pixel_values``:
        ``uint8`` HWC pixels of ``image_size`` squared, as bytes."""
        if "image" not in batch:
            raise DataError(f"image preprocessing needs an 'image' column; got {sorted(batch)}")
        out: list[bytes] = []
        for i, item in enumerate(batch["image"]):
            try:
                if isinstance(item, np.ndarray):
                    from lepton_image.decode import array_to_image

                    image = array_to_image(item)
                else:
                    image = open_image(item, max_pixels=self.max_pixels)
            except ImageReadError as exc:
                where = item.get("path") if isinstance(item, dict) else item
                shown = where if isinstance(where, str) else f"row {i} of the batch"
                raise DataError(f"{shown}: {exc.reason}") from exc
            out.append(self._resize_crop(image).tobytes())
        return {"pixel_values": out}

    # -- random, training only ---------------------------------------------------------------

    def _pixels(self, value: Any) -> np.ndarray:
        shape = (self.image_size, self.image_size, self.channels)
        if isinstance(value, bytes | bytearray | memoryview):
            return np.frombuffer(value, dtype=np.uint8).reshape(shape)
        if isinstance(value, torch.Tensor):
            return value.numpy().astype(np.uint8, copy=False).reshape(shape)
        return np.asarray(value, dtype=np.uint8).reshape(shape)

    def augment(self, example: dict[str, Any]) -> dict[str, Any]:
        """Random resized crop (back to ``image_size``) and horizontal flip, per example."""
        aug = self.augmentation
        if not aug.enabled:
            return example
        pixels = self._pixels(example["pixel_values"])
        size = self.image_size
        area = size * size
        top, left, height, width = 0, 0, size, size
        log_ratio = (math.log(aug.ratio[0]), math.log(aug.ratio[1]))
        for _ in range(10):
            target = area * float(torch.empty(1).uniform_(aug.scale[0], aug.scale[1]))
            ratio = math.exp(float(torch.empty(1).uniform_(*log_ratio)))
            w = round(math.sqrt(target * ratio))
            h = round(math.sqrt(target / ratio))
            if 0 < w <= size and 0 < h <= size:
                top = int(torch.randint(0, size - h + 1, (1,)))
                left = int(torch.randint(0, size - w + 1, (1,)))
                height, width = h, w
                break
        image = Image.fromarray(pixels[..., 0] if self.channels == 1 else pixels)
        if (height, width) != (size, size):
            image = image.resize(
                (size, size),
                _INTERPOLATIONS[self.interpolation],
                box=(left, top, left + width, top + height),
            )
        if aug.hflip and float(torch.rand(1)) < aug.hflip:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        result = dict(example)
        result["pixel_values"] = np.asarray(image, dtype=np.uint8).reshape(size, size, -1)
        return result

    # -- batching ------------------------------------------------------------------------------

    def collate(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Stack ``pixel_values`` into a normalised float batch ``(B, C, H, W)``."""
        if not examples:
            raise DataError("cannot collate an empty batch of images")
        stacked = np.stack([self._pixels(e["pixel_values"]) for e in examples])
        batch = torch.from_numpy(stacked).permute(0, 3, 1, 2)  # a channels-last view of NHWC
        mean = torch.tensor(self.mean).view(1, -1, 1, 1) * 255.0
        std = torch.tensor(self.std).view(1, -1, 1, 1) * 255.0
        pixels = (batch.float() - mean) / std
        memory = torch.channels_last if self.channels_last else torch.contiguous_format
        # a copy with canonical strides: for one channel the NHWC view counts as contiguous
        # already, and its odd strides crash oneDNN's convolution backward on CPU
        out = torch.empty(pixels.shape, dtype=pixels.dtype, memory_format=memory)
        return {"pixel_values": out.copy_(pixels)}

    def config(self) -> dict[str, Any]:
        aug = asdict(self.augmentation)
        return {
            "image_size": self.image_size,
            "resize_size": self.resize_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "channels": self.channels,
            "interpolation": self.interpolation,
            "augmentation": {k: list(v) if isinstance(v, tuple) else v for k, v in aug.items()},
            "channels_last": self.channels_last,
            "max_pixels": self.max_pixels,
        }

    def fingerprint(self) -> str:
        """Hash of what :meth:`transform` depends on only: changing the augmentation, the
        normalisation or the memory format reuses the cached pixels."""
        keys = ("image_size", "resize_size", "channels", "interpolation", "max_pixels")
        config = self.config()
        return config_fingerprint(
            {"class": type(self).__qualname__, "version": 1, **{k: config[k] for k in keys}}
        )


def backbone_preprocessor(
    owner: str,
    in_channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    **options: Any,
) -> ImagePreprocessor:
    """The preprocessor of an image backbone with ``in_channels`` input channels: its 3-channel
    ``mean`` and ``std`` averaged for a grey (1-channel) backbone; another channel count is a
    :class:`ConfigError` naming ``owner``. ``options`` go to :class:`ImagePreprocessor`."""
    if in_channels not in (1, 3):
        raise ConfigError(
            f"{owner}: the image preprocessor makes 1- or 3-channel batches; a "
            f"{in_channels}-channel backbone needs its own preprocessor"
        )
    if in_channels == 1:
        mean, std = (sum(mean) / len(mean),), (sum(std) / len(std),)
    return ImagePreprocessor(mean=mean, std=std, channels=in_channels, **options)
