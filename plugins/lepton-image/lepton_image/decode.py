"""Decoding images with Pillow into plain RGB (or grayscale) pixels.

Every image the plugin reads goes through :func:`open_image` and :func:`to_mode`, so that the
same rules hold for files, bytes, saved datasets and arrays:

- EXIF orientation is applied;
- grayscale, palette, 1-bit, CMYK, YCbCr, LAB and HSV images are converted;
- transparent images (RGBA, LA, palette with transparency) are composited on white;
- 16-bit and 32-bit integer images are scaled to 8 bits (``I;16``: divide by 257), float images
  are taken as 0..1 when their maximum is at most 1, else clipped to 0..255;
- an image of more than ``max_pixels`` pixels is refused before it is decoded
  (decompression-bomb guard).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "array_to_image",
    "check_image",
    "open_image",
    "to_mode",
]

#: Pillow's own default limit (about 89.5 million pixels, a 9459 x 9459 image).
DEFAULT_MAX_PIXELS = 89_478_485

#: File extensions read as images (lowercase, with the dot).
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)


class ImageReadError(Exception):
    """An image could not be read; ``reason`` says why in words a user can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@contextlib.contextmanager
def _pixel_limit() -> Iterator[None]:
    """Replace Pillow's bomb check (a warning at its limit, an error at twice it) by ours:
    :func:`_check_size` reads the size from the header and refuses the image before any pixel
    is decoded, with the size in the message."""
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def _source_bytes(source: Any) -> tuple[bytes | None, str | None]:
    """``(bytes, path)`` of a path, bytes, or ``{"bytes": ..., "path": ...}`` mapping."""
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), None
    if isinstance(source, str | os.PathLike):
        return None, os.fspath(source)
    if isinstance(source, dict):
        raw, path = source.get("bytes"), source.get("path")
        if raw is not None:
            return bytes(raw), path
        if path is not None:
            return None, str(path)
    raise ImageReadError(f"not an image reference: {type(source).__name__}")


def open_image(source: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open and fully decode an image from a path, bytes, a ``{"bytes", "path"}`` mapping or a
    PIL image, with EXIF orientation applied. Raises :class:`ImageReadError`."""
    if isinstance(source, Image.Image):
        image = source
        _check_size(image, max_pixels)
    else:
        raw, path = _source_bytes(source)
        if raw is None and path is not None:
            if not os.path.exists(path):
                raise ImageReadError("file does not exist")
            if os.path.isdir(path):
                raise ImageReadError("is a folder, not an image file")
            if os.path.getsize(path) == 0:
                raise ImageReadError("file is empty (0 bytes)")
        elif raw is not None and len(raw) == 0:
            raise ImageReadError("image is empty (0 bytes)")
        with _pixel_limit():
            try:
                image = Image.open(io.BytesIO(raw) if raw is not None else path)  # type: ignore[arg-type]
                _check_size(image, max_pixels)
                image.load()
            except ImageReadError:
                raise
            except Image.DecompressionBombError as exc:
                raise ImageReadError(_bomb_reason(None, max_pixels, str(exc))) from exc
            except UnidentifiedImageError as exc:
                raise ImageReadError(
                    "not an image Pillow can read (wrong extension or corrupt header)"
                ) from exc
            except (OSError, SyntaxError, ValueError) as exc:
                raise ImageReadError(f"truncated or corrupt image data ({exc})") from exc
    try:
        transposed = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block: keep the pixels as stored
        transposed = None
    return transposed if transposed is not None else image


def _check_size(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise ImageReadError(_bomb_reason(image.size, max_pixels))
    if width == 0 or height == 0:
        raise ImageReadError(f"image has no pixels ({width}x{height})")


def _bomb_reason(size: tuple[int, int] | None, max_pixels: int, detail: str = "") -> str:
    shown = f"{size[0]}x{size[1]} = {size[0] * size[1]:,} pixels" if size else detail
    return (
        f"image is too large ({shown}), over max_pixels={max_pixels:,} (decompression-bomb "
        "guard); raise the domain option max_pixels if you trust this file"
    )


def check_image(source: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS, decode: bool = True) -> None:
    """Raise :class:`ImageReadError` unless ``source`` is a readable image.

    ``decode=False`` reads only the header (fast: catches missing, empty, non-image and
    oversized files, but not truncated pixel data).
    """
    if decode:
        open_image(source, max_pixels=max_pixels).close()
        return
    raw, path = _source_bytes(source)
    if path is not None and raw is None:
        if not os.path.exists(path):
            raise ImageReadError("file does not exist")
        if os.path.getsize(path) == 0:
            raise ImageReadError("file is empty (0 bytes)")
    elif raw is not None and not raw:
        raise ImageReadError("image is empty (0 bytes)")
    with _pixel_limit():
        try:
            with Image.open(io.BytesIO(raw) if raw is not None else path) as image:  # type: ignore[arg-type]
                _check_size(image, max_pixels)
        except ImageReadError:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageReadError(_bomb_reason(None, max_pixels, str(exc))) from exc
        except UnidentifiedImageError as exc:
            raise ImageReadError(
                "not an image Pillow can read (wrong extension or corrupt header)"
            ) from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageReadError(f"corrupt image header ({exc})") from exc


def _scale_high_depth(image: Image.Image) -> Image.Image:
    """16/32-bit integer or float single-channel images to 8-bit ``L``."""
    arr = np.asarray(image)
    peak = float(arr.max(initial=0))
    if image.mode.startswith("I;16"):
        scaled = arr.astype(np.float64) / 257.0
    elif arr.dtype.kind == "f":
        scaled = arr * 255.0 if peak <= 1.0 else arr
    elif peak <= 255:
        scaled = arr
    elif peak <= 65535:
        scaled = arr.astype(np.float64) / 257.0
    else:
        scaled = arr.astype(np.float64) / 16843009.0  # the 32-bit range onto 0..255
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def to_mode(image: Image.Image, mode: str = "RGB") -> Image.Image:
    """Convert any Pillow image to ``RGB`` or ``L``; transparency is composited on white."""
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
    if image.mode == mode:
        return image
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        image = _scale_high_depth(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert(mode)


def array_to_image(
    array: np.ndarray, value_range: tuple[float, float] | None = None
) -> Image.Image:
    """One ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` array as a Pillow image.

    ``uint8`` is taken as is; other dtypes are scaled from ``value_range`` (default: 0..1 for
    floats whose maximum is at most 1, 0..65535 for 16-bit integers, else 0..255) to 0..255.
    """
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ImageReadError(
            f"array of shape {tuple(arr.shape)} is not an image: expected (H, W), (H, W, 1), "
            "(H, W, 3) or (H, W, 4)"
        )
    if arr.dtype != np.uint8:
        if arr.dtype == np.bool_:
            arr = arr.astype(np.uint8) * 255
        else:
            if value_range is None:
                if arr.dtype.kind == "f" and float(np.nanmax(arr, initial=0.0)) <= 1.0:
                    value_range = (0.0, 1.0)
                elif arr.dtype in (np.uint16, np.int32, np.uint32, np.int64) and arr.max() > 255:
                    value_range = (0.0, 65535.0)
                else:
                    value_range = (0.0, 255.0)
            low, high = value_range
            if not high > low:
                raise ImageReadError(f"value_range {value_range} is empty")
            scaled = (arr.astype(np.float64) - low) * (255.0 / (high - low))
            arr = np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr))


def encode_png(image: Image.Image) -> bytes:
    """Lossless PNG bytes of an image (how arrays are stored in the dataset)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
