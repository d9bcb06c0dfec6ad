"""Writing files so that a reader never sees half of one: one place for atomic writes and
checksums.

- :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_write_json`: a
  temporary file in the same folder, flushed, then renamed over the target; the file gets the
  permissions the user's umask gives a new file (not the 0600 of a temporary file).
- :class:`AtomicFolder`: a folder filled under a hidden temporary name and renamed into place
  (a model artifact, a checkpoint); an existing folder of that name is swapped out only once
  the new one is complete.
- :func:`sha256_file`: the checksum manifests record; :func:`is_plain_name`: whether a file
  name a manifest gives stays inside its folder.
- :class:`WriteError`: what every write here raises when the system refuses it (a full disk,
  a read-only or unwritable folder): an ``OSError`` whose message names the path, the reason
  and what to do; :func:`write_error` makes one from another library's error (safetensors
  reports I/O failures as its own ``SafetensorError``).
- :func:`recover_folders`: after a kill, put back a folder that was moved aside while its
  replacement was renamed in, and delete half-written temporary folders and files.

Nothing here imports more than the standard library.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = [
    "AtomicFolder",
    "WriteError",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "file_mode",
    "fsync_dir",
    "is_plain_name",
    "recover_folders",
    "sha256_file",
    "write_error",
    "writing",
]

_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def is_plain_name(name: object) -> bool:
    """Whether ``name`` is a plain file name (letters, digits, ``.``, ``_``, ``-``; no folder,
    no ``..``, not hidden): what a manifest may name, so that it never points outside its
    folder."""
    return isinstance(name, str) and bool(_PLAIN_NAME.match(name))


_ADVICE = {
    errno.ENOSPC: "free space on that disk, or write elsewhere",
    errno.EDQUOT: "free space within your quota, or write elsewhere",
    errno.EFBIG: "a full disk or a file-size limit: free space, or write elsewhere",
    errno.EROFS: "write elsewhere",
    errno.EACCES: "fix the folder's permissions, or write elsewhere",
    errno.EPERM: "fix the folder's permissions, or write elsewhere",
    errno.ENOTDIR: "a file stands where a folder should be",
    errno.EISDIR: "a folder stands where the file should be",
}


class WriteError(OSError):
    """Writing ``filename`` failed: ``str()`` names the path, the reason and what to do, and
    says that what was there before is untouched (every write here is atomic). ``errno`` is
    the system's error number when it is known."""

    def __init__(self, path: str | os.PathLike[str], cause: BaseException) -> None:
        code = _errno_of(cause)
        reason = os.strerror(code) if code is not None else _one_line(cause)
        advice = _ADVICE.get(code) if code is not None else None
        self.message = (
            f"cannot write {os.fspath(path)}: {reason}"
            + (f" ({advice})" if advice else "")
            + "; what was there before is left as it was"
        )
        super().__init__(code or 0, reason, os.fspath(path))

    def __str__(self) -> str:
        return self.message


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def _errno_of(exc: BaseException) -> int | None:
    """The errno of an ``OSError``, or the one another library's message carries
    (safetensors: ``I/O error: No space left on device (os error 28)``)."""
    if isinstance(exc, OSError) and exc.errno:
        return int(exc.errno)
    text = str(exc)
    for pattern in (r"\bcode: (\d+)", r"\(os error (\d+)\)", r"\[Errno (\d+)\]"):
        match = re.search(pattern, text)
        if match:
            return int(match.group(1))
    return None


def _is_write_failure(exc: BaseException) -> bool:
    """An ``OSError``, or safetensors' own error (its type is not imported here)."""
    return isinstance(exc, OSError) or type(exc).__name__ == "SafetensorError"


def write_error(path: str | os.PathLike[str], exc: BaseException) -> WriteError:
    """``exc`` (an ``OSError``, a ``SafetensorError``) as a :class:`WriteError` for ``path``;
    one already is returned as it is."""
    return exc if isinstance(exc, WriteError) else WriteError(path, exc)


@contextlib.contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a failed write inside the block (an ``OSError``, safetensors' error) into a
    :class:`WriteError` naming ``path``."""
    try:
        yield
    except BaseException as exc:
        if _is_write_failure(exc):
            raise write_error(path, exc) from exc
        raise


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
    with writing(target):
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
        with writing(self.target):
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
        with writing(self.target):
            return self._commit()

    def _commit(self) -> Path:
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


def recover_folders(parent: str | os.PathLike[str]) -> list[str]:
    """Tidy ``parent`` after a process was killed while writing into it; returns what was done,
    in words. A folder moved aside (``.old-NAME-*``) while its replacement was renamed in is
    put back when ``NAME`` is missing (the kill came between the two renames) and deleted
    otherwise; half-written temporary folders (``.tmp-*``) and files (``.NAME.*.tmp``) are
    deleted. Call it only while no other process writes into ``parent``."""
    base = Path(parent)
    done: list[str] = []
    if not base.is_dir():
        return done
    for entry in sorted(base.iterdir()):
        name = entry.name
        try:
            if entry.is_dir() and name.startswith(".old-"):
                original = base / name[len(".old-") :].rsplit("-", 1)[0]
                if not original.exists():
                    os.replace(entry, original)
                    done.append(f"put back {original} (moved aside when a write was killed)")
                else:
                    shutil.rmtree(entry)
                    done.append(f"deleted {entry} (an old copy already replaced)")
            elif entry.is_dir() and name.startswith(".tmp-"):
                shutil.rmtree(entry)
                done.append(f"deleted {entry} (a folder left half-written)")
            elif entry.is_file() and name.startswith(".") and name.endswith(".tmp"):
                entry.unlink()
                done.append(f"deleted {entry} (a file left half-written)")
        except OSError:  # another process tidied it, or it cannot be: leave it
            continue
    return done


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
