"""The ``medical-image`` domain: DICOM, NIfTI, PNG/TIFF and MedMNIST sources in the standard schema.

The schema is the image domain's, so the image plugin's backbones and preprocessing apply:
``image`` (``datasets.Image(decode=False)``: 8-bit grey or RGB PNG bytes, intensity already
handled; no file path is stored, since paths may carry patient names), ``label``
(``ClassLabel``) and ``group`` (a salted hash of the patient, :mod:`lepton_medical.privacy`)
when the source names patients. Sources (``format`` is inferred from ``path`` when omitted)::

    {"path": "scans/"}                       # class subfolders of DICOM/NIfTI/PNG/TIFF files
    {"path": "case7/", "label": "nodule"}    # a folder (or one file) of a single class
    {"path": "labels.csv", "group_column": "patient"}  # path,label[,patient] rows
    {"path": "breastmnist.npz"}              # MedMNIST arrays: its own train/val/test splits
    {"path": "cells.npz", "images_key": "x", "labels_key": "y"}  # named arrays (.npz, .npy)
    {"path": "cells.h5", "images_key": "train/data", "labels_key": "train/target"}  # HDF5
    {"images": array, "labels": array}       # arrays in memory
    {"dataset": hf_dataset, "image_column": "img", "group_column": "patient"}  # datasets

Channels (``channels``, per source or the domain's default): ``grey`` (the default, as DICOM
and NIfTI are read) makes colour images grey (luminance); ``rgb`` keeps colour and repeats grey
images in three channels (microscopy, pathology, dermoscopy, fundus photographs); ``auto`` is
``rgb`` when any image of the source is in colour, else ``grey``. Give a colour source a
3-channel backbone (``in_channels: 3``).

Options in the source (defaults from the domain): ``window`` (a preset such as ``lung``,
``{"center", "width"}``, ``"file"`` or ``None``), ``normalize`` (``auto``, ``image``,
``dataset``, ``none``, ``{"range": [lo, hi]}``), ``percentiles``, ``frames`` (DICOM
multi-frame: ``middle``, ``all``, an index or a list), ``slices`` and ``axis`` (NIfTI:
``middle``, ``all``, indices, ``max`` or ``mean`` projection), ``per_channel`` (colour: the
normalisation's percentiles per channel), ``patient`` (one patient id for the whole source),
``group_from: "folder"`` (the file's folder names the patient), ``label_names``. A key no
reader knows is refused by name. Arrays are checked as the image domain checks them
(:mod:`lepton_image.arrays`: shape, type, one label per image), and an image with NaN values
is a bad record naming its index.

The group is the DICOM PatientID unless the source says otherwise. A source in which some rows
have a patient and others not is refused row by row (bad records), so that grouping is never
silently partial.

Unlabelled target data (:meth:`MedicalImageDomain.load_unlabelled`, for domain adaptation):
a folder is every file in it at any depth (no class subfolders needed), one file needs no
``label``, a CSV needs only its path column and a MedMNIST archive only its ``*_images``; labels
and patients present are not read. The reading and intensity options are those of ``load``.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from lepton_image.arrays import ImageArrays, array_format, label_strings, open_arrays
from lepton_image.domain import check_source_keys
from PIL import Image

from lepton_medical.intensity import Intensity
from lepton_medical.privacy import hash_patient, resolve_salt
from lepton_medical.readers import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_VOXELS,
    DICOM_SUFFIXES,
    IMAGE_SUFFIXES,
    NIFTI_SUFFIXES,
    Frame,
    Limits,
    ReadError,
    file_kind,
    luminance,
    read_file,
    read_image,
)
from lepton_platform.data import BadRecords, pick_columns
from lepton_platform.domains import Domain
from lepton_platform.errors import ConfigError, DataError

if TYPE_CHECKING:
    import datasets

__all__ = ["CHANNELS", "SOURCE_KEYS", "MedicalImageDomain", "encode_png8"]

_FORMATS = ("folder", "dicom", "nifti", "image", "table", "npz", "npy", "hdf5")
#: The channel policies: keep colour or not (module docstring).
CHANNELS = ("grey", "rgb", "auto")
#: Every key a medical-image source may hold (the data layer takes ``domain``, ``split`` and
#: the Hub keys before the domain reads it).
SOURCE_KEYS = (
    "path",
    "format",
    "label",
    "label_names",
    "path_column",
    "label_column",
    "group_column",
    "group_from",
    "patient",
    "window",
    "normalize",
    "percentiles",
    "per_channel",
    "channels",
    "frames",
    "slices",
    "axis",
    "dataset",
    "image_column",
    "images",
    "labels",
    "images_key",
    "labels_key",
    "labels_path",
    "layout",
    "limit",
)
_IMAGE_COLUMNS = ("image", "img", "path", "file", "filename", "image_path")
_LABEL_COLUMNS = ("label", "labels", "class", "target")
_IGNORED = frozenset({"dicomdir", "readme", "readme.md", "license", "source.md"})
_NPZ_SPLITS = {"train": "train", "val": "validation", "test": "test"}


def encode_png8(pixels: np.ndarray) -> bytes:
    """Lossless PNG bytes of a ``uint8`` array: ``(H, W)`` grey or ``(H, W, 3)`` RGB."""
    buffer = io.BytesIO()
    mode = "RGB" if pixels.ndim == 3 else "L"
    Image.fromarray(np.ascontiguousarray(pixels), mode=mode).save(
        buffer, format="PNG", compress_level=1
    )
    return buffer.getvalue()


def _channels(value: Any) -> str:
    """A channel policy (``gray``, ``colour`` and ``color`` are read as ``grey`` and ``rgb``)."""
    text = {"gray": "grey", "colour": "rgb", "color": "rgb"}.get(str(value).lower(), value)
    if text not in CHANNELS:
        raise ConfigError(
            f"medical-image: channels must be one of {', '.join(CHANNELS)}, got {value!r} (grey: "
            "colour made grey; rgb: colour kept, grey repeated; auto: rgb when the source has "
            "colour images)"
        )
    return str(text)


class _Row:
    """One image on its way into the dataset (values still in scanner units)."""

    __slots__ = ("frame", "label", "patient", "where")

    def __init__(self, frame: Frame, label: str | None, patient: str | None, where: str) -> None:
        self.frame, self.label, self.patient, self.where = frame, label, patient, where


class MedicalImageDomain(Domain):
    """Reads medical images into the image schema with patient groups (module docstring).

    ``window``, ``normalize``, ``percentiles``, ``per_channel`` and ``channels`` are the
    defaults of every source; ``salt`` salts the patient hashes (default
    ``$LEPTON_PATIENT_SALT``); ``max_pixels`` and ``max_voxels`` bound one image and one volume
    (decompression-bomb guard).

    Example::

        domain = MedicalImageDomain(channels="rgb")       # colour microscopy
        ds = domain.load({"path": "smears/"}, bad_records=BadRecords())
    """

    name = "medical-image"
    input_columns = ("image",)
    reads_datasets = True
    input_extensions = (*DICOM_SUFFIXES, *NIFTI_SUFFIXES, *IMAGE_SUFFIXES)

    def __init__(
        self,
        *,
        window: str | Mapping[str, Any] | Sequence[float] | None = "file",
        normalize: str | Mapping[str, Any] = "auto",
        percentiles: Sequence[float] = (0.0, 100.0),
        per_channel: bool = False,
        channels: str = "grey",
        salt: str | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_voxels: int = DEFAULT_MAX_VOXELS,
    ) -> None:
        self.intensity = Intensity.from_options(
            {
                "window": window,
                "normalize": normalize,
                "percentiles": list(percentiles),
                "per_channel": per_channel,
            }
        )
        self.channels = _channels(channels)
        for key, value in (("max_pixels", max_pixels), ("max_voxels", max_voxels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"medical-image: {key} must be a positive integer, got {value!r}")
        self.max_pixels, self.max_voxels = max_pixels, max_voxels
        self._salt = resolve_salt(salt)

    def _limits(self, channels: str) -> Limits:
        return Limits(
            colour=channels != "grey", max_pixels=self.max_pixels, max_voxels=self.max_voxels
        )

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
        of DICOM/NIfTI/PNG/TIFF files at any depth (no class subfolders needed), one file, a
        CSV of paths, or a MedMNIST archive's images; labels and patients present are not read.
        Frames, slices, intensity and bad records are those of :meth:`load`."""
        return self._read(source, bad_records, labelled=False)

    def _read(
        self, source: Mapping[str, Any], bad_records: BadRecords, labelled: bool
    ) -> datasets.Dataset | datasets.DatasetDict:
        if not isinstance(source, Mapping):
            raise ConfigError(f"a medical-image source must be a mapping, got {source!r}")
        check_source_keys(source, SOURCE_KEYS, "medical-image")
        intensity = Intensity.from_options(source, self.intensity)
        channels = _channels(source.get("channels", self.channels))
        if "dataset" in source:
            return self._load_dataset(source, intensity, channels, bad_records, labelled)
        if "images" in source:
            return self._load_arrays(source, None, intensity, channels, bad_records, labelled)
        if "path" not in source:
            raise ConfigError(
                "a medical-image source needs 'path' (a DICOM/NIfTI/PNG/TIFF file or folder, a "
                ".csv list, a .npz/.npy/HDF5 array file), 'images' (arrays) or 'dataset' (a "
                f"datasets.Dataset); got keys {sorted(source)}"
            )
        path = Path(str(source["path"])).expanduser().resolve()
        if not path.exists():
            raise DataError(f"{path}: medical-image source does not exist")
        fmt = self._format(source, path)
        if fmt == "npz" and "images_key" not in source:
            names = _npz_arrays(path)
            if "train_images" in names:
                return self._load_npz(path, source, intensity, channels, bad_records, labelled)
            if names and "images" not in names:
                raise DataError(
                    f"{path}: neither a MedMNIST-style archive (train_images, train_labels, "
                    "val_*, test_*) nor arrays 'images' and 'labels'; arrays present: "
                    f"{names}; name yours with images_key and labels_key"
                )
        if fmt in ("npz", "npy", "hdf5"):
            return self._load_arrays(source, fmt, intensity, channels, bad_records, labelled)
        if fmt == "table":
            rows = self._rows_from_table(path, source, bad_records, labelled)
        elif fmt == "folder":
            rows = self._rows_from_folder(path, source, bad_records, labelled)
        else:
            label = source.get("label") if labelled else None
            if labelled and label is None:
                raise ConfigError(f"{path}: a single-file source needs 'label'")
            rows = self._rows_from_file(
                path, None if label is None else str(label), source, bad_records, kind=fmt
            )
        return self._build(rows, source, intensity, channels, str(path), bad_records, labelled)

    def _format(self, source: Mapping[str, Any], path: Path) -> str:
        fmt = source.get("format")
        if fmt is not None:
            if fmt not in _FORMATS:
                raise ConfigError(
                    f"{path}: medical-image format {fmt!r} is unknown; use one of "
                    f"{', '.join(_FORMATS)}"
                )
            return str(fmt)
        if path.is_dir():
            return "folder"
        name = path.name.lower()
        kind = array_format(path)
        if kind is not None:
            return kind
        if name.endswith((".csv", ".tsv")):
            return "table"
        found = file_kind(path)
        if found is None:
            raise ConfigError(
                f"{path}: cannot tell the format from the name; set format to one of "
                f"{', '.join(_FORMATS)}"
            )
        return found

    def _options(self, source: Mapping[str, Any]) -> dict[str, Any]:
        return {k: source[k] for k in ("frames", "slices", "axis") if k in source}

    def _rows_from_file(
        self,
        path: Path,
        label: str | None,
        source: Mapping[str, Any],
        bad: BadRecords,
        *,
        kind: str | None = None,
        patient: str | None = None,
        row: int | None = None,
    ) -> list[_Row]:
        options = self._options(source)
        if kind is not None:
            options["kind"] = kind
        channels = _channels(source.get("channels", self.channels))
        try:
            frames = read_file(path, options, self._limits(channels))
        except ReadError as exc:
            bad.add(str(path), row, exc.reason)
            return []
        given = patient if patient is not None else source.get("patient")
        if given is None and source.get("group_from") == "folder":
            given = path.parent.name
        elif source.get("group_from") not in (None, "folder"):
            raise ConfigError(f"group_from must be 'folder', got {source.get('group_from')!r}")
        out: list[_Row] = []
        for frame in frames:
            who = str(given) if given not in (None, "") else frame.patient
            where = str(path) if frame.index is None else f"{path} [frame/slice {frame.index}]"
            out.append(_Row(frame, label, who, where))
        return out

    def _files(self, folder: Path) -> list[Path]:
        return sorted(
            p
            for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".") and p.name.lower() not in _IGNORED
        )

    def _rows_from_folder(
        self, root: Path, source: Mapping[str, Any], bad: BadRecords, labelled: bool = True
    ) -> list[_Row]:
        rows: list[_Row] = []
        if "label" in source or not labelled:
            label = str(source["label"]) if labelled else None
            files = self._files(root)
            if not files:
                raise DataError(f"{root}: the folder holds no image files, at any depth")
            for file in files:
                rows.extend(self._rows_from_file(file, label, source, bad))
            return rows
        classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise DataError(
                f"{root}: no class subfolders; put each class's files in root/<class>/, or give "
                "'label' for a folder of one class"
            )
        for folder in classes:
            before = len(rows)
            for file in self._files(folder):
                rows.extend(self._rows_from_file(file, folder.name, source, bad))
            if len(rows) == before:
                bad.add(str(folder), None, "class folder has no readable images")
        return rows

    def _rows_from_table(
        self, file: Path, source: Mapping[str, Any], bad: BadRecords, labelled: bool = True
    ) -> list[_Row]:
        with file.open(newline="", encoding="utf-8") as handle:
            dialect = "excel-tab" if file.suffix.lower() == ".tsv" else "excel"
            table = list(csv.DictReader(handle, dialect=dialect))
        if not table:
            raise DataError(f"{file}: no rows")
        columns = list(table[0])
        path_col = str(source.get("path_column", "path"))
        label_col = str(source.get("label_column", "label")) if labelled else None
        group_col = source.get("group_column") if labelled else None
        for col, key in ((path_col, "path_column"), (label_col, "label_column")):
            if col is not None and col not in columns:
                raise DataError(f"{file}: no column {col!r} ({key}); columns: {columns}")
        if group_col is not None and group_col not in columns:
            raise DataError(f"{file}: group_column {group_col!r} not in columns {columns}")
        rows: list[_Row] = []
        for i, record in enumerate(table):
            line = i + 2  # the header is line 1
            raw_path = record.get(path_col) or ""
            label = None if label_col is None else (record.get(label_col) or "").strip()
            if not raw_path.strip() or label == "":
                what = repr(path_col) if label_col is None else f"{path_col!r} or {label_col!r}"
                bad.add(str(file), line, f"empty {what}")
                continue
            target = (file.parent / raw_path.strip()).resolve()
            patient = record.get(str(group_col)) if group_col is not None else None
            if group_col is not None and not (patient or "").strip():
                bad.add(str(file), line, f"empty group column {group_col!r}")
                continue
            rows.extend(self._rows_from_file(target, label, source, bad, patient=patient, row=line))
        return rows

    def _load_npz(
        self,
        file: Path,
        source: Mapping[str, Any],
        intensity: Intensity,
        channels: str,
        bad: BadRecords,
        labelled: bool = True,
    ) -> datasets.DatasetDict:
        """A MedMNIST archive: ``train_images``, ``train_labels`` (and ``val_*``, ``test_*``)
        become the splits."""
        import zipfile

        import datasets

        try:
            archive = np.load(file, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"{file}: not a readable .npz archive ({exc})") from None
        with archive:
            keys = list(archive.keys())
            present = [
                p
                for p in _NPZ_SPLITS
                if f"{p}_images" in keys and (f"{p}_labels" in keys or not labelled)
            ]
            if "train" not in present and (labelled or not present):
                needs = "train_images and train_labels" if labelled else "train_images"
                raise DataError(
                    f"{file}: not a MedMNIST-style archive: it needs {needs} (and val_*, "
                    f"test_*); arrays present: {keys}; name other arrays with images_key and "
                    "labels_key"
                )
            parts = {
                p: (archive[f"{p}_images"], archive[f"{p}_labels"] if labelled else None)
                for p in present
            }
        names = _given_names(source)
        if labelled:
            all_labels = np.concatenate(
                [
                    np.asarray(lab).reshape(len(lab), -1)
                    for _, lab in parts.values()
                    if lab is not None
                ]
            )
            if all_labels.shape[1] != 1:
                raise DataError(
                    f"{file}: labels have {all_labels.shape[1]} columns; single-label classes "
                    "are read"
                )
            if names is None:
                names = [str(i) for i in range(int(all_labels.max(initial=0)) + 1)]
        out: dict[str, datasets.Dataset] = {}
        for prefix, (images, labels) in parts.items():
            given = {"images": images, "labels": labels, "label_names": names}
            arrays = open_arrays(
                {k: v for k, v in given.items() if v is not None},
                labelled=labelled,
                max_pixels=self.max_pixels,
            )
            arrays.where, arrays.images_name = str(file), f"{prefix}_images"
            arrays.labels_name = f"{prefix}_labels" if labelled else None
            rows = self._rows_from_arrays(arrays, names, channels, bad)
            out[_NPZ_SPLITS[prefix]] = self._build(
                rows,
                {**source, "label_names": names},
                intensity,
                channels,
                f"{file} [{prefix}]",
                bad,
                labelled,
            )
        return datasets.DatasetDict(out)

    def _load_arrays(
        self,
        source: Mapping[str, Any],
        fmt: str | None,
        intensity: Intensity,
        channels: str,
        bad: BadRecords,
        labelled: bool,
    ) -> datasets.Dataset:
        """Images and labels from named arrays: ``.npz`` / ``.npy`` / HDF5 files or arrays in
        memory, checked by :func:`lepton_image.arrays.open_arrays`."""
        with open_arrays(source, labelled=labelled, fmt=fmt, max_pixels=self.max_pixels) as arrays:
            rows = self._rows_from_arrays(arrays, _given_names(source), channels, bad)
            where = arrays.where
        return self._build(rows, source, intensity, channels, where, bad, labelled)

    def _rows_from_arrays(
        self, arrays: ImageArrays, given: list[str] | None, channels: str, bad: BadRecords
    ) -> list[_Row]:
        """One row per array item (values as stored: intensity is handled in :meth:`_build`);
        an item with NaN values or a label that is no class is a bad record naming its index."""
        names_of: list[str | None] = []
        if arrays.labels is not None:
            names_of, _ = label_strings(arrays.labels, given)
        bits = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(arrays.dtype)
        floating = arrays.dtype.kind == "f"
        rows: list[_Row] = []
        for i, array in arrays.items():
            what = arrays.item_name(i)
            if floating and not np.isfinite(array).all():
                bad.add(arrays.where, i, f"{what} has NaN or infinite values")
                continue
            label: str | None = None
            if arrays.labels is not None:
                label = names_of[i]
                if label is None:
                    bad.add(arrays.where, i, arrays.bad_label(i, given))
                    continue
            values = _colour_values(np.asarray(array, dtype=np.float64), channels)
            frame = Frame(values=values, integer_bits=bits if values.ndim == array.ndim else None)
            rows.append(_Row(frame, label, None, f"{arrays.where}, row {i} ({what})"))
        return rows

    def _load_dataset(
        self,
        source: Mapping[str, Any],
        intensity: Intensity,
        channels: str,
        bad: BadRecords,
        labelled: bool,
    ) -> datasets.Dataset | datasets.DatasetDict:
        """A ``datasets.Dataset`` (or ``DatasetDict``: its splits kept) whose image column holds
        image files' bytes or paths (DICOM, NIfTI, PNG, TIFF), PIL images or arrays; labels from
        its label column (``ClassLabel`` names kept), patients from ``group_column``."""
        import datasets

        data = source["dataset"]
        if isinstance(data, datasets.DatasetDict):
            return datasets.DatasetDict(
                {
                    split: self._load_dataset(
                        {**source, "dataset": part}, intensity, channels, bad, labelled
                    )
                    for split, part in data.items()
                }
            )
        if not isinstance(data, datasets.Dataset):
            raise ConfigError(
                f"'dataset' must be a datasets.Dataset or DatasetDict, got {type(data).__name__}"
            )
        where = f"dataset {data.info.dataset_name or 'object'}"
        columns = data.column_names
        image_col, label_col, group_col = pick_columns(
            source, "image", _IMAGE_COLUMNS, _LABEL_COLUMNS, columns, where, labelled=labelled
        )
        feature = data.features.get(label_col) if label_col is not None else None
        names = _given_names(source)
        if names is None and isinstance(feature, datasets.ClassLabel):
            names = list(feature.names)
        raw = (
            data.cast_column(image_col, datasets.Image(decode=False))
            if isinstance(data.features[image_col], datasets.Image)
            else data
        )
        limits = self._limits(channels)
        options = self._options(source)
        rows: list[_Row] = []
        for i, record in enumerate(raw):
            label: str | None = None
            if label_col is not None:
                value = record[label_col]
                if value is None or value == "" or (isinstance(value, int) and value < 0):
                    bad.add(where, i, f"no label in column {label_col!r}")
                    continue
                if isinstance(value, int) and names is not None and value < len(names):
                    label = names[value]
                else:
                    label = str(value)
            patient = None if group_col is None else record[group_col]
            if group_col is not None and patient in (None, ""):
                bad.add(where, i, f"empty group column {group_col!r}")
                continue
            try:
                frames = _frames_of(record[image_col], options, limits, channels)
            except ReadError as exc:
                bad.add(where, i, f"{image_col!r}: {exc.reason}")
                continue
            for frame in frames:
                who = str(patient) if patient is not None else frame.patient
                rows.append(_Row(frame, label, who, f"{where}, row {i}"))
        return self._build(
            rows, {**source, "label_names": names}, intensity, channels, where, bad, labelled
        )

    # -- building the dataset ----------------------------------------------------------------

    def _build(
        self,
        rows: list[_Row],
        source: Mapping[str, Any],
        intensity: Intensity,
        channels: str,
        where: str,
        bad: BadRecords,
        labelled: bool = True,
    ) -> datasets.Dataset:
        """The dataset of ``rows``: ``image``, with ``label`` and ``group`` when ``labelled``
        (unlabelled data: the ``image`` column only; patients are not read). ``channels``:
        ``grey`` stores grey PNGs, ``rgb`` RGB PNGs (grey images repeated), ``auto`` RGB when
        any row is in colour."""
        import datasets

        grouped = labelled and any(r.patient is not None for r in rows)
        if grouped:
            kept = []
            for r in rows:
                if r.patient is None:
                    bad.add(
                        r.where,
                        None,
                        "no patient id (DICOM PatientID empty) while other files of the source "
                        "have one; give 'patient' or 'group_column' in the source",
                    )
                else:
                    kept.append(r)
            rows = kept
        if not rows:
            raise DataError(f"{where}: no readable images ({len(bad)} bad record(s))")
        rgb = channels == "rgb" or (channels == "auto" and any(r.frame.colour for r in rows))
        dataset_range = None
        if intensity.needs_dataset_statistics():
            dataset_range = intensity.dataset_range([r.frame.values for r in rows])
        names = (_given_names(source) or sorted({str(r.label) for r in rows})) if labelled else []
        index = {n: i for i, n in enumerate(names)}
        images: list[dict[str, Any]] = []
        labels: list[int] = []
        groups: list[str] = []
        for r in rows:
            if labelled and r.label not in index:
                bad.add(r.where, None, f"label {r.label!r} not in label_names {names}")
                continue
            pixels = intensity.to_uint8(
                r.frame.values,
                file_window=r.frame.file_window,
                dataset_range=dataset_range,
                integer_bits=r.frame.integer_bits,
            )
            if r.frame.invert:
                pixels = 255 - pixels
            if rgb and pixels.ndim == 2:
                pixels = np.repeat(pixels[..., None], 3, axis=2)
            images.append({"bytes": encode_png8(pixels), "path": None})
            if labelled:
                labels.append(index[str(r.label)])
            if grouped:
                groups.append(hash_patient(r.patient, self._salt))
        if not images:
            raise DataError(f"{where}: no usable images ({len(bad)} bad record(s))")
        features: dict[str, Any] = {"image": datasets.Image(decode=False)}
        data: dict[str, list[Any]] = {"image": images}
        if labelled:
            features["label"] = datasets.ClassLabel(names=list(names))
            data["label"] = labels
        if grouped:
            features["group"] = datasets.Value("string")
            data["group"] = groups
        return datasets.Dataset.from_dict(data, features=datasets.Features(features))

    # -- prediction inputs and examples ------------------------------------------------------

    def from_inputs(self, inputs: Sequence[Any]) -> datasets.Dataset:
        """File paths (DICOM, NIfTI: the middle frame or slice; PNG, TIFF), arrays (2-D grey,
        ``(H, W, 3)`` colour; a 3-D array is a batch of grey images, a 4-D one of colour
        images), PIL images or ``{"bytes", "path"}`` references as a dataset with an ``image``
        column, intensity and channels handled with the domain's settings."""
        import datasets

        if isinstance(inputs, str | os.PathLike | Image.Image | np.ndarray) and not (
            isinstance(inputs, np.ndarray) and inputs.ndim in (3, 4)
        ):
            inputs = [inputs]
        limits = self._limits(self.channels)
        stored: list[dict[str, Any]] = []
        for i, item in enumerate(inputs):
            if isinstance(item, Mapping) and item.get("bytes") is not None:
                try:
                    with Image.open(io.BytesIO(item["bytes"])) as image:
                        image.load()
                except (OSError, ValueError) as exc:
                    raise DataError(f"input {i}: image bytes cannot be decoded ({exc})") from None
                stored.append({"bytes": bytes(item["bytes"]), "path": None})
                continue
            if not isinstance(item, str | os.PathLike | np.ndarray | Image.Image):
                raise DataError(
                    f"input {i}: the medical-image domain reads file paths, 2-D or (H, W, 3) "
                    f"arrays, PIL images or image bytes, not {type(item).__name__}"
                )
            if isinstance(item, np.ndarray) and not (
                item.ndim == 2 or (item.ndim == 3 and item.shape[-1] in (1, 3, 4))
            ):
                raise DataError(
                    f"input {i}: arrays must be (H, W) or (H, W, 3) images, got {item.shape}"
                )
            try:
                frames = _frames_of(item, {}, limits, self.channels)
            except ReadError as exc:
                shown = f" ({Path(os.fspath(item)).resolve()})" if isinstance(item, str) else ""
                raise DataError(f"input {i}{shown}: {exc.reason}") from None
            stored.append({"bytes": self._encode(frames[0]), "path": None})
        return datasets.Dataset.from_dict(
            {"image": stored}, features=datasets.Features({"image": datasets.Image(decode=False)})
        )

    def _encode(self, frame: Frame) -> bytes:
        if self.intensity.needs_dataset_statistics():
            raise ConfigError(
                "normalize: dataset needs a whole source; for prediction give a fixed range "
                "(normalize: {range: [low, high]}) or a window"
            )
        pixels = self.intensity.to_uint8(
            frame.values, file_window=frame.file_window, integer_bits=frame.integer_bits
        )
        if frame.invert:
            pixels = 255 - pixels
        if self.channels == "rgb" and pixels.ndim == 2:
            pixels = np.repeat(pixels[..., None], 3, axis=2)
        return encode_png8(pixels)

    def example_dataset(
        self, num_examples: int, label_names: Sequence[str], seed: int = 0
    ) -> datasets.Dataset:
        """Small 16x16 gray images whose brightness depends on the label (learnable), one
        hashed patient per two rows."""
        import datasets

        names = [str(n) for n in label_names]
        rng = np.random.default_rng(seed)
        levels = np.linspace(40, 215, num=len(names))
        images: list[dict[str, Any]] = []
        labels: list[int] = []
        groups: list[str] = []
        for i in range(num_examples):
            label = i % len(names)
            noise = rng.normal(0, 20, size=(16, 16))
            pixels = np.clip(levels[label] + noise, 0, 255).astype(np.uint8)
            images.append({"bytes": encode_png8(pixels), "path": None})
            labels.append(label)
            groups.append(hash_patient(f"example-{seed}-{i // 2}", self._salt))
        features = datasets.Features(
            {
                "image": datasets.Image(decode=False),
                "label": datasets.ClassLabel(names=names),
                "group": datasets.Value("string"),
            }
        )
        return datasets.Dataset.from_dict(
            {"image": images, "label": labels, "group": groups}, features=features
        )


def _npz_arrays(path: Path) -> list[str]:
    """The array names in a ``.npz`` (read without loading them; none for a broken file)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return [n.removesuffix(".npy") for n in archive.namelist()]
    except (OSError, zipfile.BadZipFile):
        return []


def _colour_values(values: np.ndarray, channels: str) -> np.ndarray:
    """``(H, W)`` or ``(H, W, 3)`` values: an alpha channel dropped; colour made grey (luminance)
    under the ``grey`` policy."""
    if values.ndim == 3 and values.shape[-1] == 1:
        return values[..., 0]
    if values.ndim == 3:
        return luminance(values) if channels == "grey" else values[..., :3]
    return values


def _frames_of(item: Any, options: dict[str, Any], limits: Limits, channels: str) -> list[Frame]:
    """The frames of one image cell of a dataset: ``{"bytes", "path"}``, a path, a PIL image or
    an array."""
    if isinstance(item, Mapping):
        raw, path = item.get("bytes"), item.get("path")
        if raw is not None:
            return read_image(bytes(raw), limits)
        if path:
            return read_file(Path(str(path)), options, limits)
        raise ReadError("image cell holds neither bytes nor a path")
    if isinstance(item, str | os.PathLike):
        return read_file(Path(os.fspath(item)), options, limits)
    if isinstance(item, Image.Image):
        buffer = io.BytesIO()
        item.save(buffer, format="PNG" if item.mode not in ("F", "I") else "TIFF")
        return read_image(buffer.getvalue(), limits)
    if item is None:
        raise ReadError("image cell is empty")
    values = np.asarray(item)
    if values.dtype.kind not in "biuf" or values.ndim not in (2, 3):
        raise ReadError(f"image cell is an array of shape {values.shape} and type {values.dtype}")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise ReadError("image has NaN or infinite values")
    limits.check_image(values.shape)
    bits = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(values.dtype)
    colour = _colour_values(values.astype(np.float64), channels)
    return [Frame(values=colour, integer_bits=bits if colour.ndim == values.ndim else None)]


def _given_names(source: Mapping[str, Any]) -> list[str] | None:
    names = source.get("label_names")
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ConfigError(f"label_names must be a list of names, got {names!r}")
    return [str(n) for n in names]
