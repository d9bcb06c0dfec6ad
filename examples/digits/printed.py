"""Printed digits rendered from the fonts that matplotlib ships: the demo's source domain.

Each digit is drawn with a font (DejaVu, STIX and Computer Modern faces), a random slant, small
rotation and stroke width, then put through the preprocessing of scikit-learn's handwritten
digits (the UCI "optdigits" scans): the digit is scaled to fill a 32x32 binary frame and
counted in 4x4 blocks, giving 8x8 images with values 0 to 16. Needs no network and no file
outside installed packages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: Font files (in matplotlib's mpl-data) whose digits are ordinary lining figures.
FONT_NAMES = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
    "cmr10.ttf",
    "cmb10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
    "cmti10.ttf",
)


def font_paths() -> list[Path]:
    """The font files that exist in this matplotlib installation."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    found = [folder / name for name in FONT_NAMES if (folder / name).is_file()]
    if not found:
        raise FileNotFoundError(f"no usable fonts in {folder}")
    return found


def _draw(digit: int, font_path: Path, rng: np.random.Generator) -> np.ndarray:
    size = 64
    canvas = Image.new("L", (2 * size, 2 * size), 0)
    font = ImageFont.truetype(str(font_path), size=size)
    stroke = int(rng.integers(0, 3))
    ImageDraw.Draw(canvas).text(
        (size, size),
        str(digit),
        fill=255,
        font=font,
        anchor="mm",
        stroke_width=stroke,
        stroke_fill=255,
    )
    shear = float(rng.uniform(-0.35, 0.35))  # slant about the centre
    canvas = canvas.transform(
        canvas.size,
        Image.Transform.AFFINE,
        (1, shear, -shear * size, 0, 1, 0),
        resample=Image.Resampling.BILINEAR,
    )
    canvas = canvas.rotate(float(rng.uniform(-10, 10)), resample=Image.Resampling.BILINEAR)
    pixels = np.asarray(canvas) > 96
    rows, cols = np.nonzero(pixels)
    crop = pixels[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return crop


def _optdigits(crop: np.ndarray) -> np.ndarray:
    """Scale the digit to fill a 32x32 frame (aspect kept, centred) and count 4x4 blocks."""
    h, w = crop.shape
    scale = 32.0 / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    image = Image.fromarray((crop * 255).astype(np.uint8)).resize(
        (new_w, new_h), Image.Resampling.BILINEAR
    )
    frame = np.zeros((32, 32), dtype=bool)
    top, left = (32 - new_h) // 2, (32 - new_w) // 2
    frame[top : top + new_h, left : left + new_w] = np.asarray(image) > 127
    return frame.reshape(8, 4, 8, 4).sum(axis=(1, 3)).astype(np.float32)


def render_printed_digits(per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` printed images of each digit 0-9: ``(images (N, 8, 8) in 0..16, labels)``.

    Fonts are cycled so that every font appears about equally often for each digit.
    """
    rng = np.random.default_rng(seed)
    fonts = font_paths()
    images, labels = [], []
    for digit in range(10):
        for index in range(per_class):
            font = fonts[(index + digit) % len(fonts)]
            images.append(_optdigits(_draw(digit, font, rng)))
            labels.append(digit)
    order = rng.permutation(len(labels))
    return np.stack(images)[order], np.asarray(labels, dtype=np.int64)[order]
