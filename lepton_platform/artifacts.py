"""The model folder format: a trained model saved as one folder, written atomically and read
back with every checksum verified.

The folder holds ``model.safetensors`` (the weights: never pickled), ``lepton.json`` (the
manifest: format and platform version, the plugins that provide the domain, backbone and task
with their versions, the backbone and task configs, label names, preprocessing, strategy,
metrics, data fingerprints and the SHA-256 of the weights) and ``metrics.json``.

The manifest's content is protected as well: its digest is stored inside the weights file
(whose digest the manifest records), so editing ``lepton.json`` (reversing the label names,
say) is detected. File names in the manifest are plain names inside the folder.

This module reads and writes the format; rebuilding a model through the registry is the
application layer's :func:`lepton_platform.load`. A backbone plugin takes a Lepton model
folder as its pretrained weights with :func:`load_backbone` (the one way to do it: checksums
verified, the recorded architecture rebuilt, a typed load report)::

    >>> backbone, source = load_backbone(                      # doctest: +SKIP
    ...     "runs/source/model", lambda **config: MyBackbone(**config), {"dropout": 0.1})
    >>> backbone.load_report.share                              # doctest: +SKIP
    1.0
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from lepton_platform._io import AtomicFolder, canonicalise_safetensors, is_plain_name, sha256_file
from lepton_platform._version import __version__
from lepton_platform.errors import ArtifactError

if TYPE_CHECKING:
    import torch

    from lepton_platform.models import Adapter, Backbone

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "METRICS",
    "WEIGHTS",
    "ModelFolder",
    "is_model_folder",
    "load_backbone",
    "read_manifest",
    "read_weights",
    "verify_weights",
    "write_model",
]

#: Version of the folder layout and manifest; a loader refuses newer ones.
FORMAT_VERSION = 1
MANIFEST = "lepton.json"
WEIGHTS = "model.safetensors"
METRICS = "metrics.json"
KIND = "lepton-model"
#: Manifest keys left out of its digest: the weights entry (it holds the weights' digest,
#: which holds the manifest's) and the creation time (so identical runs give identical files).
_UNDIGESTED = ("weights", "created")
_DIGEST_KEY = "lepton_manifest_sha256"
B = TypeVar("B", bound="Backbone")


def is_model_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder holding a Lepton manifest."""
    return (Path(path) / MANIFEST).is_file()


def _json_ready(what: str, value: Any) -> Any:
    try:
        return json.loads(json.dumps(value, allow_nan=False, default=_default))
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{what} is not JSON-ready: {exc}") from None


def _default(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} ({value!r:.60}) cannot be written as JSON")


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """The SHA-256 of the manifest's content (all but the weights entry and the time)."""
    content = {k: v for k, v in manifest.items() if k not in _UNDIGESTED}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def write_model(
    folder: str | os.PathLike[str],
    model: torch.nn.Module,
    manifest: Mapping[str, Any],
) -> Path:
    """Write ``model``'s weights and ``manifest`` (JSON-ready entries: ``domain``,
    ``backbone``, ``task``, ``label_names``, ...; the format fields are added) as one folder
    and return its path.

    An existing model folder at ``folder`` is replaced only once the new one is complete; a
    folder that is not a model folder is never replaced. Errors (unwritable, full) raise
    :class:`ArtifactError` and leave what was there intact."""
    from safetensors import SafetensorError
    from safetensors.torch import save_model as save_weights

    target = Path(folder).expanduser().absolute()
    if (
        target.exists()
        and not is_model_folder(target)
        and (not target.is_dir() or any(target.iterdir()))
    ):
        raise ArtifactError(
            f"{target} exists and is not a Lepton model folder (no {MANIFEST}); "
            "choose another folder or remove it yourself"
        )
    content: dict[str, Any] = {
        "kind": KIND,
        "format_version": FORMAT_VERSION,
        "platform_version": __version__,
        **{k: _json_ready(k, v) for k, v in manifest.items()},
    }
    content["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    digest = manifest_digest(content)
    try:
        with AtomicFolder(target) as tmp:
            weights = tmp.path / WEIGHTS
            save_weights(
                model, str(weights), metadata={"format": "pt", "lepton": KIND, _DIGEST_KEY: digest}
            )
            canonicalise_safetensors(weights)  # identical weights, identical bytes
            content["weights"] = {
                "file": WEIGHTS,
                "sha256": sha256_file(weights),
                "bytes": weights.stat().st_size,
            }
            for name, data in ((METRICS, content.get("metrics", {})), (MANIFEST, content)):
                text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
                (tmp.path / name).write_text(text, encoding="utf-8")
            tmp.commit()
    except (OSError, SafetensorError) as exc:  # safetensors reports I/O errors as its own
        reason = getattr(exc, "strerror", None) or exc
        raise ArtifactError(
            f"cannot write the model to {target}: {reason} "
            f"({type(exc).__name__}); check that the folder is writable and the disk has "
            "room. Anything already there is left as it was"
        ) from exc
    return target


# -- reading -------------------------------------------------------------------------------------


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a saved model, checked for kind, format version and the shape of its
    entries (a malformed one is an :class:`ArtifactError` naming the entry)."""
    path = Path(folder)
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise ArtifactError(f"{path} is not a folder; a Lepton model is a folder with {MANIFEST}")
    if not manifest_path.is_file():
        raise ArtifactError(f"{path} is not a Lepton model folder: {MANIFEST} is missing")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{manifest_path} is unreadable or not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise ArtifactError(f"{manifest_path} is not a Lepton model manifest (kind != {KIND!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ArtifactError(
            f"{manifest_path} has format version {version!r}, written by lepton-platform "
            f"{manifest.get('platform_version')}; this lepton-platform {__version__} reads "
            f"format versions 1 to {FORMAT_VERSION}: upgrade lepton-platform to load it"
        )
    for key in ("domain", "backbone", "task", "weights"):
        entry = manifest.get(key)
        if not isinstance(entry, dict):
            raise ArtifactError(
                f"{manifest_path}: the {key!r} entry is missing or not a mapping; the file is "
                "damaged"
            )
    for key in ("domain", "backbone", "task"):
        if not isinstance(manifest[key].get("name"), str):
            raise ArtifactError(f"{manifest_path}: {key}.name must be a registered name")
        if not isinstance(manifest[key].get("config", {}), dict):
            raise ArtifactError(f"{manifest_path}: {key}.config must be a mapping")
    names = manifest.get("label_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not names:
        raise ArtifactError(f"{manifest_path}: label_names must be a non-empty list of strings")
    if len(set(names)) != len(names):
        raise ArtifactError(f"{manifest_path}: label_names {names} name a label twice")
    for key in ("preprocessing", "strategy", "metrics", "data_fingerprints", "plugins", "extra"):
        if key in manifest and not isinstance(manifest[key], dict):
            raise ArtifactError(
                f"{manifest_path}: {key} must be a mapping, got {type(manifest[key]).__name__}"
            )
    weights = manifest["weights"]
    file = weights.get("file", WEIGHTS)
    if not is_plain_name(file):
        raise ArtifactError(
            f"{manifest_path}: weights.file {file!r} must be a plain file name inside the folder"
        )
    if not isinstance(weights.get("sha256"), str) or not _SHA256.match(weights["sha256"]):
        raise ArtifactError(
            f"{manifest_path}: weights.sha256 must be the 64 hex digits of the weights' SHA-256, "
            f"got {weights.get('sha256')!r:.80}"
        )
    size = weights.get("bytes")
    if "bytes" in weights and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ArtifactError(
            f"{manifest_path}: weights.bytes must be the weights' size in bytes, got {size!r:.80}"
        )
    return manifest


def verify_weights(folder: str | os.PathLike[str], manifest: Mapping[str, Any]) -> Path:
    """The weights file, after checking its size and SHA-256 against the manifest and the
    manifest's own digest against the one stored in the weights. Raises
    :class:`ArtifactError` naming the file that was altered."""
    from safetensors import safe_open

    base = Path(folder)
    info = manifest["weights"]
    weights = base / str(info.get("file", WEIGHTS))
    if not weights.is_file():
        raise ArtifactError(f"{weights} is missing; the model folder is incomplete")
    size = weights.stat().st_size
    if isinstance(info.get("bytes"), int) and size != info["bytes"]:
        raise ArtifactError(
            f"{weights} has {size} bytes but the manifest says {info['bytes']}: the file is "
            "truncated or was replaced; save the model again"
        )
    digest = sha256_file(weights)
    if digest != info.get("sha256"):
        raise ArtifactError(
            f"{weights} does not match the SHA-256 in {MANIFEST} ({digest[:12]}... != "
            f"{str(info.get('sha256'))[:12]}...): the file is corrupted or was tampered with"
        )
    try:
        with safe_open(str(weights), framework="pt") as handle:
            stored = (handle.metadata() or {}).get(_DIGEST_KEY)
    except Exception as exc:  # safetensors raises its own error types
        raise ArtifactError(f"{weights} is not a readable safetensors file: {exc}") from exc
    if stored != manifest_digest(manifest):
        raise ArtifactError(
            f"{base / MANIFEST} was edited after the model was saved (its content no longer "
            f"matches the digest stored in {weights.name}): label names, preprocessing or "
            "architecture may not be what the weights were trained with. Save the model again"
        )
    return weights


@dataclass(frozen=True)
class ModelFolder:
    """A Lepton model folder read with every checksum verified: its manifest and weights."""

    path: Path
    manifest: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    def state(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """The tensors whose names start with ``prefix``, without it (``"backbone."``: the
        backbone's state dict)."""
        return {k[len(prefix) :]: v for k, v in self.tensors.items() if k.startswith(prefix)}

    @property
    def backbone_name(self) -> str:
        return str(self.manifest["backbone"]["name"])

    @property
    def backbone_config(self) -> dict[str, Any]:
        """The options that rebuild the saved backbone's architecture."""
        return dict(self.manifest["backbone"].get("config", {}))

    @property
    def preprocessing(self) -> dict[str, Any]:
        return dict(self.manifest.get("preprocessing", {}))

    @property
    def label_names(self) -> list[str]:
        return [str(n) for n in self.manifest["label_names"]]


def read_weights(folder: str | os.PathLike[str]) -> ModelFolder:
    """Read a Lepton model folder: the manifest checked, the weights' and the manifest's
    checksums verified, the tensors loaded (nothing is unpickled). A tampered or truncated file
    is an :class:`ArtifactError` naming it."""
    from safetensors.torch import load_file

    path = Path(folder).expanduser().absolute()
    manifest = read_manifest(path)
    weights = verify_weights(path, manifest)
    try:
        tensors = dict(load_file(str(weights), device="cpu"))
    except Exception as exc:
        raise ArtifactError(f"cannot read the tensors of {weights}: {exc}") from exc
    return ModelFolder(path=path, manifest=manifest, tensors=tensors)


def source_head(
    folder: str | os.PathLike[str], task_config: Mapping[str, Any], label_names: Sequence[str]
) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The head's state dict of a Lepton model folder (checksums verified) when it was
    trained for the task ``task_config`` describes on ``label_names``; else ``None`` and the
    reason, in words."""
    source = read_weights(folder)
    task = source.manifest.get("task") or {}
    if source.label_names != [str(n) for n in label_names] or task.get("config") != dict(
        task_config
    ):
        return None, (
            f"the source model {source.path} was trained for {task.get('name')!r} on the labels "
            f"{source.label_names}, not on {list(label_names)} with this task's configuration"
        )
    state = source.state("head.")
    if not state:
        return None, f"{source.path / WEIGHTS} holds no 'head.' weights"
    return state, ""


def load_backbone(
    folder: str | os.PathLike[str],
    build: Callable[..., B],
    options: Mapping[str, Any] | None = None,
    *,
    adapt: Adapter | None = None,
) -> tuple[B, ModelFolder]:
    """The backbone of a Lepton model folder, for a plugin's ``pretrained=<folder>``.

    The folder is read with every checksum verified (:func:`read_weights`); ``build(**config)``
    makes the backbone with random weights from the recorded backbone config updated by
    ``options`` (what the caller asks for now wins); the saved ``backbone.`` tensors are loaded
    into it (``adapt`` may reshape one of another shape) and the
    :class:`~lepton_platform.models.LoadReport` is set as ``backbone.load_report``. Returns the
    backbone and the folder read (its manifest holds the source's preprocessing).

    A folder saved with a backbone whose options ``build`` does not take (another plugin's)
    is refused naming it."""
    from lepton_platform.models import load_matching

    source = read_weights(folder)
    config = {**source.backbone_config, **dict(options or {})}
    try:
        backbone = build(**config)
    except TypeError as exc:
        provider = source.manifest["backbone"].get("provider") or {}
        raise ArtifactError(
            f"{source.path}: the model there was built on backbone {source.backbone_name!r} "
            f"(from {provider.get('distribution') or 'an unknown plugin'}), whose recorded "
            f"options this backbone does not take ({exc}); transfer from it with a backbone of "
            "that plugin"
        ) from None
    state = source.state("backbone.")
    if not state:
        raise ArtifactError(f"{source.path / WEIGHTS}: holds no 'backbone.' weights")
    backbone.load_report = load_matching(backbone, state, source=str(source.path), adapt=adapt)
    return backbone, source
