"""The ``image`` domain: image sources read into the standard schema.

The schema: ``image`` (a ``datasets.Image(decode=False)`` column of ``{"bytes", "path"}``
references: files by absolute path, arrays and in-memory images as lossless PNG bytes; the
preprocessor decodes them with the plugin's rules, and ``ds.cast_column("image",
datasets.Image())`` shows them as PIL images), ``label`` (``ClassLabel``; for
multi-label sources a ``List(ClassLabel)`` of the labels present), and ``group`` when the source
names one. Every image is opened and decoded once while loading, so a bad file stops the run (or
is skipped and listed) here, with its path, rather than deep inside preprocessing.

Sources (``format`` is inferred from ``path`` when omitted)::

    {"path": "pets/"}                                  # one subfolder per class
    {"path": "labels.csv"}                             # columns path,label (paths relative to it)
    {"path": "labels.json"}                            # a list of {"path", "label"} or JSON lines
    {"path": "saved/", "format": "hf"}                 # datasets.save_to_disk output
    {"dataset": hf_dataset, "image_column": "img"}     # a datasets.Dataset object
    {"path": "digits.npz"}                             # arrays "images" (N,H,W[,C]) and "labels"
    {"path": "digits.h5", "images_key": "train/data", "labels_key": "train/target"}  # HDF5
    {"path": "x.npy", "labels_path": "y.npy"}          # one array per .npy file
    {"path": "t10k-images-idx3-ubyte.gz", "labels_path": "t10k-labels-idx1-ubyte.gz"}  # IDX
    {"images": array, "labels": array, "label_names": [...]}

Arrays (:mod:`lepton_image.arrays`) are checked before any image is stored: their shape,
type and length, with errors naming the file and the array; an image with NaN or values outside
``value_range`` is a bad record naming its index. A source key the domain does not know is
refused by name, with the closest known key suggested.

Multi-label: ``{"path": "tags.csv", "multi_label": true}`` with labels separated by ``;``.

Unlabelled target data (:meth:`ImageDomain.load_unlabelled`, for domain adaptation) needs no
labels: a folder is every image file in it at any depth (class subfolders, if any, are just
folders), one image file is one row (a list of files is a list of such sources), a CSV/JSON list
needs only its image column, and the other sources need no labels; labels present are not read.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from lepton_image.arrays import ImageArrays, array_format, label_strings, open_arrays
from lepton_image.decode import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    ImageReadError,
    array_to_image,
    check_image,
    encode_png,
)
from lepton_platform.data import BadRecords, is_saved_dataset, pick_column, pick_columns
from lepton_platform.domains import Domain
from lepton_platform.errors import ConfigError, DataError, did_you_mean

if TYPE_CHECKING:
    import datasets

__all__ = ["ImageDomain"]

_IMAGE_COLUMNS = ("image", "path", "file", "filename", "img", "image_path")
_LABEL_COLUMNS = ("label", "labels", "class", "target")
_FORMATS = ("folder", "csv", "json", "hf", "numpy", "npy", "hdf5", "idx")
#: Every key an image source may hold (the data layer takes ``domain``, ``split`` and the Hub
#: keys before the domain reads it).
SOURCE_KEYS = (
    "path",
    "format",
    "dataset",
    "images",
    "labels",
    "label_names",
    "multi_label",
    "label_separator",
    "image_column",
    "label_column",
    "group_column",
    "images_key",
    "labels_key",
    "labels_path",
    "layout",
    "limit",
    "value_range",
)


class ImageDomain(Domain):
    """Reads images from folders, CSV/JSON lists, saved datasets and arrays.

    ``max_pixels`` is the decompression-bomb guard (an image with more pixels is a bad record);
    ``verify="decode"`` decodes every image while loading (catches truncated files),
    ``verify="header"`` only reads headers (faster on large folders).
    """

    name = "image"
    input_columns = ("image",)
    reads_datasets = True
    input_extensions = tuple(sorted(IMAGE_EXTENSIONS))

    def __init__(self, *, max_pixels: int = DEFAULT_MAX_PIXELS, verify: str = "decode") -> None:
        if not isinstance(max_pixels, int) or max_pixels <= 0:
            raise ConfigError(f"image domain: max_pixels must be a positive int, got {max_pixels}")
        if verify not in ("decode", "header"):
            raise ConfigError(f"image domain: verify must be 'decode' or 'header', got {verify!r}")
        self.max_pixels = max_pixels
        self.verify = verify

    def check_file(self, path: str | os.PathLike[str]) -> None:
        """Raise :class:`DataError` naming ``path`` unless it is an image this domain reads."""
        try:
            check_image(os.fspath(path), max_pixels=self.max_pixels, decode=self.verify == "decode")
        except ImageReadError as exc:
            raise DataError(f"{os.fspath(path)}: {exc.reason}") from exc

    # -- loading -------------------------------------------------------------------------

    def load(
        self, source: Mapping[str, Any], *, bad_records: BadRecords
    ) -> datasets.Dataset | datasets.DatasetDict:
        """Read one source into the standard schema (see the module docstring)."""
        return self._read(source, bad_records, labelled=True)

    def load_unlabelled(
        self, source: Mapping[str, Any], *, bad_records: BadRecords
    ) -> datasets.Dataset | datasets.DatasetDict:
        """Read one source of unlabelled target images into the ``image`` column only: a folder
        of image files at any depth (no class subfolders needed), one image file, or any
        source :meth:`load` reads, without its labels (they are not read). Decoding, the
        ``max_pixels`` guard and bad records are those of :meth:`load`."""
        return self._read(source, bad_records, labelled=False)

    def _read(
        self, source: Mapping[str, Any], bad: BadRecords, labelled: bool
    ) -> datasets.Dataset | datasets.DatasetDict:
        if not isinstance(source, Mapping):
            raise ConfigError(f"an image source must be a mapping, got {type(source).__name__}")
        check_source_keys(source, SOURCE_KEYS, "image")
        fmt = self._format(source)
        if fmt == "file":
            file = Path(str(source["path"])).resolve()
            if labelled:
                raise ConfigError(
                    f"{file}: one image file has no label; put the images in class subfolders "
                    "or list them with their labels in a CSV (as unlabelled target data, "
                    "unlabelled_target, an image file is read as it is)"
                )
            paths = self._readable([file], bad)
            return self._build(paths, None, [], None, False, str(file), bad, fingerprint_files=True)
        if fmt == "folder":
            return self._load_folder(source, bad, labelled)
        if fmt in ("csv", "json"):
            return self._load_table(source, fmt, bad, labelled)
        if fmt == "hf":
            return self._load_hf(source, bad, labelled)
        return self._load_arrays(source, fmt, bad, labelled)

    def _format(self, source: Mapping[str, Any]) -> str:
        fmt = source.get("format")
        if fmt is not None:
            if fmt not in _FORMATS:
                raise ConfigError(
                    f"image source format {fmt!r} is unknown; use one of {', '.join(_FORMATS)}"
                )
            return str(fmt)
        if "dataset" in source:
            return "hf"
        if "images" in source:
            return "numpy"
        if "path" not in source:
            raise ConfigError(
                "an image source needs 'path' (folder, .csv, .json, .npz or saved dataset), "
                f"'dataset' or 'images'; got keys {sorted(source)}"
            )
        path = Path(str(source["path"]))
        if not path.exists():
            raise DataError(f"{path}: image source does not exist")
        if path.is_dir():
            return "hf" if is_saved_dataset(path) else "folder"
        suffix = path.suffix.lower()
        if suffix in (".csv", ".tsv"):
            return "csv"
        if suffix in (".json", ".jsonl"):
            return "json"
        kind = array_format(path)
        if kind is not None:
            return "numpy" if kind == "npz" else kind
        if suffix in IMAGE_EXTENSIONS:
            return "file"
        if "idx" in path.name.lower() or suffix == ".idx":
            return "idx"
        raise ConfigError(
            f"{path}: cannot tell the format of this image source from its extension; "
            f"set format to one of {', '.join(_FORMATS)}"
        )

    def _check(self, source: Any, where: str, row: int | str | None, bad: BadRecords) -> bool:
        try:
            check_image(source, max_pixels=self.max_pixels, decode=self.verify == "decode")
        except ImageReadError as exc:
            bad.add(where, row, exc.reason)
            return False
        return True

    def _readable(self, files: Sequence[Path], bad: BadRecords) -> list[str]:
        """The paths of ``files`` that are images this domain reads; the others go to ``bad``."""
        paths: list[str] = []
        for file in files:
            if file.suffix.lower() not in IMAGE_EXTENSIONS:
                bad.add(str(file), None, f"not an image file extension ({file.suffix or 'none'})")
            elif self._check(str(file), str(file), None, bad):
                paths.append(str(file))
        return paths

    def _load_folder(
        self, source: Mapping[str, Any], bad: BadRecords, labelled: bool = True
    ) -> datasets.Dataset:
        root = Path(str(source["path"])).resolve()
        if not root.is_dir():
            raise DataError(f"{root}: not a folder (an image folder has one subfolder per class)")
        if not labelled:
            files = _files_under(root)
            if not files:
                raise DataError(f"{root}: the folder holds no image files, at any depth")
            paths = self._readable(files, bad)
            return self._build(paths, None, [], None, False, str(root), bad, fingerprint_files=True)
        classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise DataError(
                f"{root}: no class subfolders; put the images of each class in root/<class>/"
            )
        paths = []
        labels: list[str] = []
        kept: list[str] = []
        for folder in classes:
            good = self._readable(_files_under(folder), bad)
            if not good:
                bad.add(str(folder), None, "class folder has no readable images")
                continue
            paths.extend(good)
            labels.extend([folder.name] * len(good))
            kept.append(folder.name)
        names = _given_names(source) or kept
        return self._build(
            paths, labels, names, None, False, str(root), bad, fingerprint_files=True
        )

    def _load_table(
        self, source: Mapping[str, Any], fmt: str, bad: BadRecords, labelled: bool = True
    ) -> datasets.Dataset:
        file = Path(str(source["path"])).resolve()
        rows = _read_rows(file, fmt)
        if not rows:
            raise DataError(f"{file}: no rows")
        columns = list(rows[0])
        image_col, label_col, group_col = pick_columns(
            source, "image", _IMAGE_COLUMNS, _LABEL_COLUMNS, columns, file, labelled=labelled
        )
        multi = labelled and bool(source.get("multi_label", False))
        sep = str(source.get("label_separator", ";"))
        base = file.parent
        paths: list[str] = []
        labels: list[Any] = []
        groups: list[str] = []
        for index, row in enumerate(rows):
            line = index + 2 if fmt == "csv" else index + 1  # the CSV header is line 1
            raw_path = row.get(image_col)
            raw_label = None if label_col is None else row.get(label_col)
            if raw_path in (None, ""):
                bad.add(str(file), line, f"empty {image_col!r}")
                continue
            if label_col is not None and (raw_label is None or (raw_label == "" and not multi)):
                bad.add(str(file), line, f"empty {label_col!r}")
                continue
            path = (base / str(raw_path)).resolve()
            if not self._check(str(path), f"{file} ({path})", line, bad):
                continue
            paths.append(str(path))
            if multi:
                parts = raw_label if isinstance(raw_label, list) else str(raw_label).split(sep)
                labels.append([str(p).strip() for p in parts if str(p).strip()])
            elif label_col is not None:
                labels.append(str(raw_label))
            if group_col is not None:
                groups.append(str(row.get(group_col, "")))
        if label_col is None:
            return self._build(paths, None, [], None, False, str(file), bad, fingerprint_files=True)
        names = _given_names(source) or _names_from(labels, multi)
        return self._build(
            paths, labels, names, groups or None, multi, str(file), bad, fingerprint_files=True
        )

    def _load_hf(
        self, source: Mapping[str, Any], bad: BadRecords, labelled: bool = True
    ) -> datasets.Dataset | datasets.DatasetDict:
        import datasets

        if "dataset" in source:
            data = source["dataset"]
            where = (
                f"dataset {getattr(getattr(data, 'info', None), 'dataset_name', None) or 'object'}"
            )
        else:
            where = str(Path(str(source["path"])).resolve())
            try:
                data = datasets.load_from_disk(where)
            except (FileNotFoundError, ValueError) as exc:
                raise DataError(f"{where}: not a saved dataset ({exc})") from exc
        if isinstance(data, datasets.DatasetDict):
            return datasets.DatasetDict(
                {
                    split: self._hf_split(ds, source, f"{where}[{split}]", bad, labelled)
                    for split, ds in data.items()
                }
            )
        if not isinstance(data, datasets.Dataset):
            raise ConfigError(
                f"image source 'dataset' must be a datasets.Dataset or DatasetDict, "
                f"got {type(data).__name__}"
            )
        return self._hf_split(data, source, where, bad, labelled)

    def _hf_split(
        self,
        data: datasets.Dataset,
        source: Mapping[str, Any],
        where: str,
        bad: BadRecords,
        labelled: bool = True,
    ) -> datasets.Dataset:
        import datasets

        columns = list(data.column_names)
        image_col = pick_column(source.get("image_column"), _IMAGE_COLUMNS, columns, where, "image")
        label_col = (
            pick_column(source.get("label_column"), _LABEL_COLUMNS, columns, where, "label")
            if labelled
            else None
        )
        feature = data.features[image_col]
        if isinstance(feature, datasets.Image):
            raw = data.cast_column(image_col, datasets.Image(decode=False))[image_col]
        elif isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
            raw = list(data[image_col])
        else:
            raise DataError(
                f"{where}: column {image_col!r} is {feature}, not an Image column or file paths"
            )
        images: list[dict[str, Any]] = []
        kept: list[int] = []
        for row, item in enumerate(raw):
            if item is None:
                bad.add(where, row, f"no image in {image_col!r}")
                continue
            if not self._check(item, where, row, bad):
                continue
            images.append(item if isinstance(item, dict) else {"path": str(item), "bytes": None})
            kept.append(row)
        if label_col is None:
            return self._build(images, None, [], None, False, where, bad, fingerprint_files=False)
        label_feature = data.features[label_col]
        raw_labels = list(data[label_col])
        multi = bool(source.get("multi_label", False)) or isinstance(
            label_feature, datasets.Sequence | datasets.List
        )
        inner = getattr(label_feature, "feature", label_feature)
        feature_names = list(inner.names) if isinstance(inner, datasets.ClassLabel) else None
        labels: list[Any] = []
        for label in (raw_labels[row] for row in kept):
            if feature_names is not None:
                labels.append(
                    [feature_names[i] for i in label] if multi else feature_names[int(label)]
                )
            else:
                labels.append([str(x) for x in label] if multi else str(label))
        names = _given_names(source) or feature_names or _names_from(labels, multi)
        return self._build(images, labels, names, None, multi, where, bad, fingerprint_files=False)

    def _open_arrays(self, source: Mapping[str, Any], fmt: str, labelled: bool) -> ImageArrays:
        if fmt == "idx":
            from lepton_image.idx import read_idx

            file = Path(str(source["path"])).resolve()
            if labelled and "labels_path" not in source:
                raise ConfigError(
                    f"{file}: an IDX image source needs 'labels_path' (the labels' IDX file)"
                )
            given = {"images": read_idx(file), "layout": "NHWC", "limit": source.get("limit")}
            if labelled:
                given["labels"] = read_idx(Path(str(source["labels_path"])))
            arrays = open_arrays(given, labelled=labelled, max_pixels=self.max_pixels)
            arrays.where, arrays.images_name = str(file), file.name
            if labelled:
                arrays.labels_name = Path(str(source["labels_path"])).name
            return arrays
        kind = {"numpy": None, "npy": "npy", "hdf5": "hdf5"}[fmt]
        if "images" not in source and kind is None:
            kind = "npz"
        return open_arrays(source, labelled=labelled, fmt=kind, max_pixels=self.max_pixels)

    def _load_arrays(
        self, source: Mapping[str, Any], fmt: str, bad: BadRecords, labelled: bool = True
    ) -> datasets.Dataset:
        """Images from arrays (``.npy``, ``.npz``, HDF5, IDX or in memory): each stored as
        lossless PNG bytes, scaled to 8 bits from ``value_range``."""
        with self._open_arrays(source, fmt, labelled) as arrays:
            where = arrays.where
            value_range = source.get("value_range")
            given_range = value_range is not None
            if given_range:
                if (
                    isinstance(value_range, str)
                    or not isinstance(value_range, Sequence)
                    or len(value_range) != 2
                ):
                    raise ConfigError(f"value_range must be [low, high], got {value_range!r}")
                low, high = float(value_range[0]), float(value_range[1])
                if not high > low:
                    raise ConfigError(f"value_range must have high > low, got {[low, high]}")
                rng: tuple[float, float] | None = (low, high)
            elif arrays.dtype != np.uint8 and arrays.dtype != np.bool_:
                low, high = arrays.value_span()
                rng = (min(low, 0.0), high if high > 1.0 else 1.0)
            else:
                rng = None
            given = _given_names(source)
            names_of: list[str | None] = []
            names: list[str] = []
            if arrays.labels is not None:
                names_of, names = label_strings(arrays.labels, given)
            stored: list[dict[str, Any]] = []
            names_out: list[str] = []
            floating = arrays.dtype.kind == "f"
            for row, array in arrays.items():
                what = arrays.item_name(row)
                if floating and not np.isfinite(array).all():
                    bad.add(where, row, f"{what} has NaN or infinite values")
                    continue
                if given_range and rng is not None and array.size:
                    low, high = float(array.min()), float(array.max())
                    if low < rng[0] or high > rng[1]:
                        bad.add(
                            where,
                            row,
                            f"{what} has values from {low:g} to {high:g}, outside value_range "
                            f"[{rng[0]:g}, {rng[1]:g}]",
                        )
                        continue
                if arrays.labels is not None:
                    name = names_of[row]
                    if name is None:
                        bad.add(where, row, arrays.bad_label(row, given))
                        continue
                    names_out.append(name)
                try:
                    image = array_to_image(array, rng)
                except ImageReadError as exc:
                    raise DataError(f"{where}: {what}: {exc.reason}") from None
                stored.append({"bytes": encode_png(image), "path": None})
        if arrays.labels is None:
            return self._build(stored, None, [], None, False, where, bad, fingerprint_files=False)
        return self._build(
            stored, names_out, names, None, False, where, bad, fingerprint_files=False
        )

    # -- building the dataset ----------------------------------------------------------------

    def _build(
        self,
        images: Sequence[Any],
        labels: Sequence[Any] | None,
        names: Sequence[str],
        groups: Sequence[str] | None,
        multi: bool,
        where: str,
        bad: BadRecords,
        *,
        fingerprint_files: bool,
    ) -> datasets.Dataset:
        """The dataset of ``images`` (paths or references), with ``label`` unless ``labels`` is
        ``None`` (unlabelled data: the ``image`` column only)."""
        import datasets

        index = {name: i for i, name in enumerate(names)}
        rows_images: list[Any] = []
        rows_labels: list[Any] = []
        rows_groups: list[str] = []
        for i, image in enumerate(images):
            if labels is not None:
                label = labels[i]
                wanted = label if multi else [label]
                unknown = [x for x in wanted if x not in index]
                if unknown:
                    ref = image if isinstance(image, str) else image.get("path") or where
                    bad.add(str(ref), i, f"label(s) {unknown} not in label_names {list(names)}")
                    continue
                rows_labels.append([index[x] for x in wanted] if multi else index[label])
            rows_images.append(
                image if not isinstance(image, str) else {"path": image, "bytes": None}
            )
            if groups is not None:
                rows_groups.append(groups[i])
        if not rows_images:
            raise DataError(f"{where}: no readable images ({len(bad)} bad records)")
        features: dict[str, Any] = {"image": datasets.Image(decode=False)}
        data: dict[str, list[Any]] = {"image": rows_images}
        if labels is not None:
            class_label = datasets.ClassLabel(names=list(names))
            features["label"] = datasets.List(class_label) if multi else class_label
            data["label"] = rows_labels
        if groups is not None:
            features["group"] = datasets.Value("string")
            data["group"] = rows_groups
        ds = datasets.Dataset.from_dict(data, features=datasets.Features(features))
        if fingerprint_files:
            # Files are referenced by path: fold their sizes and times into the fingerprint so
            # that the preprocessing cache is not reused after a file changes in place.
            digest = hashlib.sha256(ds._fingerprint.encode())
            for item in rows_images:
                stat = os.stat(item["path"])
                digest.update(f"{item['path']}|{stat.st_size}|{stat.st_mtime_ns}".encode())
            ds = datasets.Dataset(ds.data, info=ds.info, fingerprint=digest.hexdigest()[:32])
        return ds

    # -- prediction inputs and examples ------------------------------------------------------

    def from_inputs(self, inputs: Sequence[Any]) -> datasets.Dataset:
        """Paths, PIL images, arrays ``(H, W[, C])`` or ``{"bytes", "path"}`` references (the
        values of an ``image`` column) as a dataset with an ``image`` column."""
        import datasets

        if isinstance(inputs, str | os.PathLike | Image.Image | np.ndarray) and not (
            isinstance(inputs, np.ndarray) and inputs.ndim == 4
        ):
            inputs = [inputs]
        stored: list[dict[str, Any]] = []
        for i, item in enumerate(inputs):
            where = f"input {i}"
            try:
                if isinstance(item, str | os.PathLike):
                    path = os.path.abspath(os.fspath(item))
                    where = f"input {i} ({path})"
                    check_image(path, max_pixels=self.max_pixels)
                    stored.append({"path": path, "bytes": None})
                elif isinstance(item, Image.Image):
                    check_image(encoded := encode_png(item), max_pixels=self.max_pixels)
                    stored.append({"bytes": encoded, "path": None})
                elif isinstance(item, Mapping) and ("bytes" in item or "path" in item):
                    reference = {"bytes": item.get("bytes"), "path": item.get("path")}
                    check_image(reference, max_pixels=self.max_pixels)
                    stored.append(reference)
                elif isinstance(item, np.ndarray):
                    stored.append({"bytes": encode_png(array_to_image(item)), "path": None})
                else:
                    raise DataError(
                        f"{where}: the image domain reads file paths, PIL images or arrays, "
                        f"not {type(item).__name__}"
                    )
            except ImageReadError as exc:
                raise DataError(f"{where}: {exc.reason}") from exc
        return datasets.Dataset.from_dict(
            {"image": stored}, features=datasets.Features({"image": datasets.Image(decode=False)})
        )

    def example_dataset(
        self, num_examples: int, label_names: Sequence[str], seed: int = 0
    ) -> datasets.Dataset:
        """Small 16x16 RGB images whose mean colour depends on the label (learnable)."""
        import datasets

        names = [str(n) for n in label_names]
        rng = np.random.default_rng(seed)
        colours = rng.integers(0, 256, size=(len(names), 3))
        images: list[dict[str, Any]] = []
        labels: list[int] = []
        for i in range(num_examples):
            label = i % len(names)
            noise = rng.normal(0, 30, size=(16, 16, 3))
            pixels = np.clip(colours[label] + noise, 0, 255).astype(np.uint8)
            images.append({"bytes": encode_png(Image.fromarray(pixels)), "path": None})
            labels.append(label)
        features = datasets.Features(
            {"image": datasets.Image(decode=False), "label": datasets.ClassLabel(names=names)}
        )
        return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)


def check_source_keys(source: Mapping[str, Any], known: Sequence[str], domain: str) -> None:
    """Refuse a key no reader of the domain knows (a misspelling, ``lable_column``), naming
    it and the closest known key."""
    for key in source:
        if key not in known:
            raise ConfigError(
                f"{domain} source key {key!r} is unknown{did_you_mean(str(key), known)} (the "
                f"{domain} domain reads {', '.join(known)}; the data layer takes domain, split "
                "and the Hub keys hub, config, revision)"
            )


def _files_under(folder: Path) -> list[Path]:
    """Every file in ``folder`` and its subfolders, sorted, less hidden ones."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _given_names(source: Mapping[str, Any]) -> list[str] | None:
    names = source.get("label_names")
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ConfigError(f"label_names must be a list of names, got {names!r}")
    return [str(n) for n in names]


def _names_from(labels: Sequence[Any], multi: bool) -> list[str]:
    found: set[str] = set()
    for label in labels:
        found.update(label if multi else [label])
    return sorted(found)


def _read_rows(file: Path, fmt: str) -> list[dict[str, Any]]:
    if not file.is_file():
        raise DataError(f"{file}: file does not exist")
    if fmt == "csv":
        with file.open(newline="", encoding="utf-8") as handle:
            dialect = "excel-tab" if file.suffix.lower() == ".tsv" else "excel"
            return [dict(row) for row in csv.DictReader(handle, dialect=dialect)]
    text = file.read_text(encoding="utf-8")
    try:
        if file.suffix.lower() == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            loaded = json.loads(text)
            rows = loaded.get("data", loaded) if isinstance(loaded, dict) else loaded
    except json.JSONDecodeError as exc:
        raise DataError(f"{file}: invalid JSON ({exc})") from exc
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise DataError(f"{file}: expected a list of objects with image path and label")
    return rows
