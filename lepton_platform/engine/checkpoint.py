"""Training checkpoints: written atomically, verified by checksum, never unpickled.

A checkpoint is one folder under ``<output_dir>/checkpoints``::

    step-00000012/            (``step-00000012-end`` when written at the end of an epoch)
        manifest.json         format version, and the sha256 and size of every other file
        model.safetensors     the weights (tied tensors stored once, aliases in the metadata)
        optimizer.safetensors optimiser state tensors, keyed ``<param index>/<name>``
        optimizer.json        parameter groups and the non-tensor state
        scheduler.json        learning-rate scheduler state
        rng-<rank>.json       python and numpy RNG states of each process
        rng-<rank>.safetensors torch (and CUDA) RNG states of each process
        trainer.json          position in the data, history, best score, config, fingerprints

Files are written into a hidden temporary folder, flushed, then the folder is renamed into
place, so a run killed at any moment leaves either the whole checkpoint or none of it. Tensors
go through safetensors and everything else through JSON: loading a checkpoint runs no code. A
write that fails (a full disk, a read-only folder, safetensors' own error) is a
:class:`~lepton_platform._io.WriteError` naming the file, and leaves every earlier checkpoint
as it was.

The manifest also records what makes a resumed run bit-exact besides the checkpoint itself:
the thread count, the libraries whose versions change numerics, the accelerator.
:func:`verify_checkpoint` warns when a run resumes under others (the result is then close to,
not identical with, an uninterrupted run's).
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from lepton_platform._io import (
    AtomicFolder,
    canonicalise_safetensors,
    is_plain_name,
    recover_folders,
    sha256_file,
    writing,
)
from lepton_platform.errors import ArtifactError

__all__ = [
    "CHECKPOINT_FORMAT",
    "BackgroundWrites",
    "CheckpointWriter",
    "SafetensorError",
    "checkpoint_sort_key",
    "copied",
    "environment",
    "environment_differences",
    "latest_checkpoint",
    "list_checkpoints",
    "load_json",
    "load_model_file",
    "load_optimizer_state",
    "load_rng",
    "model_tensors",
    "optimizer_tensors",
    "prune_checkpoints",
    "read_tensors",
    "remove_temporary",
    "rng_to_files",
    "save_model_file",
    "verify_checkpoint",
    "write_model_tensors",
]

CHECKPOINT_FORMAT = 1
MANIFEST = "manifest.json"
_NAME = re.compile(r"^step-(\d{8})(-end)?$")


# ----------------------------------------------------------------------------- listing


def checkpoint_sort_key(path: Path) -> tuple[int, int]:
    match = _NAME.match(path.name)
    if match is None:
        return (-1, -1)
    return (int(match.group(1)), 1 if match.group(2) else 0)


def list_checkpoints(directory: Path) -> list[Path]:
    """Finished checkpoints in ``directory``, oldest first (temporary folders are ignored)."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and _NAME.match(p.name)]
    return sorted(found, key=checkpoint_sort_key)


def latest_checkpoint(directory: Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def prune_checkpoints(directory: Path, keep: int | None) -> None:
    """Delete all but the newest ``keep`` checkpoints (``None`` keeps all)."""
    if keep is None:
        return
    for old in list_checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- environment

#: Libraries whose versions change what a training step computes (kernels, model code,
#: transforms); recorded when already imported (recording one imports nothing).
NUMERIC_LIBRARIES = ("torch", "numpy", "transformers", "torchvision", "torchaudio", "timm", "peft")


def environment() -> dict[str, Any]:
    """What besides the checkpoint decides whether a resumed run is bit-exact: the thread
    count, deterministic algorithms, the versions of the numeric libraries, Python and the
    machine, and CUDA with its device when CUDA is in use."""
    env: dict[str, Any] = {
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    for name in NUMERIC_LIBRARIES:
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None)
        if version is not None:
            env[name] = str(version)
    if torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()  # type: ignore[no-untyped-call]
        env["cuda_device"] = torch.cuda.get_device_name(torch.cuda.current_device())
    return env


def environment_differences(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """``threads: 1 when saved, 2 now`` for each entry that differs (CUDA used on one side
    only counts; a library imported on one side only computes nothing of this run)."""
    out = []
    for key in sorted(set(saved) | set(now)):
        if key in NUMERIC_LIBRARIES and (key not in saved or key not in now):
            continue
        before, after = saved.get(key, "none"), now.get(key, "none")
        if before != after:
            out.append(f"{key}: {before} when saved, {after} now")
    return out


_warned: set[tuple[str, ...]] = set()


def _warn_if_not_exact(path: Path, manifest: Mapping[str, Any]) -> None:
    saved = manifest.get("environment")
    if not isinstance(saved, Mapping):
        return  # written before environments were recorded
    differences = environment_differences(saved, environment())
    if differences and tuple(differences) not in _warned:
        _warned.add(tuple(differences))
        warnings.warn(
            f"resuming from {path} under another environment ({'; '.join(differences)}): the "
            "run continues, but its result will not be bit-exact with an uninterrupted run. "
            "Resume with the original settings (e.g. the thread count: OMP_NUM_THREADS, "
            "torch.set_num_threads) for an identical result",
            stacklevel=3,
        )


# ----------------------------------------------------------------------------- checksums


def verify_checkpoint(path: Path) -> dict[str, Any]:
    """Check every file against the manifest; return the manifest. Warns (once per
    difference) when the checkpoint was written under another environment (thread count,
    library versions, accelerator): a run resumed from it is not bit-exact.

    Raises :class:`ArtifactError` naming the file when one is missing, truncated or altered."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ArtifactError(
            f"checkpoint {path} has no {MANIFEST}: it is incomplete or not a Lepton checkpoint; "
            "delete this folder to resume from the one before it"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        files: dict[str, dict[str, Any]] = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"checkpoint manifest {manifest_path} is unreadable: {exc}") from exc
    if manifest.get("format") != CHECKPOINT_FORMAT:
        raise ArtifactError(
            f"checkpoint {path} has format {manifest.get('format')!r}; this Lepton reads "
            f"format {CHECKPOINT_FORMAT}"
        )
    if not isinstance(files, dict) or not all(
        isinstance(e, dict) and isinstance(e.get("bytes"), int) and isinstance(e.get("sha256"), str)
        for e in files.values()
    ):
        raise ArtifactError(f"checkpoint manifest {manifest_path} is malformed; delete {path}")
    for name, entry in files.items():
        file = path / name
        if not is_plain_name(name):
            raise ArtifactError(
                f"checkpoint manifest {manifest_path} names {name!r}, not a plain file name in "
                f"the checkpoint folder; delete {path}"
            )
        if not file.is_file():
            raise ArtifactError(f"checkpoint file {file} listed in the manifest is missing")
        size = file.stat().st_size
        if size != entry["bytes"]:
            raise ArtifactError(
                f"checkpoint file {file} is truncated or altered: {size} bytes, the manifest "
                f"says {entry['bytes']}; delete {path} to resume from an earlier checkpoint"
            )
        if sha256_file(file) != entry["sha256"]:
            raise ArtifactError(
                f"checkpoint file {file} does not match its sha256 in {manifest_path} (tampered "
                f"with or corrupted); delete {path} to resume from an earlier checkpoint"
            )
    _warn_if_not_exact(path, manifest)
    return dict(manifest)


# ----------------------------------------------------------------------------- writing


def remove_temporary(directory: Path) -> list[str]:
    """Tidy what a run killed while writing left behind: half-written temporary folders are
    deleted, and a checkpoint moved aside while its replacement was renamed in (``best``) is
    put back when the replacement is missing. Returns what was done, in words."""
    return recover_folders(directory)


class CheckpointWriter(AtomicFolder):
    """Collects files in a temporary folder and renames it into place on :meth:`commit`, with a
    manifest of every file's checksum. Every process of a run writes into the same temporary
    folder (its own RNG state); the main process opens and commits it.

    Used as a context manager: leaving it with an exception removes the temporary folder and
    leaves every earlier checkpoint untouched."""

    def __init__(self, final: Path) -> None:
        super().__init__(final, tag="writing")
        self.final = final
        self.tmp = self.path

    def write_json(self, name: str, data: Any) -> None:
        text = json.dumps(data, indent=1, allow_nan=False)
        with writing(self.final / name):
            (self.path / name).write_text(text)

    def write_tensors(
        self, name: str, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]
    ) -> None:
        with writing(self.final / name):  # safetensors reports a full disk as its own error
            save_file(
                {k: v.detach().contiguous().cpu() for k, v in tensors.items()},
                str(self.path / name),
                metadata=dict(metadata),
            )
            canonicalise_safetensors(self.path / name)

    def commit(self, extra: Mapping[str, Any] | None = None) -> Path:
        """Write the manifest (a sha256 per file, and the :func:`environment`), flush, and
        rename the folder into place."""
        files = {}
        for file in sorted(self.path.iterdir()):
            if file.name == MANIFEST or not file.is_file():
                continue
            files[file.name] = {"sha256": sha256_file(file), "bytes": file.stat().st_size}
        manifest = {
            "format": CHECKPOINT_FORMAT,
            "files": files,
            "environment": environment(),
            **(extra or {}),
        }
        with writing(self.final / MANIFEST):
            (self.path / MANIFEST).write_text(json.dumps(manifest, indent=1))
        return super().commit()


class BackgroundWrites:
    """Checkpoint files written on a worker thread, one checkpoint at a time, while training
    goes on: :meth:`submit` waits for the previous write, :meth:`wait` for the current one
    and re-raises what it raised. ``seconds`` adds up the time the writes took (off the
    training thread).

    The wait is on an event the worker sets when it is done, not on ``Thread.join``: a join
    interrupted by Ctrl-C or SIGTERM marks the thread finished on Python 3.11 while it still
    runs, so the wait after an interruption would return at once and the process would exit
    in the middle of a write."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._error: BaseException | None = None
        self.seconds = 0.0

    def submit(self, write: Callable[[], None]) -> None:
        self.wait()
        self._done.clear()
        self._thread = threading.Thread(
            target=self._run, args=(write,), name="lepton-checkpoint", daemon=True
        )
        self._thread.start()

    def _run(self, write: Callable[[], None]) -> None:
        started = time.perf_counter()
        try:
            write()
        except BaseException as exc:  # handed to the training thread at the next wait
            self._error = exc
        finally:
            self.seconds += time.perf_counter() - started
            self._done.set()

    @property
    def pending(self) -> bool:
        return self._thread is not None

    def wait(self) -> None:
        if self._thread is not None:
            self._done.wait()  # an interruption here leaves the write pending: wait again
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def copied(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU copies that training may not change while a background write reads them."""
    return {k: v.detach().to("cpu", copy=True) for k, v in tensors.items()}


# ----------------------------------------------------------------------------- tensors


def model_tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The state dict with tied tensors stored once; ``aliases`` maps a dropped key to the kept
    one."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, int, tuple[int, ...], tuple[int, ...]], str] = {}
    for key, value in model.state_dict().items():
        ident = (
            value.untyped_storage().data_ptr(),
            value.storage_offset(),
            tuple(value.shape),
            tuple(value.stride()),
        )
        if value.numel() and ident in seen:
            aliases[key] = seen[ident]
            continue
        seen[ident] = key
        tensors[key] = value
    return tensors, aliases


def save_model_file(writer: CheckpointWriter, name: str, model: nn.Module) -> None:
    tensors, aliases = model_tensors(model)
    write_model_tensors(writer, name, tensors, aliases)


def write_model_tensors(
    writer: CheckpointWriter,
    name: str,
    tensors: Mapping[str, torch.Tensor],
    aliases: Mapping[str, str],
) -> None:
    """The file :func:`save_model_file` writes, from tensors taken earlier by
    :func:`model_tensors`."""
    writer.write_tensors(name, tensors, {"aliases": json.dumps(dict(aliases))})


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file (no code runs while reading)."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types
        raise ArtifactError(f"cannot read tensors from {path}: {exc}") from exc
    return tensors, metadata


def load_model_file(path: Path, model: nn.Module) -> None:
    """Load weights saved by :func:`save_model_file`; a shape or key mismatch is named."""
    tensors, metadata = read_tensors(path)
    for alias, kept in json.loads(metadata.get("aliases", "{}")).items():
        tensors[alias] = tensors[kept]
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(
            f"the weights in {path} do not fit this model (another architecture or head?): {exc}"
        ) from exc


def optimizer_tensors(
    state_dict: Mapping[str, Any],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimiser state dict into tensors and a JSON-ready rest."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in state_dict["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}/{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def load_optimizer_state(tensor_path: Path, json_path: Path) -> dict[str, Any]:
    tensors, _ = read_tensors(tensor_path)
    rest = load_json(json_path)
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        index, name = key.split("/", 1)
        state.setdefault(int(index), {})[name] = value
    for index, entries in rest["scalars"].items():
        state.setdefault(int(index), {}).update(entries)
    return {"state": state, "param_groups": rest["param_groups"]}


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read {path}: {exc}") from exc


# ----------------------------------------------------------------------------- RNG


def rng_to_files(state: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """RNG states as JSON (python, numpy) and tensors (torch, CUDA)."""
    version, internal, gauss = state["python"]
    kind, keys, pos, has_gauss, cached = state["numpy"]
    data = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
    }
    tensors = {"torch": state["torch"]}
    for i, cuda_state in enumerate(state.get("cuda", [])):
        tensors[f"cuda.{i}"] = cuda_state
    return data, tensors


def load_rng(json_path: Path, tensor_path: Path) -> dict[str, Any]:
    data = load_json(json_path)
    tensors, _ = read_tensors(tensor_path)
    version, internal, gauss = data["python"]
    kind, keys, pos, has_gauss, cached = data["numpy"]
    state: dict[str, Any] = {
        "python": (version, tuple(internal), gauss),
        "numpy": (kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached),
        "torch": tensors["torch"],
    }
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda.")]
    if cuda:
        state["cuda"] = cuda
    return state
