"""Writing files so that a reader never sees half of one: one place for atomic writes and
checksums.

- :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_write_json`: a
  temporary file in the same folder, flushed, then renamed over the target; the file gets the
  permissions the user's umask gives a new file (not the 0600 of a temporary file).
- :class:`AtomicFolder`: a folder filled under a hidden temporary name and renamed into place
  (a model artifact, a checkpoint); an existing folder of that name is swapped out only once
  the new one is complete.
- :func:`sha256_file`: the checksum manifests record.

Nothing here imports more than the standard library.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = [
    "AtomicFolder",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "file_mode",
    "fsync_dir",
    "sha256_file",
]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The permission bits a new file gets under the process's umask (``0o644`` for 022)."""
    return 0o666 & ~_current_umask()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (a rename) to disk, where the platform allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename: readers see the old
    file or the whole new one. The parent folder is created. Returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(
    path: str | os.PathLike[str], data: Any, *, sort_keys: bool = False, strict: bool = False
) -> Path:
    """:func:`atomic_write_text` of indented JSON. ``strict`` refuses NaN and values JSON has no
    form for; otherwise they are written with ``str``."""
    if strict:
        text = json.dumps(data, indent=2, sort_keys=sort_keys, allow_nan=False)
    else:
        text = json.dumps(data, indent=2, sort_keys=sort_keys, default=str)
    return atomic_write_text(path, text + "\n")


class AtomicFolder:
    """A folder that appears complete or not at all.

    ``with AtomicFolder(target) as folder:`` gives a hidden temporary folder beside ``target``
    (``folder.path``); write into it, then call :meth:`commit` to rename it into place. An
    existing ``target`` is moved aside first and deleted once the new folder is in place (put
    back if the rename fails). Leaving the block without committing, or with an exception,
    removes the temporary folder and leaves ``target`` as it was.
    """

    def __init__(self, target: str | os.PathLike[str], *, tag: str = "") -> None:
        self.target = Path(target)
        suffix = tag or uuid.uuid4().hex[:8]
        self.path = self.target.parent / f".tmp-{self.target.name}-{suffix}"
        self.committed = False

    def __enter__(self) -> Self:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.committed:
            shutil.rmtree(self.path, ignore_errors=True)

    def commit(self) -> Path:
        """Flush every file and rename the folder into place; returns the target."""
        for file in self.path.rglob("*"):
            if file.is_file():
                with open(file, "rb+") as handle:
                    os.fsync(handle.fileno())
        fsync_dir(self.path)
        if self.target.exists():
            old = self.target.parent / f".old-{self.target.name}-{uuid.uuid4().hex[:8]}"
            os.replace(self.target, old)
            try:
                os.replace(self.path, self.target)
            except OSError:
                os.replace(old, self.target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.path, self.target)
        fsync_dir(self.target.parent)
        self.committed = True
        return self.target


def canonicalise_safetensors(path: str | os.PathLike[str]) -> None:
    """Rewrite a safetensors file's JSON header with sorted keys, in place.

    safetensors writes its header (tensor entries and metadata) in hash-map order, so the same
    tensors give different bytes from one process to the next; sorted, identical weights give
    identical files (and checksums that identify a model). The tensor data is not touched."""
    file = Path(path)
    with open(file, "rb") as handle:
        size = int.from_bytes(handle.read(8), "little")
        header = json.loads(handle.read(size))
        data = handle.read()
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-(len(text) + 8) % 8)  # keep the data 8-byte aligned, as safetensors does
    with open(file, "wb") as handle:
        handle.write(len(text).to_bytes(8, "little"))
        handle.write(text)
        handle.write(data)
