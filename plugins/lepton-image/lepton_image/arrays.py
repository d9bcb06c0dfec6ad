"""Image arrays as sources: NumPy ``.npy`` / ``.npz`` files, HDF5 files (through h5py) and
arrays in memory, opened lazily and checked before any image is stored.

An array source names its images and labels::

    {"path": "digits.npz"}                                    # arrays "images" and "labels"
    {"path": "digits.npz", "images_key": "x_train", "labels_key": "y_train"}
    {"path": "digits.h5", "images_key": "train/data", "labels_key": "train/target"}
    {"path": "images.npy", "labels_path": "labels.npy"}        # one array per .npy file
    {"images": array, "labels": array}                         # in memory

Images are ``(N, H, W)``, ``(N, H, W, C)`` or ``(N, C, H, W)`` with ``C`` in 1, 3, 4 (the
layout is read from the shape; ``layout: NCHW`` or ``NHWC`` says it when the shape is
ambiguous); labels one per image, ``(N,)`` or ``(N, 1)``, integers or strings. Every problem is
a :class:`~lepton_platform.errors.DataError` naming the file and the array (a missing array
lists those present); problems of one item (NaN, values outside ``value_range``) are bad
records naming its index. HDF5 images are read in blocks, so a large file is never held in
memory whole. Both the image and the medical domain read arrays through :func:`open_arrays`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lepton_platform.errors import ConfigError, DataError

__all__ = [
    "ARRAY_SUFFIXES",
    "ImageArrays",
    "array_format",
    "label_strings",
    "open_arrays",
]

#: File suffix -> array format.
ARRAY_SUFFIXES: dict[str, str] = {
    ".npy": "npy",
    ".npz": "npz",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
}
_LAYOUTS = ("auto", "NHWC", "NCHW")
#: Items read at once from a file (HDF5 and memory-mapped ``.npy``).
BLOCK = 256


def array_format(path: Path) -> str | None:
    """``npy``, ``npz`` or ``hdf5`` from a file name; ``None`` for other files."""
    return ARRAY_SUFFIXES.get(path.suffix.lower())


@dataclass
class ImageArrays:
    """The images (and labels) of one array source, checked for shape, type and length.

    ``images`` is array-like (a NumPy array, a memory map or an ``h5py.Dataset``); iterate with
    :meth:`items`, which gives each image as ``(H, W)`` or ``(H, W, C)``."""

    images: Any
    labels: np.ndarray | None
    where: str
    images_name: str
    labels_name: str | None = None
    channels_first: bool = False
    limit: int | None = None
    _handles: list[Any] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        n = int(self.images.shape[0])
        return n if self.limit is None else min(n, self.limit)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """``(H, W)`` or ``(H, W, C)`` of every item."""
        shape = tuple(int(s) for s in self.images.shape[1:])
        if self.channels_first:
            shape = (*shape[1:], shape[0])
        return shape[:2] if len(shape) == 3 and shape[2] == 1 else shape

    @property
    def dtype(self) -> np.dtype[Any]:
        found: np.dtype[Any] = np.dtype(self.images.dtype)
        return found

    def item_name(self, index: int) -> str:
        """``image 7 of 'train/data'``: how messages name one item."""
        return f"image {index} of {self.images_name!r}"

    def bad_label(self, index: int, given: Sequence[str] | None) -> str:
        """Why the label of item ``index`` is no class (for a bad record)."""
        assert self.labels is not None
        space = "a class index or name" if given is None else f"one of label_names {list(given)}"
        return (
            f"label {self.labels[index].item()!r} of {self.item_name(index)} "
            f"({self.labels_name!r}) is not {space}"
        )

    def blocks(self, size: int = BLOCK) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, block)`` with the block in ``(n, H, W[, C])`` layout."""
        for start in range(0, len(self), size):
            block = np.asarray(self.images[start : min(start + size, len(self))])
            if self.channels_first:
                block = np.moveaxis(block, 1, -1)
            if block.ndim == 4 and block.shape[-1] == 1:
                block = block[..., 0]
            yield start, block

    def items(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, image)`` for every item, read block by block."""
        for start, block in self.blocks():
            for offset, image in enumerate(block):
                yield start + offset, image

    def value_span(self) -> tuple[float, float]:
        """The smallest and largest finite value over every item (block by block)."""
        low, high = np.inf, -np.inf
        for _, block in self.blocks():
            values = block[np.isfinite(block)] if block.dtype.kind == "f" else block
            if values.size:
                low, high = min(low, float(values.min())), max(high, float(values.max()))
        return (0.0, 0.0) if low > high else (low, high)

    def close(self) -> None:
        for handle in self._handles:
            handle.close()
        self._handles.clear()

    def __enter__(self) -> ImageArrays:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_arrays(
    source: Mapping[str, Any],
    *,
    labelled: bool,
    fmt: str | None = None,
    max_pixels: int | None = None,
) -> ImageArrays:
    """Open the arrays a source names (see the module docstring) and check them: a numeric
    image array of a known layout, one label per image, at most ``max_pixels`` pixels per
    image. Use the result as a context manager (an HDF5 file stays open until then)."""
    layout = str(source.get("layout", "auto"))
    if layout not in _LAYOUTS:
        raise ConfigError(f"layout must be one of {', '.join(_LAYOUTS)}, got {layout!r}")
    limit = source.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive integer, got {limit!r}")
    handles: list[Any] = []
    labels_name: str | None = None
    if "images" in source:
        where, images_name = "arrays", "images"
        images: Any = np.asarray(source["images"])
        labels = None
        if labelled:
            if "labels" not in source:
                raise ConfigError("an array image source needs 'labels' beside 'images'")
            labels, labels_name = np.asarray(source["labels"]), "labels"
    else:
        path = Path(str(source["path"])).expanduser().resolve()
        where = str(path)
        kind = fmt or array_format(path)
        if not path.is_file():
            raise DataError(f"{path}: file does not exist")
        if kind == "npy":
            images, images_name, labels, labels_name = _npy(path, source, labelled)
        elif kind == "npz":
            images, images_name, labels, labels_name = _npz(path, source, labelled)
        elif kind == "hdf5":
            images, images_name, labels, labels_name = _hdf5(path, source, labelled, handles)
        else:
            raise ConfigError(f"{path}: not an array file (.npy, .npz, .h5, .hdf5)")
    try:
        arrays = ImageArrays(
            images=images,
            labels=None if labels is None else _flat_labels(labels, where, labels_name),
            where=where,
            images_name=images_name,
            labels_name=labels_name,
            channels_first=_channels_first(images, where, images_name, layout),
            limit=limit,
            _handles=handles,
        )
        _check(arrays, max_pixels)
    except BaseException:
        for handle in handles:
            handle.close()
        raise
    return arrays


def _npy(
    path: Path, source: Mapping[str, Any], labelled: bool
) -> tuple[Any, str, np.ndarray | None, str | None]:
    images = _load_npy(path)
    if not labelled:
        return images, path.name, None, None
    if "labels_path" not in source:
        raise ConfigError(
            f"{path}: a .npy file holds one array; give the labels' .npy file as labels_path "
            "(or put both arrays in one .npz)"
        )
    labels_path = Path(str(source["labels_path"])).expanduser().resolve()
    if not labels_path.is_file():
        raise DataError(f"{labels_path}: labels_path does not exist")
    return images, path.name, np.asarray(_load_npy(labels_path)), labels_path.name


def _load_npy(path: Path) -> Any:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(
            f"{path}: not a readable .npy array ({exc}); object arrays are not read"
        ) from None


def _npz(
    path: Path, source: Mapping[str, Any], labelled: bool
) -> tuple[Any, str, np.ndarray | None, str | None]:
    import zipfile

    images_key = str(source.get("images_key", "images"))
    labels_key = str(source.get("labels_key", "labels"))
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            for key in (images_key, labels_key) if labelled else (images_key,):
                if key not in keys:
                    which = "images_key" if key == images_key else "labels_key"
                    raise DataError(f"{path}: no array {key!r} ({which}); arrays present: {keys}")
            images = archive[images_key]
            labels = archive[labels_key] if labelled else None
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from None
    return images, images_key, labels, labels_key if labelled else None


def _hdf5(
    path: Path, source: Mapping[str, Any], labelled: bool, handles: list[Any]
) -> tuple[Any, str, np.ndarray | None, str | None]:
    try:
        import h5py
    except ImportError:  # pragma: no cover - a dependency of the plugin
        raise ConfigError("reading HDF5 files needs h5py: pip install h5py") from None
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc})") from None
    handles.append(handle)
    names: list[str] = []
    handle.visititems(
        lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None
    )

    def dataset(key: str, option: str) -> Any:
        if key not in handle:
            raise DataError(f"{path}: no dataset {key!r} ({option}); datasets present: {names}")
        obj = handle[key]
        if not isinstance(obj, h5py.Dataset):
            raise DataError(
                f"{path}: {key!r} ({option}) is a group, not a dataset; datasets present: {names}"
            )
        return obj

    images_key = str(source.get("images_key", "images"))
    images = dataset(images_key, "images_key")
    if not labelled:
        return images, images_key, None, None
    labels_key = str(source.get("labels_key", "labels"))
    raw = dataset(labels_key, "labels_key")[()]
    if raw.dtype.kind == "O":  # variable-length strings
        raw = np.asarray([v.decode() if isinstance(v, bytes) else str(v) for v in raw.ravel()])
    return images, images_key, np.asarray(raw), labels_key


def _channels_first(images: Any, where: str, name: str, layout: str) -> bool:
    shape = tuple(int(s) for s in images.shape)
    expected = "expected (N, H, W), (N, H, W, C) or (N, C, H, W) with C in 1, 3, 4"
    if len(shape) == 3:
        if layout == "NCHW":
            raise DataError(f"{where}: {name!r} has shape {shape}; layout NCHW needs 4 axes")
        return False
    if len(shape) != 4:
        raise DataError(f"{where}: {name!r} has shape {shape}; {expected}")
    last, second = shape[-1] in (1, 3, 4), shape[1] in (1, 3, 4)
    if layout == "NHWC" or (layout == "auto" and last):
        if not last:
            raise DataError(f"{where}: {name!r} has shape {shape}; layout NHWC: {expected}")
        return False
    if not second:
        raise DataError(f"{where}: {name!r} has shape {shape}; {expected}")
    return True


def _flat_labels(labels: np.ndarray, where: str, name: str | None) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(
            f"{where}: labels {name!r} have shape {labels.shape}; one label per image, (N,) or "
            "(N, 1), is read"
        )
    if labels.dtype.kind == "S":
        labels = labels.astype(str)
    return labels


def _check(arrays: ImageArrays, max_pixels: int | None) -> None:
    where, name = arrays.where, arrays.images_name
    n = int(arrays.images.shape[0])
    if n == 0:
        raise DataError(f"{where}: {name!r} holds no images (shape {tuple(arrays.images.shape)})")
    if arrays.dtype.kind not in "biuf":
        raise DataError(
            f"{where}: {name!r} has dtype {arrays.dtype}; images are numbers (uint8, integers, "
            "floats or booleans)"
        )
    height, width = arrays.image_shape[:2]
    if height < 1 or width < 1:
        raise DataError(f"{where}: {name!r} images are {height}x{width}: no pixels")
    if max_pixels is not None and height * width > max_pixels:
        raise DataError(
            f"{where}: {name!r} images are {width}x{height} = {width * height:,} pixels, over "
            f"max_pixels={max_pixels:,}; raise the domain option max_pixels if you trust them"
        )
    if arrays.labels is not None and len(arrays.labels) != n:
        raise DataError(
            f"{where}: {name!r} holds {n} images but {arrays.labels_name!r} holds "
            f"{len(arrays.labels)} labels"
        )


def label_strings(
    labels: np.ndarray, given: Sequence[str] | None
) -> tuple[list[str | None], list[str]]:
    """Each label as a class name (``None`` for a label that is not one: a non-integral float,
    a negative index, an index or a name outside ``given``) and the label space: ``given``, or
    for integer labels ``"0"`` .. the largest, or the sorted strings found."""
    names = None if given is None else [str(g) for g in given]
    numeric = labels.dtype.kind in "iubf"
    out: list[str | None] = []
    for value in labels.tolist():
        if not numeric:
            text = str(value)
            out.append(text if names is None or text in names else None)
            continue
        if isinstance(value, float) and not (np.isfinite(value) and value.is_integer()):
            out.append(None)
            continue
        index = int(value)
        if index < 0 or (names is not None and index >= len(names)):
            out.append(None)
        else:
            out.append(str(index) if names is None else names[index])
    if names is not None:
        return out, names
    if numeric:
        top = max((int(v) for v in out if v is not None), default=0)
        return out, [str(i) for i in range(top + 1)]
    return out, sorted({v for v in out if v is not None})
