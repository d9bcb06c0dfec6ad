"""Model artifacts: a trained model saved as one folder, and loaded back through the registry.

The folder holds ``model.safetensors`` (the weights: never pickled), ``lepton.json`` (the
manifest: format and platform version, the plugins that provide the domain, backbone and task
with their versions, the backbone and task configs, label names, preprocessing, strategy,
metrics, data fingerprints and the SHA-256 of the weights) and ``metrics.json``.

It is written atomically: into a temporary folder beside the destination, then renamed, so a
reader sees the old artifact or the new one, never half of one::

    >>> save_model("runs/cats", model, domain="image", backbone="resnet18",  # doctest: +SKIP
    ...            backbone_config=model.backbone.config(), task="classification", ...)
    >>> predictor = load("runs/cats")                                       # doctest: +SKIP
    >>> predictor.predict(["photo.jpg"])[0].label                          # doctest: +SKIP
    'cat'
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lepton_platform._version import __version__
from lepton_platform.errors import ArtifactError, LeptonError, UnknownNameError
from lepton_platform.registry import (
    create_backbone,
    create_domain,
    create_task,
    get_backbone,
    get_domain,
    get_task,
)

if TYPE_CHECKING:
    import datasets
    import numpy as np
    import torch

    from lepton_platform.domains import Domain
    from lepton_platform.models import TransferModel
    from lepton_platform.specs import Spec
    from lepton_platform.tasks import Task

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "METRICS",
    "WEIGHTS",
    "Prediction",
    "Predictor",
    "load",
    "read_manifest",
    "save_model",
]

#: Version of the folder layout and manifest; a loader refuses newer ones.
FORMAT_VERSION = 1
MANIFEST = "lepton.json"
WEIGHTS = "model.safetensors"
METRICS = "metrics.json"
_KIND = "lepton-model"
_STANDARD_COLUMNS = ("label", "domain", "group")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _provider_json(spec: Spec) -> dict[str, Any]:
    provider = spec.provider
    if provider is None:
        return {"distribution": None, "version": None, "plugin": None}
    return {
        "distribution": provider.distribution,
        "version": provider.version,
        "plugin": provider.plugin,
    }


def _write_json(path: Path, data: Any) -> None:
    with path.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, allow_nan=False)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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


def save_model(
    folder: str | os.PathLike[str],
    model: TransferModel,
    *,
    domain: str,
    backbone: str,
    backbone_config: Mapping[str, Any],
    task: str,
    task_config: Mapping[str, Any],
    label_names: Sequence[str],
    preprocessing: Mapping[str, Any],
    strategy: Mapping[str, Any],
    metrics: Mapping[str, Any],
    data_fingerprints: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Save a trained model as one folder and return its path.

    ``domain``, ``backbone`` and ``task`` are registered names; the configs are what their
    factories take to rebuild the same architecture (``backbone.config()``, ``task.config()``).
    An existing artifact at ``folder`` is replaced only once the new one is complete; a folder
    that is not a Lepton artifact is never replaced. Errors (unwritable, full) raise
    :class:`ArtifactError` and leave what was there intact.
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_model as save_weights

    target = Path(folder).expanduser().absolute()
    if (
        target.exists()
        and not (target / MANIFEST).is_file()
        and (not target.is_dir() or any(target.iterdir()))
    ):
        raise ArtifactError(
            f"{target} exists and is not a Lepton model folder (no {MANIFEST}); "
            "choose another folder or remove it yourself"
        )
    specs = {}
    for kind, name, getter in (
        ("domain", domain, get_domain),
        ("backbone", backbone, get_backbone),
        ("task", task, get_task),
    ):
        try:
            specs[kind] = getter(name)
        except UnknownNameError as exc:
            raise ArtifactError(
                f"cannot save: {exc}; a model is saved under registered names so that "
                "load() can rebuild it"
            ) from None
    names = [str(n) for n in label_names]
    manifest: dict[str, Any] = {
        "kind": _KIND,
        "format_version": FORMAT_VERSION,
        "platform_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "domain": {"name": domain, "provider": _provider_json(specs["domain"])},
        "backbone": {
            "name": backbone,
            "config": _json_ready("backbone_config", dict(backbone_config)),
            "provider": _provider_json(specs["backbone"]),
        },
        "task": {
            "name": task,
            "config": _json_ready("task_config", dict(task_config)),
            "provider": _provider_json(specs["task"]),
        },
        "label_names": names,
        "preprocessing": _json_ready("preprocessing", dict(preprocessing)),
        "strategy": _json_ready("strategy", dict(strategy)),
        "metrics": _json_ready("metrics", dict(metrics)),
        "data_fingerprints": _json_ready("data_fingerprints", dict(data_fingerprints)),
        "extra": _json_ready("extra", dict(extra or {})),
    }
    manifest["plugins"] = {
        entry["provider"]["distribution"]: entry["provider"]["version"]
        for entry in (manifest["domain"], manifest["backbone"], manifest["task"])
        if entry["provider"]["distribution"]
    }

    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        weights = tmp / WEIGHTS
        save_weights(model, str(weights), metadata={"format": "pt", "lepton": _KIND})
        with weights.open("rb+") as handle:
            os.fsync(handle.fileno())
        manifest["weights"] = {
            "file": WEIGHTS,
            "sha256": _sha256(weights),
            "bytes": weights.stat().st_size,
        }
        _write_json(tmp / METRICS, manifest["metrics"])
        _write_json(tmp / MANIFEST, manifest)
        _fsync_dir(tmp)
        _replace(tmp, target)
    except (OSError, SafetensorError) as exc:  # safetensors reports I/O errors as its own
        shutil.rmtree(tmp, ignore_errors=True)
        reason = getattr(exc, "strerror", None) or exc
        raise ArtifactError(
            f"cannot write the model to {target}: {reason} "
            f"({type(exc).__name__}); check that the folder is writable and the disk has "
            "room. Anything already there is left as it was"
        ) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _replace(tmp: Path, target: Path) -> None:
    """Move the finished ``tmp`` folder to ``target``; an old artifact there is swapped out
    first and deleted only after the new one is in place (restored if the move fails)."""
    if not target.exists():
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        return
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except OSError:
        os.replace(old, target)
        raise
    _fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


# -- loading -------------------------------------------------------------------------------------


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a saved model, checked for kind and format version."""
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
    if not isinstance(manifest, dict) or manifest.get("kind") != _KIND:
        raise ArtifactError(f"{manifest_path} is not a Lepton model manifest (kind != {_KIND!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ArtifactError(
            f"{manifest_path} has format version {version!r}, written by lepton-platform "
            f"{manifest.get('platform_version')}; this lepton-platform {__version__} reads "
            f"format versions 1 to {FORMAT_VERSION}: upgrade lepton-platform to load it"
        )
    for key in ("domain", "backbone", "task", "label_names", "weights"):
        if key not in manifest:
            raise ArtifactError(f"{manifest_path} lacks the {key!r} entry; the file is damaged")
    return manifest


def _verify_weights(folder: Path, manifest: Mapping[str, Any]) -> Path:
    info = manifest["weights"]
    weights = folder / str(info.get("file", WEIGHTS))
    if not weights.is_file():
        raise ArtifactError(f"{weights} is missing; the model folder is incomplete")
    size = weights.stat().st_size
    if isinstance(info.get("bytes"), int) and size != info["bytes"]:
        raise ArtifactError(
            f"{weights} has {size} bytes but the manifest says {info['bytes']}: the file is "
            "truncated or was replaced; save the model again"
        )
    digest = _sha256(weights)
    if digest != info.get("sha256"):
        raise ArtifactError(
            f"{weights} does not match the SHA-256 in {MANIFEST} ({digest[:12]}... != "
            f"{str(info.get('sha256'))[:12]}...): the file is corrupted or was tampered with"
        )
    return weights


def _missing_plugin(kind: str, entry: Mapping[str, Any], exc: Exception) -> ArtifactError:
    provider = entry.get("provider") or {}
    dist = provider.get("distribution")
    version = provider.get("version")
    if dist:
        wanted = f"{dist}=={version}" if version else dist
        hint = (
            f"it came from the plugin distribution {dist!r} (version {version}): install it "
            f"(pip install {wanted!r}), or check that LEPTON_PLUGINS / LEPTON_DISABLE_PLUGINS "
            "do not exclude it"
        )
    else:
        hint = "the manifest does not say which plugin provided it"
    return ArtifactError(
        f"this model needs the {kind} {entry.get('name')!r}, which is not registered ({exc}); "
        f"{hint}"
    )


def _check_versions(manifest: Mapping[str, Any], specs: Mapping[str, Spec]) -> None:
    for kind, spec in specs.items():
        saved = (manifest[kind].get("provider") or {}).get("version")
        have = spec.provider.version if spec.provider else None
        if saved and have and saved != have:
            warnings.warn(
                f"the model's {kind} {spec.name!r} was saved with "
                f"{spec.provider.distribution if spec.provider else '?'} {saved}, "
                f"this process has {have}; predictions may differ",
                stacklevel=3,
            )


def load(path: str | os.PathLike[str], *, device: str = "cpu") -> Predictor:
    """Load a saved model folder and return a :class:`Predictor`.

    Checks the manifest and the weights' checksum, rebuilds the backbone (``pretrained=None``)
    and the head through the registry, then loads the safetensors weights (nothing is
    unpickled). A missing plugin is named with the distribution to install.
    """
    from safetensors.torch import load_model as load_weights

    from lepton_platform.models import TransferModel

    folder = Path(path).expanduser().absolute()
    manifest = read_manifest(folder)
    weights = _verify_weights(folder, manifest)
    specs: dict[str, Spec] = {}
    for kind, getter in (("domain", get_domain), ("backbone", get_backbone), ("task", get_task)):
        entry = manifest[kind]
        try:
            specs[kind] = getter(str(entry["name"]))
        except UnknownNameError as exc:
            raise _missing_plugin(kind, entry, exc) from None
    _check_versions(manifest, specs)
    label_names = [str(n) for n in manifest["label_names"]]
    try:
        domain = create_domain(manifest["domain"]["name"])
        backbone = create_backbone(
            manifest["backbone"]["name"], pretrained=None, **manifest["backbone"].get("config", {})
        )
        task = create_task(
            manifest["task"]["name"],
            label_names=label_names,
            **manifest["task"].get("config", {}),
        )
    except LeptonError as exc:
        raise ArtifactError(
            f"cannot rebuild the model saved in {folder}: {exc} (the installed plugins may be "
            f"incompatible with the ones it was saved with: {manifest.get('plugins')})"
        ) from exc
    model = TransferModel(backbone, task.build_head(backbone.feature_dim))
    try:
        missing, unexpected = load_weights(model, str(weights), strict=False, device="cpu")
    except Exception as exc:  # safetensors raises RuntimeError on shape mismatch / bad header
        raise ArtifactError(
            f"cannot load {weights} into the rebuilt model: {exc}; the backbone or task plugin "
            f"differs from the one it was saved with ({manifest.get('plugins')})"
        ) from exc
    if missing or unexpected:
        raise ArtifactError(
            f"{weights} does not fit the rebuilt model: missing keys {sorted(missing)[:8]}, "
            f"unexpected keys {sorted(unexpected)[:8]}; the backbone or task plugin differs "
            f"from the one it was saved with ({manifest.get('plugins')})"
        )
    model.to(device).eval()
    return Predictor(model=model, task=task, domain=domain, manifest=manifest, device=device)


# -- predicting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prediction:
    """One input's prediction: the best label, every predicted label (one for single-label,
    those over the threshold for multi-label) and a score per label name."""

    label: str
    labels: tuple[str, ...]
    scores: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "labels": list(self.labels), "scores": dict(self.scores)}


class Predictor:
    """A loaded model that predicts on raw inputs (paths, strings, arrays) or on datasets in
    the standard schema. Build it with :func:`load`."""

    def __init__(
        self,
        *,
        model: TransferModel,
        task: Task,
        domain: Domain,
        manifest: Mapping[str, Any],
        device: str = "cpu",
    ) -> None:
        self.model = model
        self.task = task
        self.domain = domain
        self.manifest = dict(manifest)
        self.device = device
        self.preprocessor = model.backbone.preprocessor()

    @property
    def label_names(self) -> list[str]:
        return list(self.task.label_names)

    def predict(self, inputs: Sequence[Any], *, batch_size: int = 32) -> list[Prediction]:
        """Predict raw inputs; they go through the domain's ``from_inputs`` and the backbone's
        preprocessing, exactly as training data did."""
        if isinstance(inputs, str | bytes) or not isinstance(inputs, Sequence):
            inputs = [inputs]
        if len(inputs) == 0:
            return []
        return self.predict_dataset(self.domain.from_inputs(list(inputs)), batch_size=batch_size)

    def predict_dataset(self, ds: datasets.Dataset, *, batch_size: int = 32) -> list[Prediction]:
        """Predict every row of a dataset in the standard schema (its label column, if any,
        is ignored)."""
        logits = self.logits(ds, batch_size=batch_size)
        return self._predictions(logits)

    def logits(self, ds: datasets.Dataset, *, batch_size: int = 32) -> np.ndarray:
        """The model's raw outputs ``(rows, num_labels)`` for a dataset in the standard schema."""
        import numpy as np
        import torch

        if len(ds) == 0:
            return np.zeros((0, self.task.num_labels), dtype=np.float32)
        prepared = self._prepare(ds, batch_size)
        feed = [c for c in prepared.column_names if c not in _STANDARD_COLUMNS]
        chunks: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(prepared), batch_size):
                rows = prepared.select_columns(feed)[start : start + batch_size]
                examples = [{col: rows[col][i] for col in feed} for i in range(len(rows[feed[0]]))]
                batch = self.preprocessor.collate(examples)
                batch = {k: self._to_device(v) for k, v in batch.items()}
                chunks.append(self.model(**batch).float().cpu().numpy())
        return np.concatenate(chunks, axis=0)

    def logits_dataset(
        self, ds: datasets.Dataset, *, batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(logits, labels)`` for a dataset in the standard schema; ``labels`` is ``None``
        when it has no ``label`` column. Feed both to ``compute_metrics``."""
        import numpy as np

        labels = np.asarray(ds["label"]) if "label" in ds.column_names else None
        return self.logits(ds, batch_size=batch_size), labels

    def _to_device(self, value: torch.Tensor) -> torch.Tensor:
        return value.to(self.device) if hasattr(value, "to") else value

    def _prepare(self, ds: datasets.Dataset, batch_size: int) -> datasets.Dataset:
        from lepton_platform.errors import DataError

        missing = [c for c in self.preprocessor.input_columns if c not in ds.column_names]
        if missing:
            raise DataError(
                f"the model reads column(s) {missing} that the data lacks (it has "
                f"{ds.column_names}); is the data from another domain than "
                f"{self.manifest['domain']['name']!r}?"
            )
        remove = [c for c in ds.column_names if c not in _STANDARD_COLUMNS]
        return ds.map(
            self.preprocessor.transform,
            batched=True,
            batch_size=batch_size,
            remove_columns=remove,
            keep_in_memory=True,
            load_from_cache_file=False,
            desc=None,
        )

    def _predictions(self, logits: np.ndarray) -> list[Prediction]:
        import torch

        if logits.shape[0] == 0:
            return []
        predicted, scores = self.task.predict(torch.from_numpy(logits))
        names = self.task.label_names
        out: list[Prediction] = []
        for row in range(logits.shape[0]):
            row_scores = [float(v) for v in scores[row].tolist()]
            best = names[max(range(len(names)), key=lambda i: row_scores[i])]
            if self.task.multi_label:
                chosen = tuple(n for n, v in zip(names, predicted[row].tolist(), strict=True) if v)
            else:
                chosen = (names[int(predicted[row])],)
            out.append(
                Prediction(
                    label=best,
                    labels=chosen,
                    scores=dict(zip(names, row_scores, strict=True)),
                )
            )
        return out
