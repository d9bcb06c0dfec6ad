"""Preprocessing through ``datasets.map`` with a cache that outlives the process.

A backbone's :meth:`~lepton_platform.models.Preprocessor.transform` (tokenise, decode, resize,
extract features: nothing random) runs once per data and preprocessing; the result is an Arrow
file under ``$LEPTON_CACHE_DIR/prepared`` (default ``~/.cache/lepton/prepared``) named by the
fingerprint of the data's content and of the preprocessing, so a second run, even in another
process, reads it back instead of redoing it. Delete that folder to free the space.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import datasets
import pyarrow as pa

from lepton_platform.data.schema import STANDARD_COLUMNS
from lepton_platform.errors import DataError

if TYPE_CHECKING:
    from lepton_platform.models import Preprocessor

__all__ = ["cache_dir", "data_fingerprint", "prepare", "preprocessing_key"]

#: Bump when the layout of prepared files changes, so old cache files are not reused.
PREPARE_FORMAT = 1
_HASH_BATCH = 1000
_memo: dict[str, str] = {}


def cache_dir() -> Path:
    """Where Lepton caches prepared data: ``$LEPTON_CACHE_DIR`` or ``~/.cache/lepton``."""
    configured = os.environ.get("LEPTON_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "lepton"


def data_fingerprint(ds: datasets.Dataset) -> str:
    """A short hash of a dataset's content and features, the same in every process for the
    same rows (however they are stored: in memory, on disk, selected or concatenated).

    Files referred to by path (``Image``/``Audio`` columns stored without bytes, or string
    columns of absolute paths to files) are hashed by path, size and modification time, not by
    their bytes: editing a file in place invalidates cached preprocessing.
    """
    # files can change under the same rows, so datasets referring to files are not memoised
    memo_key = None if _file_columns(ds) else getattr(ds, "_fingerprint", None)
    if memo_key is not None and memo_key in _memo:
        return _memo[memo_key]
    digest = hashlib.sha256()
    digest.update(json.dumps(ds.features.to_dict(), sort_keys=True, default=str).encode())
    digest.update(str(len(ds)).encode())
    arrow = ds.with_format("arrow")
    for start in range(0, len(ds), _HASH_BATCH):
        table = arrow[start : start + _HASH_BATCH].replace_schema_metadata(None)
        # take() copies into fresh buffers: the bytes no longer depend on slicing or chunking
        table = table.take(pa.array(range(table.num_rows))).combine_chunks()
        for batch in table.to_batches():
            digest.update(batch.serialize())
    for stamp in _file_stamps(ds):
        digest.update(stamp.encode())
    fingerprint = digest.hexdigest()[:16]
    if memo_key is not None:
        _memo[memo_key] = fingerprint
    return fingerprint


def _file_columns(ds: datasets.Dataset) -> list[str]:
    """Columns that refer to files: ``Image``/``Audio`` features, or strings whose first value
    is an absolute path to an existing file."""
    found = []
    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Image | datasets.Audio):
            found.append(name)
        elif feature == datasets.Value("string") and len(ds):
            first = ds.with_format("arrow")[:1][name][0].as_py()
            if isinstance(first, str) and os.path.isabs(first) and os.path.isfile(first):
                found.append(name)
    return found


def _file_stamps(ds: datasets.Dataset) -> Iterator[str]:
    """``path:size:mtime`` of every file a row refers to by path (bytes stored inline are
    already part of the content hash)."""
    for column in _file_columns(ds):
        for value in ds.with_format("arrow")[column].to_pylist():
            path = value.get("path") if isinstance(value, dict) else value
            if isinstance(value, dict) and value.get("bytes") is not None:
                continue
            if isinstance(path, str):
                try:
                    info = os.stat(path)
                except OSError:
                    yield f"{path}:missing"
                else:
                    yield f"{path}:{info.st_size}:{info.st_mtime_ns}"


def _code_hash(preprocessor: Preprocessor) -> str:
    """A hash of ``transform``'s source, so that editing it invalidates the cache."""
    try:
        source = inspect.getsource(type(preprocessor).transform)
    except (OSError, TypeError):
        source = ""
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def preprocessing_key(ds: datasets.Dataset, preprocessor: Preprocessor) -> str:
    """The cache key of ``prepare(ds, preprocessor)``: data content plus preprocessing."""
    cls = type(preprocessor)
    description = {
        "format": PREPARE_FORMAT,
        "data": data_fingerprint(ds),
        "preprocessor": preprocessor.fingerprint(),
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "code": _code_hash(preprocessor),
    }
    text = json.dumps(description, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def prepare(
    ds: datasets.Dataset,
    preprocessor: Preprocessor,
    *,
    desc: str | None = None,
    cache: Path | str | None = None,
    batch_size: int = 256,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """Apply ``preprocessor.transform`` to every row, cached.

    The result holds the columns ``transform`` returns plus ``label``, ``domain`` and
    ``group`` where present; the raw input columns are dropped unless ``transform`` returns
    them. ``cache`` overrides :func:`cache_dir`.

        >>> prepared = prepare(bundle.train, backbone.preprocessor())   # doctest: +SKIP
    """
    if not isinstance(ds, datasets.Dataset):
        raise DataError(f"prepare() expects a datasets.Dataset, got {type(ds).__name__}")
    missing = [c for c in preprocessor.input_columns if c not in ds.column_names]
    if missing:
        raise DataError(
            f"{type(preprocessor).__name__} reads column(s) {missing} that the data lacks "
            f"(it has {ds.column_names}); is this backbone for another domain?"
        )
    # map() removes these before adding transform's output, so outputs of the same name stay
    remove = [c for c in ds.column_names if c not in STANDARD_COLUMNS]
    key = preprocessing_key(ds, preprocessor)
    folder = Path(cache) if cache is not None else cache_dir()
    folder = folder / "prepared"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the preprocessing cache folder {folder} ({exc}); set "
            "LEPTON_CACHE_DIR to a writable folder"
        ) from None
    return ds.map(
        preprocessor.transform,
        batched=True,
        batch_size=batch_size,
        writer_batch_size=batch_size,
        remove_columns=remove,
        cache_file_name=str(folder / f"{key}.arrow"),
        load_from_cache_file=True,
        new_fingerprint=key,
        num_proc=num_proc,
        desc=desc or f"Preprocessing ({type(preprocessor).__name__})",
    )
