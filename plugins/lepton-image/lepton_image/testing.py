"""Makers of real image files, good and bad, for tests (this plugin's and others', such as the
medical plugin's): small random images, truncated files, and a decompression bomb that is
60 KB on disk."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["png_bytes", "truncated", "write_huge_png", "write_image"]


def write_image(
    path: Path, size: tuple[int, int] = (12, 10), mode: str = "RGB", seed: int = 0
) -> Path:
    """A small random image file in the format of the path's extension."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "CMYK": 4}[mode]
    pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode=mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_huge_png(path: Path, side: int = 20000) -> Path:
    """A valid 1-bit PNG of side x side pixels, about 60 KB on disk (a decompression bomb)."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", body)
        + _png_chunk(b"IEND", b"")
    )
    return path


def truncated(path: Path, keep: float = 0.5) -> Path:
    """Cut a file to a fraction of its bytes."""
    data = path.read_bytes()
    # cut inside the pixel data: keep at least the headers
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
