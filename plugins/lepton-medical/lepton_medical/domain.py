"""The ``medical-image`` domain: DICOM, NIfTI, PNG/TIFF and MedMNIST sources in the standard schema.

The schema is the image domain's, so the image plugin's backbones and preprocessing apply:
``image`` (``datasets.Image(decode=False)``: 8-bit gray PNG bytes, intensity already handled;
no file path is stored, since paths may carry patient names), ``label`` (``ClassLabel``) and
``group`` (a salted hash of the patient, :mod:`lepton_medical.privacy`) when the source names
patients. Sources (``format`` is inferred from ``path`` when omitted)::

    {"path": "scans/"}                       # class subfolders of DICOM/NIfTI/PNG/TIFF files
    {"path": "case7/", "label": "nodule"}    # a folder (or one file) of a single class
    {"path": "labels.csv", "group_column": "patient"}  # path,label[,patient] rows
    {"path": "breastmnist.npz"}              # MedMNIST arrays: its own train/val/test splits

Options in the source (defaults from the domain): ``window`` (a preset such as ``lung``,
``{"center", "width"}``, ``"file"`` or ``None``), ``normalize`` (``auto``, ``image``,
``dataset``, ``none``, ``{"range": [lo, hi]}``), ``percentiles``, ``frames`` (DICOM
multi-frame: ``middle``, ``all``, an index or a list), ``slices`` and ``axis`` (NIfTI:
``middle``, ``all``, indices, ``max`` or ``mean`` projection), ``patient`` (one patient id for
the whole source), ``group_from: "folder"`` (the file's folder names the patient),
``label_names``.

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
from PIL import Image

from lepton_medical.intensity import Intensity
from lepton_medical.privacy import hash_patient, resolve_salt
from lepton_medical.readers import Frame, ReadError, file_kind, read_file
from lepton_platform.data import BadRecords
from lepton_platform.domains import Domain
from lepton_platform.errors import ConfigError, DataError

if TYPE_CHECKING:
    import datasets

__all__ = ["MedicalImageDomain", "encode_gray_png"]

_FORMATS = ("folder", "dicom", "nifti", "image", "table", "npz")
_IGNORED = frozenset({"dicomdir", "readme", "readme.md", "license", "source.md"})
_NPZ_SPLITS = {"train": "train", "val": "validation", "test": "test"}


def encode_gray_png(pixels: np.ndarray) -> bytes:
    """Lossless PNG bytes of a 2-D ``uint8`` array."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), mode="L").save(
        buffer, format="PNG", compress_level=1
    )
    return buffer.getvalue()


class _Row:
    """One image on its way into the dataset (values still in scanner units)."""

    __slots__ = ("frame", "label", "patient", "where")

    def __init__(self, frame: Frame, label: str | None, patient: str | None, where: str) -> None:
        self.frame, self.label, self.patient, self.where = frame, label, patient, where


class MedicalImageDomain(Domain):
    """Reads medical images into the image schema with patient groups (module docstring).

    ``window``, ``normalize`` and ``percentiles`` are the defaults of every source; ``salt``
    salts the patient hashes (default ``$LEPTON_PATIENT_SALT``).
    """

    name = "medical-image"
    input_columns = ("image",)

    def __init__(
        self,
        *,
        window: str | Mapping[str, Any] | Sequence[float] | None = "file",
        normalize: str | Mapping[str, Any] = "auto",
        percentiles: Sequence[float] = (0.0, 100.0),
        salt: str | None = None,
    ) -> None:
        self.intensity = Intensity.from_options(
            {"window": window, "normalize": normalize, "percentiles": list(percentiles)}
        )
        self._salt = resolve_salt(salt)

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
        if "path" not in source:
            raise ConfigError(
                "a medical-image source needs 'path' (a DICOM/NIfTI/PNG/TIFF file or folder, a "
                f".csv list or a MedMNIST .npz); got keys {sorted(source)}"
            )
        path = Path(str(source["path"])).expanduser().resolve()
        if not path.exists():
            raise DataError(f"{path}: medical-image source does not exist")
        fmt = self._format(source, path)
        intensity = Intensity.from_options(source, self.intensity)
        if fmt == "npz":
            return self._load_npz(path, source, intensity, bad_records, labelled)
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
        return self._build(rows, source, intensity, str(path), bad_records, labelled)

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
        if name.endswith(".npz"):
            return "npz"
        if name.endswith((".csv", ".tsv")):
            return "table"
        kind = file_kind(path)
        if kind is None:
            raise ConfigError(
                f"{path}: cannot tell the format from the name; set format to one of "
                f"{', '.join(_FORMATS)}"
            )
        return kind

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
        try:
            frames = read_file(path, options)
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
        bad: BadRecords,
        labelled: bool = True,
    ) -> datasets.DatasetDict:
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
                    f"test_*); arrays present: {keys}"
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
            where = f"{file} [{prefix}]"
            flat = None if labels is None else np.asarray(labels).reshape(len(labels), -1)[:, 0]
            if flat is not None and len(flat) != len(images):
                raise DataError(f"{where}: {len(images)} images but {len(flat)} labels")
            if images.ndim not in (3, 4):
                raise DataError(f"{where}: images have shape {images.shape}; expected (N, H, W)")
            rows: list[_Row] = []
            for i, array in enumerate(images):
                arr = np.asarray(array)
                if arr.ndim == 3:
                    arr = arr[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
                if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                    bad.add(where, i, "image has NaN or infinite values")
                    continue
                label: str | None = None
                if flat is not None and names is not None:
                    index = int(flat[i])
                    if not 0 <= index < len(names):
                        bad.add(where, i, f"label {index} outside label_names {names}")
                        continue
                    label = names[index]
                bits = 8 if array.dtype == np.uint8 else (16 if array.dtype == np.uint16 else None)
                frame = Frame(values=arr.astype(np.float64), integer_bits=bits)
                rows.append(_Row(frame, label, None, f"{where}, row {i}"))
            out[_NPZ_SPLITS[prefix]] = self._build(
                rows, {**source, "label_names": names}, intensity, where, bad, labelled
            )
        return datasets.DatasetDict(out)

    # -- building the dataset ----------------------------------------------------------------

    def _build(
        self,
        rows: list[_Row],
        source: Mapping[str, Any],
        intensity: Intensity,
        where: str,
        bad: BadRecords,
        labelled: bool = True,
    ) -> datasets.Dataset:
        """The dataset of ``rows``: ``image``, with ``label`` and ``group`` when ``labelled``
        (unlabelled data: the ``image`` column only; patients are not read)."""
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
            images.append({"bytes": encode_gray_png(pixels), "path": None})
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
        """File paths (DICOM, NIfTI: the middle frame or slice; PNG, TIFF), 2-D arrays, PIL
        images or ``{"bytes", "path"}`` references as a dataset with an ``image`` column,
        intensity handled with the domain's settings."""
        import datasets

        if isinstance(inputs, str | os.PathLike | Image.Image | np.ndarray) and not (
            isinstance(inputs, np.ndarray) and inputs.ndim == 3
        ):
            inputs = [inputs]
        stored: list[dict[str, Any]] = []
        for i, item in enumerate(inputs):
            if isinstance(item, str | os.PathLike):
                path = Path(os.fspath(item)).resolve()
                try:
                    frames = read_file(path)
                except ReadError as exc:
                    raise DataError(f"input {i} ({path}): {exc.reason}") from None
                stored.append({"bytes": self._encode(frames[0]), "path": None})
            elif isinstance(item, np.ndarray):
                if item.ndim != 2:
                    raise DataError(f"input {i}: arrays must be 2-D images, got {item.shape}")
                bits = 8 if item.dtype == np.uint8 else (16 if item.dtype == np.uint16 else None)
                frame = Frame(values=item.astype(np.float64), integer_bits=bits)
                stored.append({"bytes": self._encode(frame), "path": None})
            elif isinstance(item, Image.Image):
                stored.append(
                    {"bytes": encode_gray_png(np.asarray(item.convert("L"))), "path": None}
                )
            elif isinstance(item, Mapping) and item.get("bytes") is not None:
                try:
                    with Image.open(io.BytesIO(item["bytes"])) as image:
                        image.load()
                except (OSError, ValueError) as exc:
                    raise DataError(f"input {i}: image bytes cannot be decoded ({exc})") from None
                stored.append({"bytes": bytes(item["bytes"]), "path": None})
            else:
                raise DataError(
                    f"input {i}: the medical-image domain reads file paths, 2-D arrays, PIL "
                    f"images or image bytes, not {type(item).__name__}"
                )
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
        return encode_gray_png(255 - pixels if frame.invert else pixels)

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
            images.append({"bytes": encode_gray_png(pixels), "path": None})
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


def _given_names(source: Mapping[str, Any]) -> list[str] | None:
    names = source.get("label_names")
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ConfigError(f"label_names must be a list of names, got {names!r}")
    return [str(n) for n in names]
