"""Frozen-backbone features, extracted once and cached on disk.

The cache key is the backbone's weights, the preprocessing and the data fingerprint, so a
second run (or a second epoch, or another strategy) on the same data and backbone reads the
features instead of running the backbone again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors.numpy import save

from lepton_platform._io import atomic_write_bytes
from lepton_platform.engine.predict import predict
from lepton_platform.models import Backbone, Preprocessor

if TYPE_CHECKING:
    import datasets


def weights_fingerprint(module: torch.nn.Module) -> str:
    """A hash of a module's parameters and buffers (names, shapes and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        data = tensor.detach().cpu().contiguous()
        digest.update(str(tuple(data.shape)).encode())
        digest.update(data.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def features_cache_dir() -> Path:
    from lepton_platform.data.prepare import cache_dir

    return cache_dir() / "features"


def extract_features(
    backbone: Backbone,
    dataset: datasets.Dataset,
    preprocessor: Preprocessor,
    *,
    batch_size: int = 64,
    cache: bool = True,
    progress: bool = True,
    desc: str = "features",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Pooled features ``(n, feature_dim)`` of ``dataset`` (already prepared) and its labels
    (always read from the dataset, never from the cache).

    The backbone runs in evaluation mode without augmentation, through the one prediction
    function. The features are cached under a key of the backbone's weights, the preprocessing
    and the data; a cache file is used only when it records that key, the row count and the
    checksum of its features (a truncated, altered or foreign file is rebuilt, with a warning).
    """
    from lepton_platform.data.prepare import data_fingerprint

    key = hashlib.sha256(
        "|".join(
            [weights_fingerprint(backbone), preprocessor.fingerprint(), data_fingerprint(dataset)]
        ).encode()
    ).hexdigest()[:24]
    path = features_cache_dir() / f"{key}.safetensors"
    labels = np.asarray(dataset["label"]) if "label" in dataset.column_names else None
    if cache and path.is_file():
        stored = _read_cached(path, key, len(dataset))
        if stored is not None:
            return stored, labels
    if len(dataset) == 0:
        features = np.zeros((0, backbone.feature_dim), dtype=np.float32)
    else:
        out = predict(
            backbone, dataset, preprocessor, batch_size=batch_size, progress=progress, desc=desc
        )
        features = np.ascontiguousarray(out.outputs, dtype=np.float32)
    if cache:
        metadata = {"key": key, "rows": str(len(dataset)), "sha256": _digest(features)}
        atomic_write_bytes(path, save({"features": features}, metadata=metadata))
    return features, labels


def _digest(features: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(features).tobytes()).hexdigest()


def _read_cached(path: Path, key: str, rows: int) -> np.ndarray | None:
    """The cached features at ``path`` when the file is whole and was made for ``key``; else
    ``None`` (and a warning saying why it is rebuilt)."""
    import warnings

    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as handle:
            metadata = handle.metadata() or {}
            features = handle.get_tensor("features")
    except Exception as exc:  # safetensors raises its own error types on a damaged file
        reason = f"unreadable ({type(exc).__name__}: {exc})"
    else:
        if metadata.get("key") != key:
            reason = "made for another backbone, preprocessing or data"
        elif metadata.get("rows") != str(rows) or features.shape[0] != rows:
            reason = f"holds {features.shape[0]} rows, the data has {rows}"
        elif metadata.get("sha256") != _digest(features):
            reason = "its features do not match their checksum"
        else:
            return np.asarray(features)
    warnings.warn(f"feature cache file {path} is {reason}; it is ignored and rebuilt", stacklevel=3)
    return None
