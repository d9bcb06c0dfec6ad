"""Saving a trained model under registered names, and loading one back as a predictor.

    >>> save_model("runs/cats", model, domain="image", backbone="resnet18",  # doctest: +SKIP
    ...            backbone_config=model.backbone.config(), task="classification", ...)
    >>> predictor = load("runs/cats")                                       # doctest: +SKIP
    >>> predictor.predict(["photo.jpg"])[0].label                          # doctest: +SKIP
    'cat'

The folder format (checksums, the manifest) is :mod:`lepton_platform.artifacts`; this module
adds the registry: which plugin provides each part, and rebuilding the model through it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lepton_platform.api.job import names_plugins
from lepton_platform.artifacts import read_weights, write_model
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

    from lepton_platform.domains import Domain
    from lepton_platform.models import TransferModel
    from lepton_platform.specs import Spec
    from lepton_platform.tasks import Task

__all__ = ["Prediction", "Predictor", "load", "save_model"]

_GETTERS = (("domain", get_domain), ("backbone", get_backbone), ("task", get_task))


def _provider_json(spec: Spec) -> dict[str, Any]:
    provider = spec.provider
    if provider is None:
        return {"distribution": None, "version": None, "plugin": None}
    return {
        "distribution": provider.distribution,
        "version": provider.version,
        "plugin": provider.plugin,
    }


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
    """Save a trained model as one folder (see :func:`lepton_platform.artifacts.write_model`)
    and return its path. ``domain``, ``backbone`` and ``task`` are registered names, recorded
    with the plugin distribution and version that provide them; the configs are what their
    factories take to rebuild the same architecture (``backbone.config()``, ``task.config()``).
    """
    names = {"domain": domain, "backbone": backbone, "task": task}
    specs = {}
    for kind, getter in _GETTERS:
        try:
            specs[kind] = getter(names[kind])
        except UnknownNameError as exc:
            raise ArtifactError(
                f"cannot save: {exc}; a model is saved under registered names so that "
                "load() can rebuild it"
            ) from None
    manifest: dict[str, Any] = {
        "domain": {"name": domain, "provider": _provider_json(specs["domain"])},
        "backbone": {
            "name": backbone,
            "config": dict(backbone_config),
            "provider": _provider_json(specs["backbone"]),
        },
        "task": {
            "name": task,
            "config": dict(task_config),
            "provider": _provider_json(specs["task"]),
        },
        "label_names": [str(n) for n in label_names],
        "preprocessing": dict(preprocessing),
        "strategy": dict(strategy),
        "metrics": dict(metrics),
        "data_fingerprints": dict(data_fingerprints),
        "extra": dict(extra or {}),
    }
    manifest["plugins"] = {
        entry["provider"]["distribution"]: entry["provider"]["version"]
        for entry in (manifest["domain"], manifest["backbone"], manifest["task"])
        if entry["provider"]["distribution"]
    }
    return write_model(folder, model, manifest)


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


@names_plugins("loading the model")
def load(path: str | os.PathLike[str], *, device: str = "cpu") -> Predictor:
    """Load a saved model folder and return a :class:`Predictor`.

    Checks the manifest (and that it was not edited) and the weights' checksum, rebuilds the
    backbone (``pretrained=None``) and the head through the registry, then loads the
    safetensors weights (nothing is unpickled). A missing plugin is named with the
    distribution to install."""
    from lepton_platform.api.job import build_model

    source = read_weights(path)
    folder, manifest = source.path, source.manifest
    specs: dict[str, Spec] = {}
    for kind, getter in _GETTERS:
        entry = manifest[kind]
        try:
            specs[kind] = getter(str(entry["name"]))
        except UnknownNameError as exc:
            raise _missing_plugin(kind, entry, exc) from None
    _check_versions(manifest, specs)
    try:
        domain = create_domain(manifest["domain"]["name"])
        backbone = create_backbone(
            manifest["backbone"]["name"], pretrained=None, **manifest["backbone"].get("config", {})
        )
        task = create_task(
            manifest["task"]["name"],
            label_names=source.label_names,
            **manifest["task"].get("config", {}),
        )
    except LeptonError as exc:
        raise ArtifactError(
            f"cannot rebuild the model saved in {folder}: {exc} (the installed plugins may be "
            f"incompatible with the ones it was saved with: {manifest.get('plugins')})"
        ) from exc
    model = build_model(backbone, task)
    try:
        missing, unexpected = model.load_state_dict(source.tensors, strict=False)
    except RuntimeError as exc:  # shapes differ
        raise ArtifactError(
            f"cannot load the weights of {folder} into the rebuilt model: {exc}; the backbone "
            f"or task plugin differs from the one it was saved with ({manifest.get('plugins')})"
        ) from exc
    missing = [k for k in missing if not _tied(model, k, source.tensors)]
    if missing or unexpected:
        raise ArtifactError(
            f"the weights of {folder} do not fit the rebuilt model: missing keys "
            f"{sorted(missing)[:8]}, unexpected keys {sorted(unexpected)[:8]}; the backbone or "
            f"task plugin differs from the one it was saved with ({manifest.get('plugins')})"
        )
    model.to(device).eval()
    return Predictor(model=model, task=task, domain=domain, manifest=manifest, device=device)


def _tied(model: TransferModel, key: str, tensors: Mapping[str, Any]) -> bool:
    """Whether a key missing from the file is a tied alias safetensors stored once."""
    state = model.state_dict()
    target = state.get(key)
    if target is None:
        return False
    return any(
        other in tensors and state[other].data_ptr() == target.data_ptr()
        for other in state
        if other != key
    )


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

    @names_plugins("predicting")
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
        return self.predictions(self.logits(ds, batch_size=batch_size))

    @names_plugins("predicting")
    def logits(self, ds: datasets.Dataset, *, batch_size: int = 32) -> np.ndarray:
        """The model's raw outputs ``(rows, num_labels)`` for a dataset in the standard schema,
        through the one prediction function."""
        import numpy as np

        from lepton_platform.engine.predict import predict

        if len(ds) == 0:
            return np.zeros((0, self.task.num_labels), dtype=np.float32)
        inputs = ds.remove_columns([c for c in ("label",) if c in ds.column_names])
        prepared = self._prepare(inputs, batch_size)
        out = predict(
            self.model, prepared, self.preprocessor, batch_size=batch_size, device=self.device
        )
        return out.outputs

    def logits_dataset(
        self, ds: datasets.Dataset, *, batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(logits, labels)`` for a dataset in the standard schema; ``labels`` is ``None``
        when it has no ``label`` column."""
        import numpy as np

        labels = np.asarray(ds["label"]) if "label" in ds.column_names else None
        return self.logits(ds, batch_size=batch_size), labels

    def _prepare(self, ds: datasets.Dataset, batch_size: int) -> datasets.Dataset:
        from lepton_platform.data.schema import STANDARD_COLUMNS
        from lepton_platform.errors import DataError

        missing = [c for c in self.preprocessor.input_columns if c not in ds.column_names]
        if missing:
            raise DataError(
                f"the model reads column(s) {missing} that the data lacks (it has "
                f"{ds.column_names}); is the data from another domain than "
                f"{self.manifest['domain']['name']!r}?"
            )
        remove = [c for c in ds.column_names if c not in STANDARD_COLUMNS]
        return ds.map(
            self.preprocessor.transform,
            batched=True,
            batch_size=batch_size,
            remove_columns=remove,
            keep_in_memory=True,
            load_from_cache_file=False,
            desc=None,
        )

    def predictions(self, logits: np.ndarray) -> list[Prediction]:
        """The :class:`Prediction` of each row of logits."""
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
