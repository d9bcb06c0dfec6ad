"""Readers of medical image files: each gives the 2-D images a file holds, as scanner values.

- DICOM (pydicom): rescale slope and intercept applied, the file's window kept, MONOCHROME1
  marked for inversion, multi-frame files give the chosen ``frames``.
- NIfTI (nibabel): the chosen ``slices`` along ``axis``, or a ``max`` / ``mean`` projection.
- PNG and TIFF (Pillow), 8- and 16-bit, kept at their bit depth.

Colour (RGB DICOM, colour PNG/TIFF: microscopy, dermoscopy, fundus photographs) is kept as
``(H, W, 3)`` values when the reader is asked for it (``colour=True``), else made grey
(luminance). Sizes are checked from the header before any pixel is decoded: an image of more
than ``max_pixels`` pixels or a volume of more than ``max_voxels`` voxels is refused
(decompression-bomb guard), and so is a volume or image with a zero-length axis.

A file that cannot be read raises :class:`ReadError` with a reason a user can act on; the
domain turns it into a bad record naming the file. Patient identifiers are read only to be
hashed (:func:`lepton_medical.privacy.hash_patient`); nothing else leaves the DICOM header.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MAX_VOXELS",
    "DICOM_SUFFIXES",
    "IMAGE_SUFFIXES",
    "NIFTI_SUFFIXES",
    "Frame",
    "Limits",
    "ReadError",
    "file_kind",
    "luminance",
    "read_dicom",
    "read_file",
    "read_image",
    "read_nifti",
]

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff")
#: Pixels of one 2-D image (Pillow's own limit, about a 9459 x 9459 image).
DEFAULT_MAX_PIXELS = 89_478_485
#: Voxels of one volume (NIfTI) or multi-frame DICOM: 2**28, 2 GiB as float64.
DEFAULT_MAX_VOXELS = 2**28
_LUMA = np.array([0.299, 0.587, 0.114])


class ReadError(Exception):
    """A medical image could not be read; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    """What a reader accepts: colour kept or made grey, and the size limits."""

    colour: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_voxels: int = DEFAULT_MAX_VOXELS

    def check_image(self, shape: Sequence[int], what: str = "image") -> None:
        """Refuse an image of ``shape`` (rows, columns, ...) with no pixels or too many."""
        rows, cols = int(shape[0]), int(shape[1])
        if rows < 1 or cols < 1:
            raise ReadError(f"{what} has no pixels ({rows}x{cols})")
        if rows * cols > self.max_pixels:
            raise ReadError(
                f"{what} is too large ({cols}x{rows} = {rows * cols:,} pixels, over "
                f"max_pixels={self.max_pixels:,}; decompression-bomb guard): raise the domain "
                "option max_pixels if you trust this file"
            )

    def check_volume(self, shape: Sequence[int], what: str) -> None:
        """Refuse a volume of ``shape`` with a zero-length axis or too many voxels."""
        dims = [int(d) for d in shape]
        if any(d < 1 for d in dims):
            raise ReadError(f"{what} has shape {tuple(dims)}: a zero-length axis, no voxels")
        voxels = int(np.prod(dims, dtype=np.int64))
        if voxels > self.max_voxels:
            raise ReadError(
                f"{what} is too large (shape {tuple(dims)}, {voxels:,} voxels, over "
                f"max_voxels={self.max_voxels:,}; decompression-bomb guard): raise the domain "
                "option max_voxels if you trust this file"
            )


def luminance(values: np.ndarray) -> np.ndarray:
    """Grey values of ``(..., 3)`` (or ``(..., 4)``: alpha dropped) colour values."""
    grey: np.ndarray = np.asarray(values[..., :3], dtype=np.float64) @ _LUMA
    return grey


@dataclass
class Frame:
    """One image of a file: values ``(H, W)`` (grey) or ``(H, W, 3)`` (colour), how to display
    them, and whose it is.

    ``patient`` is the raw DICOM PatientID (hash it before it goes anywhere); ``index`` the
    frame or slice number (``None`` for a single image or a projection).
    """

    values: np.ndarray
    index: int | None = None
    file_window: tuple[float, float] | None = None
    invert: bool = False
    integer_bits: int | None = None
    patient: str | None = None

    @property
    def colour(self) -> bool:
        return self.values.ndim == 3


def file_kind(path: Path) -> str | None:
    """``dicom``, ``nifti`` or ``image`` from the name; a suffix-less file starting with the
    DICOM preamble is ``dicom``; ``None`` when the file is none of these."""
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(DICOM_SUFFIXES):
        return "dicom"
    if name.endswith(IMAGE_SUFFIXES):
        return "image"
    if not path.suffix:
        try:
            with path.open("rb") as handle:
                head = handle.read(132)
        except OSError:
            return None
        if head[128:132] == b"DICM":
            return "dicom"
    return None


def _choose(count: int, wanted: Any, what: str) -> list[int]:
    """Indices for ``frames``/``slices``: ``middle``, ``all``, an int or a list of ints."""
    if wanted in (None, "middle"):
        return [count // 2]
    if wanted == "all":
        return list(range(count))
    picks = [wanted] if isinstance(wanted, int) else wanted
    if not isinstance(picks, Sequence) or not all(isinstance(i, int) for i in picks):
        raise ReadError(f"{what} must be 'middle', 'all', an index or a list of indices")
    out: list[int] = []
    for i in picks:
        j = i + count if i < 0 else i
        if not 0 <= j < count:
            raise ReadError(f"{what} index {i} is outside the {count} available")
        out.append(j)
    return out


def _first(value: Any) -> float | None:
    """The first value of a possibly multi-valued DICOM number (WindowCenter may hold several)."""
    if value is None:
        return None
    try:
        if isinstance(value, str | bytes):
            return float(value)
        if isinstance(value, Sequence):
            return float(value[0]) if len(value) else None
        return float(value)
    except (TypeError, ValueError):
        return None


def read_dicom(path: Path, frames: Any = "middle", limits: Limits | None = None) -> list[Frame]:
    """The chosen frames of a DICOM file, with the modality rescale applied (colour frames
    kept as ``(H, W, 3)`` when ``limits.colour``, else made grey)."""
    limits = limits or Limits()
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(path))
    except InvalidDicomError as exc:
        raise ReadError(f"not a DICOM file ({exc})") from None
    except (OSError, EOFError, ValueError, TypeError, KeyError) as exc:
        raise ReadError(f"unreadable DICOM file ({type(exc).__name__}: {exc})") from None
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ReadError("DICOM file has no pixel data (a report, structured report or header)")
    n_frames = int(_first(ds.get("NumberOfFrames")) or 1)
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    limits.check_image((rows, cols), "DICOM image")
    if n_frames > 1:
        limits.check_volume((n_frames, rows, cols), "multi-frame DICOM")
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        pixels = np.asarray(ds.pixel_array)
    except Exception as exc:  # pydicom raises RuntimeError, NotImplementedError, ValueError...
        if syntax is not None and syntax.is_compressed:
            raise ReadError(
                f"compressed transfer syntax {syntax.name} ({syntax}) cannot be decoded: no "
                "decoder is installed for it (pip install pylibjpeg pylibjpeg-libjpeg "
                "pylibjpeg-openjpeg, or python-gdcm), or the pixel data is corrupt "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            ) from None
        raise ReadError(f"cannot decode the pixel data ({type(exc).__name__}: {exc})") from None

    samples = int(ds.get("SamplesPerPixel", 1))
    if n_frames == 1:
        pixels = pixels[None, ...]
    if samples > 1 and not limits.colour:  # colour (RGB, YBR converted by pydicom): luminance
        pixels = luminance(pixels)
    elif samples > 1:
        pixels = pixels[..., :3]
    if pixels.ndim != (4 if samples > 1 and limits.colour else 3):
        raise ReadError(f"unexpected pixel array shape {pixels.shape}")

    slope = _first(ds.get("RescaleSlope"))
    intercept = _first(ds.get("RescaleIntercept"))
    values = pixels.astype(np.float64)
    rescaled = (slope is not None and slope != 1.0) or (intercept not in (None, 0.0))
    if rescaled:
        values = values * (1.0 if slope is None else slope) + (intercept or 0.0)
    centre, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    file_window = (centre, width) if centre is not None and width and width > 0 else None
    invert = str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1"
    bits = int(ds.get("BitsStored", 8) or 8)
    grey_of_colour = samples > 1 and not limits.colour  # luminance: no longer integers
    integer_bits = None if rescaled or grey_of_colour else (8 if bits <= 8 else 16)
    patient = ds.get("PatientID")
    patient = str(patient) if patient not in (None, "") else None
    picks = _choose(n_frames, frames, "frames")
    return [
        Frame(
            values=values[i],
            index=i if n_frames > 1 else None,
            file_window=file_window,
            invert=invert,
            integer_bits=integer_bits,
            patient=patient,
        )
        for i in picks
    ]


def read_nifti(
    path: Path, slices: Any = "middle", axis: int = 2, limits: Limits | None = None
) -> list[Frame]:
    """The chosen slices (or a ``max`` / ``mean`` projection) of a NIfTI volume along ``axis``;
    its shape is checked from the header (no zero-length axis, at most ``max_voxels``) before
    the data are read."""
    import nibabel

    limits = limits or Limits()
    if axis not in (0, 1, 2):
        raise ReadError(f"axis must be 0, 1 or 2, got {axis}")
    try:
        image = nibabel.load(str(path))
        shape = tuple(int(d) for d in image.shape)  # type: ignore[attr-defined]
    except Exception as exc:  # nibabel raises ImageFileError, OSError, EOFError, ValueError...
        raise ReadError(f"not a readable NIfTI volume ({type(exc).__name__}: {exc})") from None
    limits.check_volume(shape, "NIfTI volume")
    if len(shape) > axis and len(shape) == 3:
        plane = [d for i, d in enumerate(shape) if i != axis]
        limits.check_image(plane, f"NIfTI slice along axis {axis}")
    try:
        data = np.asarray(image.get_fdata(dtype=np.float64))  # type: ignore[attr-defined]
    except Exception as exc:
        raise ReadError(f"not a readable NIfTI volume ({type(exc).__name__}: {exc})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise ReadError(f"NIfTI volume has shape {data.shape}; 2-D or 3-D volumes are read")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise ReadError(f"NIfTI volume holds {bad} NaN or infinite value(s)")
    volume = np.moveaxis(data, axis, 0)
    if slices in ("max", "mean"):
        projected = volume.max(axis=0) if slices == "max" else volume.mean(axis=0)
        return [Frame(values=np.rot90(projected))]
    picks = _choose(volume.shape[0], slices, "slices")
    return [Frame(values=np.rot90(volume[i]), index=i) for i in picks]


def read_image(path: Path | bytes, limits: Limits | None = None) -> list[Frame]:
    """A PNG or TIFF (a file, or its bytes) at its own bit depth (8-bit, 16-bit or float);
    colour is kept as 8-bit RGB when ``limits.colour``, else made grey. The size is checked
    from the header before the pixels are decoded."""
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError

    limits = limits or Limits()
    target: Any = io.BytesIO(path) if isinstance(path, bytes) else path
    old = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # the check below, with the size in the message
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(target) as opened:
                limits.check_image((opened.size[1], opened.size[0]))
                opened.load()
                image: Image.Image = opened
                if image.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LA", "PA", "1"):
                    colour = limits.colour and image.mode not in ("LA", "1")
                    image = image.convert("RGB" if colour else "L")
                values = np.asarray(image)
    except ReadError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ReadError(f"not a readable image ({type(exc).__name__}: {exc})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old
    if values.ndim == 3:
        return [Frame(values=values.astype(np.float64), integer_bits=8)]
    if values.ndim != 2:
        raise ReadError(f"image has shape {values.shape}; expected a 2-D grey or colour image")
    if values.dtype.kind == "f":
        if not np.isfinite(values).all():
            raise ReadError("image holds NaN or infinite values")
        return [Frame(values=values.astype(np.float64))]
    bits = 8 if values.dtype == np.uint8 else 16
    return [Frame(values=values.astype(np.float64), integer_bits=bits)]


def read_file(
    path: Path, options: dict[str, Any] | None = None, limits: Limits | None = None
) -> list[Frame]:
    """Read any supported file; ``options`` holds ``frames``, ``slices`` and ``axis``."""
    opts = options or {}
    kind = opts.get("kind") or file_kind(path)
    if kind == "dicom":
        return read_dicom(path, opts.get("frames", "middle"), limits)
    if kind == "nifti":
        return read_nifti(path, opts.get("slices", "middle"), int(opts.get("axis", 2)), limits)
    if kind == "image":
        return read_image(path, limits)
    raise ReadError(
        f"not a medical image file this domain reads (DICOM {', '.join(DICOM_SUFFIXES)}, "
        f"NIfTI {', '.join(NIFTI_SUFFIXES)}, {', '.join(IMAGE_SUFFIXES)})"
    )
