"""The ``speech`` domain: audio sources read into the standard schema.

The schema: ``audio`` (a struct ``{"path": string, "bytes": binary}``: files are referenced by
absolute path, in-memory audio and Hugging Face ``Audio`` columns keep their encoded bytes; the
preprocessor decodes, so ``datasets.map`` caches decoded and resampled waveforms), ``label``
(``ClassLabel``) and ``group`` (speaker) when the source names one. Every file is decoded once
while loading (``verify="decode"``; ``"header"`` only opens it), so a bad file stops the run, or
is skipped and listed, here with its path, rather than in the middle of training.

Sources (``format`` is inferred when omitted)::

    {"path": "commands/"}                           # one subfolder per class
    {"path": "recordings/", "pattern": r"(?P<label>\\d)_(?P<group>[a-z]+)_\\d+\\.wav"}
    {"path": "clips.csv", "group_column": "speaker"}  # columns path,label[,speaker]
    {"path": "saved/", "format": "hf"}              # datasets.save_to_disk output
    {"dataset": hf_dataset, "audio_column": "audio", "label_column": "intent"}

A folder ``pattern`` is a regular expression matched against each file's path relative to the
folder; its named groups ``label`` (required) and ``group`` (optional) give the columns. An
audio file of a type not among the domain's ``extensions`` (``.mp3``, ``.m4a``, ...) is a bad
record naming it, never silently left out; other files (notes, ``.DS_Store``) are not read.
A misspelled source key is refused, naming the closest one.

Unlabelled target data (:meth:`SpeechDomain.load_unlabelled`, for domain adaptation) needs no
labels: a folder is every audio file in it at any depth (class subfolders or a ``pattern`` are
not needed, and are not read), one audio file is one row (a list of files is a list of such
sources), a CSV needs only its audio column, a dataset only its audio column; labels present are
not read.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lepton_platform.data import (
    BadRecords,
    is_saved_dataset,
    pick_columns,
    standardize,
)
from lepton_platform.domains import Domain
from lepton_platform.errors import ConfigError, DataError, did_you_mean
from lepton_speech.audio import EXTENSIONS, check_audio, describe, encode_wav, probe_audio

if TYPE_CHECKING:
    import datasets

__all__ = ["SpeechDomain", "audio_features"]

_FORMATS = ("folder", "csv", "hf")
_SOURCE_KEYS = (
    "path",
    "dataset",
    "format",
    "pattern",
    "audio_column",
    "label_column",
    "group_column",
    "label_names",
    "split",
    "verify",
)
_AUDIO_COLUMNS = ("audio", "path", "file", "filename", "audio_path")
#: Audio file types a folder may hold: one that is not among the domain's ``extensions`` is a
#: bad record (listed, never silently left out of its class).
_AUDIO_TYPES = (
    ".aac", ".aif", ".aifc", ".aiff", ".amr", ".ape", ".au", ".caf", ".flac", ".m4a", ".mka",
    ".mp3", ".mp4", ".oga", ".ogg", ".opus", ".rf64", ".snd", ".w64", ".wav", ".wave", ".webm",
    ".wma", ".wv",
)  # fmt: skip
#: The soundfile format that reads a file type, where one does.
_SOUNDFILE_FORMATS = {
    ".aif": "AIFF", ".aifc": "AIFF", ".aiff": "AIFF", ".au": "AU", ".caf": "CAF",
    ".flac": "FLAC", ".mp3": "MP3", ".oga": "OGG", ".ogg": "OGG", ".opus": "OGG",
    ".rf64": "RF64", ".snd": "AU", ".w64": "W64", ".wav": "WAV", ".wave": "WAV",
}  # fmt: skip
_LABEL_COLUMNS = ("label", "labels", "class", "target")


def audio_features() -> datasets.Features:
    """The ``audio`` column's feature: a struct of an absolute ``path`` and encoded ``bytes``."""
    import datasets

    return datasets.Features(
        {"audio": {"path": datasets.Value("string"), "bytes": datasets.Value("binary")}}
    )


class SpeechDomain(Domain):
    """Reads audio from class folders, CSV lists and Hugging Face datasets.

    ``verify="decode"`` decodes every file while loading (finds truncated files and NaN
    samples); ``"header"`` only opens each one (faster on large corpora). ``extensions`` are the
    file types a folder source picks up.
    """

    name = "speech"
    input_columns = ("audio",)
    reads_datasets = True
    input_extensions = EXTENSIONS

    def __init__(self, *, verify: str = "decode", extensions: Sequence[str] = EXTENSIONS) -> None:
        if verify not in ("decode", "header"):
            raise ConfigError(f"speech domain: verify must be 'decode' or 'header', got {verify!r}")
        self.verify = verify
        self.extensions = tuple(str(e).lower() for e in extensions)

    # -- loading ---------------------------------------------------------------------------------

    def load(
        self, source: Mapping[str, Any], *, bad_records: BadRecords
    ) -> datasets.Dataset | datasets.DatasetDict:
        """Read one source into the standard schema (see the module docstring)."""
        return self._read(source, bad_records, labelled=True)

    def load_unlabelled(
        self, source: Mapping[str, Any], *, bad_records: BadRecords
    ) -> datasets.Dataset | datasets.DatasetDict:
        """Read one source of unlabelled target audio into the ``audio`` column only: a folder
        of audio files at any depth (no class subfolders or pattern needed), one audio file, a
        CSV of paths, or a dataset; labels present are not read. ``verify``, the extensions
        and bad records are those of :meth:`load` (resampling is the preprocessor's, as
        always)."""
        return self._read(source, bad_records, labelled=False)

    def _read(
        self, source: Mapping[str, Any], bad_records: BadRecords, labelled: bool
    ) -> datasets.Dataset | datasets.DatasetDict:
        if not isinstance(source, Mapping):
            raise ConfigError(f"a speech source must be a mapping, got {type(source).__name__}")
        unknown = sorted(set(source) - set(_SOURCE_KEYS))
        if unknown:
            hint = did_you_mean(str(unknown[0]), _SOURCE_KEYS)
            hint = hint if hint.startswith("; did you mean") else ""
            raise ConfigError(
                f"speech source has unknown key(s) {unknown}{hint}; allowed: "
                f"{', '.join(_SOURCE_KEYS)}"
            )
        verify = str(source.get("verify", self.verify))
        if verify not in ("decode", "header"):
            raise ConfigError(f"speech source: verify must be 'decode' or 'header', got {verify!r}")
        fmt = self._format(source)
        if fmt == "file":
            file = Path(str(source["path"])).resolve()
            if labelled:
                raise ConfigError(
                    f"{file}: one audio file has no label; put the files in class subfolders, "
                    "give a folder pattern or list them with their labels in a CSV (as "
                    "unlabelled target data, unlabelled_target, an audio file is read as it is)"
                )
            return self._build_unlabelled(self._readable([file], verify, bad_records), str(file))
        if fmt == "folder":
            return self._load_folder(source, verify, bad_records, labelled)
        if fmt == "csv":
            return self._load_csv(source, verify, bad_records, labelled)
        return self._load_hf(source, verify, bad_records, labelled)

    def _format(self, source: Mapping[str, Any]) -> str:
        fmt = source.get("format")
        if fmt is not None:
            if fmt not in _FORMATS:
                raise ConfigError(
                    f"speech source format {fmt!r} is unknown; use one of {', '.join(_FORMATS)}"
                )
            return str(fmt)
        if "dataset" in source:
            return "hf"
        if "path" not in source:
            raise ConfigError(
                "a speech source needs 'path' (a folder, a .csv or a saved dataset) or "
                f"'dataset'; got keys {sorted(source)}"
            )
        path = Path(str(source["path"]))
        if not path.exists():
            raise DataError(f"{path}: speech source does not exist")
        if path.is_dir():
            return "hf" if is_saved_dataset(path) else "folder"
        if path.suffix.lower() in (".csv", ".tsv"):
            return "csv"
        if path.suffix.lower() in self.extensions:
            return "file"
        raise ConfigError(
            f"{path}: cannot tell the format of this speech source from its extension; "
            f"set format to one of {', '.join(_FORMATS)}"
        )

    def _unread_type(self, suffix: str) -> str:
        """Why a folder's audio file of type ``suffix`` is not read, and what to do."""
        import soundfile

        reads = ", ".join(self.extensions)
        known = _SOUNDFILE_FORMATS.get(suffix)
        if known is not None and known in soundfile.available_formats():
            advice = (
                f"this soundfile reads {known}: add {suffix!r} to the speech domain's "
                "extensions option to use it"
            )
        else:
            advice = "convert it to WAV or FLAC (e.g. `ffmpeg -i clip.m4a clip.wav`)"
        return f"a {suffix} file, which the speech domain does not read ({reads}); {advice}"

    def _check(
        self, ref: Mapping[str, Any], verify: str, where: str, row: int | None, bad: BadRecords
    ) -> bool:
        """Decode (or open) one file; a problem goes to ``bad`` as ``where``, ``row``."""
        try:
            check_audio(ref) if verify == "decode" else probe_audio(ref)
        except DataError as exc:
            reason = str(exc)
            prefix = f"{describe(ref)}: "
            if where == describe(ref) and reason.startswith(prefix):
                reason = reason[len(prefix) :]
            bad.add(where, row, reason)
            return False
        return True

    def _readable(
        self, files: Sequence[Path], verify: str, bad: BadRecords
    ) -> list[dict[str, Any]]:
        """References of ``files`` that decode (or open); the others go to ``bad``."""
        refs = [{"path": str(file), "bytes": None} for file in files]
        return [ref for ref in refs if self._check(ref, verify, str(ref["path"]), None, bad)]

    def _load_folder(
        self, source: Mapping[str, Any], verify: str, bad: BadRecords, labelled: bool = True
    ) -> datasets.Dataset:
        root = Path(str(source["path"])).resolve()
        if not root.is_dir():
            raise DataError(f"{root}: not a folder")
        found = sorted(p for p in root.rglob("*") if p.is_file())
        files = [p for p in found if p.suffix.lower() in self.extensions]
        for other in found:
            if other.suffix.lower() in _AUDIO_TYPES and other.suffix.lower() not in self.extensions:
                bad.add(str(other), None, self._unread_type(other.suffix.lower()))
        if not files:
            raise DataError(
                f"{root}: no audio files ({', '.join(self.extensions)}) in it or its subfolders"
            )
        if not labelled:
            return self._build_unlabelled(self._readable(files, verify, bad), str(root))
        pattern_text = source.get("pattern")
        pattern = None
        if pattern_text is not None:
            try:
                pattern = re.compile(str(pattern_text))
            except re.error as exc:
                raise ConfigError(f"speech source pattern {pattern_text!r}: {exc}") from None
            if "label" not in pattern.groupindex:
                raise ConfigError(
                    f"speech source pattern {pattern_text!r} needs a named group (?P<label>...)"
                )
        refs: list[dict[str, Any]] = []
        labels: list[str] = []
        groups: list[str] = []
        for file in files:
            relative = file.relative_to(root).as_posix()
            if pattern is not None:
                match = pattern.fullmatch(relative) or pattern.fullmatch(file.name)
                if match is None:
                    reason = f"its name does not match the pattern {pattern_text!r}"
                    bad.add(str(file), None, reason)
                    continue
                label = match.group("label")
                group = match.groupdict().get("group")
            else:
                if file.parent == root:
                    raise DataError(
                        f"{file}: audio directly in {root}; put each class in its own subfolder "
                        "or give a pattern with a (?P<label>...) group"
                    )
                label = file.relative_to(root).parts[0]
                group = None
            ref = {"path": str(file), "bytes": None}
            if not self._check(ref, verify, str(file), None, bad):
                continue
            given = source.get("label_names")
            if given is not None and label not in [str(n) for n in given]:
                bad.add(str(file), None, f"label {label!r} is not in label_names {list(given)}")
                continue
            refs.append(ref)
            labels.append(label)
            if group is not None:
                groups.append(group)
        use_groups = pattern is not None and "group" in pattern.groupindex
        return self._build(refs, labels, groups if use_groups else None, source, str(root), True)

    def _load_csv(
        self, source: Mapping[str, Any], verify: str, bad: BadRecords, labelled: bool = True
    ) -> datasets.Dataset:
        file = Path(str(source["path"])).resolve()
        if not file.is_file():
            raise DataError(f"{file}: file does not exist")
        dialect = "excel-tab" if file.suffix.lower() == ".tsv" else "excel"
        with file.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle, dialect=dialect))
        if not rows:
            raise DataError(f"{file}: no rows under the header")
        columns = list(rows[0])
        audio_col, label_col, group_col = pick_columns(
            source, "audio", _AUDIO_COLUMNS, _LABEL_COLUMNS, columns, file, labelled=labelled
        )
        refs: list[dict[str, Any]] = []
        labels: list[str] = []
        groups: list[str] = []
        for line, row in enumerate(rows, start=2):
            text = (row.get(audio_col) or "").strip()
            if not text:
                bad.add(str(file), line, f"empty audio path in column {audio_col!r}")
                continue
            label = "" if label_col is None else (row.get(label_col) or "").strip()
            if label_col is not None and not label:
                bad.add(str(file), line, f"empty label in column {label_col!r}")
                continue
            group = ""
            if group_col is not None:
                group = (row.get(group_col) or "").strip()
                if not group:
                    bad.add(str(file), line, f"empty group in column {group_col!r}")
                    continue
            given = source.get("label_names") if labelled else None
            if given is not None and label not in [str(n) for n in given]:
                bad.add(str(file), line, f"label {label!r} is not in label_names {list(given)}")
                continue
            path = Path(text).expanduser()
            path = path if path.is_absolute() else (file.parent / path)
            ref = {"path": str(path.resolve()), "bytes": None}
            if not self._check(ref, verify, str(file), line, bad):
                continue
            refs.append(ref)
            labels.append(label)
            groups.append(group)
        if not labelled:
            return self._build_unlabelled(refs, str(file))
        return self._build(
            refs, labels, groups if group_col else None, source, str(file), fingerprint_files=True
        )

    def _load_hf(
        self, source: Mapping[str, Any], verify: str, bad: BadRecords, labelled: bool = True
    ) -> datasets.Dataset | datasets.DatasetDict:
        import datasets

        if "dataset" in source:
            data = source["dataset"]
            name = getattr(getattr(data, "info", None), "dataset_name", None)
            where = f"dataset {name or 'object'}"
        else:
            where = str(Path(str(source["path"])).resolve())
            try:
                data = datasets.load_from_disk(where)
            except (FileNotFoundError, ValueError) as exc:
                raise DataError(
                    f"{where}: not a saved dataset (datasets.save_to_disk output): {exc}"
                ) from None
        if isinstance(data, datasets.DatasetDict):
            split = source.get("split")
            if split is not None:
                if split not in data:
                    raise ConfigError(f"{where}: no split {split!r}; it has {list(data)}")
                return self._hf_split(
                    data[split], source, verify, f"{where}[{split}]", bad, labelled
                )
            return datasets.DatasetDict(
                {
                    name: self._hf_split(ds, source, verify, f"{where}[{name}]", bad, labelled)
                    for name, ds in data.items()
                }
            )
        if not isinstance(data, datasets.Dataset):
            raise ConfigError(
                "speech source 'dataset' must be a datasets.Dataset or DatasetDict, got "
                f"{type(data).__name__}"
            )
        return self._hf_split(data, source, verify, where, bad, labelled)

    def _hf_split(
        self,
        data: datasets.Dataset,
        source: Mapping[str, Any],
        verify: str,
        where: str,
        bad: BadRecords,
        labelled: bool = True,
    ) -> datasets.Dataset:
        import datasets

        columns = list(data.column_names)
        audio_col, label_col, group_col = pick_columns(
            source, "audio", _AUDIO_COLUMNS, _LABEL_COLUMNS, columns, where, labelled=labelled
        )
        feature = data.features[audio_col]
        if isinstance(feature, datasets.Audio):
            # Raw bytes and paths: decoding through datasets would need torchcodec and FFmpeg.
            data = data.cast_column(audio_col, datasets.Audio(decode=False))
        raw = data.select_columns([audio_col]).with_format(None)[audio_col]
        refs: list[dict[str, Any] | None] = []
        for row, value in enumerate(raw):
            ref = _as_ref(value)
            if ref is None:
                bad.add(where, row, f"column {audio_col!r} holds {type(value).__name__}, not audio")
                refs.append(None)
                continue
            if not self._check(ref, verify, where, row, bad):
                refs.append(None)
                continue
            refs.append(ref)
        keep = [i for i, r in enumerate(refs) if r is not None]
        values = [refs[i] for i in keep]
        if label_col is None:
            return self._build_unlabelled(values, where, fingerprint_files=False)
        table = data.select(keep) if len(keep) != len(data) else data
        keep_cols = [label_col] + ([group_col] if group_col else [])
        table = table.select_columns(keep_cols)
        table = table.add_column("audio", values, feature=audio_features()["audio"])
        if not len(table):
            raise DataError(f"{where}: no readable audio ({len(bad)} bad records)")
        return standardize(
            table,
            input_columns=["audio"],
            label_column=label_col,
            label_names=source.get("label_names"),
            group_column=group_col,
            source=where,
            bad_records=bad,
        )

    def _build_unlabelled(
        self, refs: Sequence[dict[str, Any] | None], where: str, *, fingerprint_files: bool = True
    ) -> datasets.Dataset:
        """The ``audio`` column alone (unlabelled target data)."""
        import datasets

        kept = [ref for ref in refs if ref is not None]
        if not kept:
            raise DataError(f"{where}: no readable audio files")
        ds = datasets.Dataset.from_dict({"audio": kept}, features=audio_features())
        return _with_file_fingerprint(ds, kept) if fingerprint_files else ds

    def _build(
        self,
        refs: list[dict[str, Any]],
        labels: list[str],
        groups: list[str] | None,
        source: Mapping[str, Any],
        where: str,
        fingerprint_files: bool,
    ) -> datasets.Dataset:
        import datasets

        if not refs:
            raise DataError(f"{where}: no readable audio files")
        data: dict[str, list[Any]] = {"audio": refs, "label": labels}
        features = audio_features()
        features["label"] = datasets.Value("string")
        if groups is not None:
            data["group"] = groups
            features["group"] = datasets.Value("string")
        ds = datasets.Dataset.from_dict(data, features=features)
        if fingerprint_files:
            ds = _with_file_fingerprint(ds, refs)
        return standardize(
            ds,
            input_columns=["audio"],
            label_names=source.get("label_names"),
            group_column="group" if groups is not None else None,
            source=where,
        )

    # -- prediction inputs and examples ----------------------------------------------------------

    def from_inputs(self, inputs: Sequence[Any]) -> datasets.Dataset:
        """Paths, encoded bytes, ``(array, sampling_rate)`` pairs or ``{"array",
        "sampling_rate"}`` mappings as a dataset with an ``audio`` column."""
        import datasets

        if isinstance(inputs, str | os.PathLike | bytes):
            inputs = [inputs]
        refs: list[dict[str, Any]] = []
        for i, item in enumerate(inputs):
            ref = _input_ref(item, i)
            try:
                check_audio(ref)
            except DataError as exc:
                raise DataError(f"input {i}: {exc}") from None
            refs.append(ref)
        return datasets.Dataset.from_dict({"audio": refs}, features=audio_features())

    def example_dataset(
        self, num_examples: int, label_names: Sequence[str], seed: int = 0
    ) -> datasets.Dataset:
        """Tones at 16 kHz, 0.2-0.4 s long, one pitch per class, with a little noise."""
        import datasets

        names = [str(n) for n in label_names]
        rng = np.random.default_rng(seed)
        rate = 16000
        refs: list[dict[str, Any]] = []
        labels: list[int] = []
        for i in range(num_examples):
            label = i % len(names)
            length = int(rate * rng.uniform(0.2, 0.4))
            t = np.arange(length) / rate
            tone = 0.5 * np.sin(2 * np.pi * 220.0 * (1 + label) * t)
            wave = tone + 0.05 * rng.standard_normal(length)
            refs.append({"path": f"example-{i}.wav", "bytes": encode_wav(wave, rate)})
            labels.append(label)
        features = audio_features()
        features["label"] = datasets.ClassLabel(names=names)
        return datasets.Dataset.from_dict({"audio": refs, "label": labels}, features=features)


def _with_file_fingerprint(
    ds: datasets.Dataset, refs: Sequence[Mapping[str, Any]]
) -> datasets.Dataset:
    """``ds`` with the sizes and times of the files it references folded into its fingerprint,
    so that the preprocessing cache is not reused after a file changes in place."""
    import datasets

    digest = hashlib.sha256(ds._fingerprint.encode())
    for ref in refs:
        stat = os.stat(ref["path"])
        digest.update(f"{ref['path']}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return datasets.Dataset(ds.data, info=ds.info, fingerprint=digest.hexdigest()[:32])


def _as_ref(value: Any) -> dict[str, Any] | None:
    """A Hugging Face audio cell (``{"bytes", "path"}``, a path string) as a reference."""
    if isinstance(value, str):
        return {"path": value, "bytes": None}
    if isinstance(value, Mapping):
        data = value.get("bytes")
        path = value.get("path")
        if data is None and not path and "array" in value:
            rate = value.get("sampling_rate")
            if rate is None:
                return None
            return {"path": None, "bytes": encode_wav(value["array"], int(rate))}
        if data is None and not path:
            return None
        if data is not None:
            return {"path": path, "bytes": bytes(data)}
        return {"path": str(path), "bytes": None}
    return None


def _input_ref(item: Any, i: int) -> dict[str, Any]:
    if isinstance(item, str | os.PathLike):
        path = Path(item)
        if not path.is_file():
            raise DataError(f"input {i}: {path}: no such audio file")
        return {"path": str(path.resolve()), "bytes": None}
    if isinstance(item, bytes | bytearray):
        return {"path": None, "bytes": bytes(item)}
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], int):
        return {"path": None, "bytes": encode_wav(item[0], item[1])}
    if isinstance(item, Mapping):
        ref = _as_ref(item)
        if ref is not None:
            return ref
        raise DataError(
            f"input {i}: a mapping needs 'path', 'bytes', or 'array' with 'sampling_rate'"
        )
    raise DataError(
        f"input {i}: expected an audio file path, encoded bytes, (array, sampling_rate) or "
        f"{{'array', 'sampling_rate'}} for the speech domain, got {type(item).__name__}"
    )
