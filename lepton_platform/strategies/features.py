"""Frozen-backbone features, extracted once and cached on disk.

The cache key is the backbone's weights, the preprocessing and the data fingerprint, so a
second run (or a second epoch, or another strategy) on the same data and backbone reads the
features instead of running the backbone again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from lepton_platform.errors import DataError
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


def iterate_batches(
    dataset: datasets.Dataset,
    preprocessor: Preprocessor,
    batch_size: int,
    progress: bool = True,
    desc: str = "batches",
    device: torch.device | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Collated batches of a prepared dataset, in order, without augmentation."""
    from tqdm.auto import tqdm

    columns = [c for c in preprocessor.output_columns if c in dataset.column_names]
    if not columns:
        raise DataError(
            f"the dataset has none of the preprocessor's columns {preprocessor.output_columns} "
            f"(it has {dataset.column_names}); was it prepared with this backbone?"
        )
    for start in tqdm(
        range(0, len(dataset), batch_size), desc=desc, disable=not progress, leave=False
    ):
        rows = dataset[start : start + batch_size]
        examples = [{c: rows[c][i] for c in columns} for i in range(len(rows[columns[0]]))]
        batch = preprocessor.collate(examples)
        yield {k: v.to(device) for k, v in batch.items()} if device is not None else batch


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
    """Pooled features ``(n, feature_dim)`` of ``dataset`` (already prepared) and its labels.

    The backbone runs in evaluation mode without augmentation; the result is cached.
    """
    from lepton_platform.data.prepare import data_fingerprint

    key = hashlib.sha256(
        "|".join(
            [weights_fingerprint(backbone), preprocessor.fingerprint(), data_fingerprint(dataset)]
        ).encode()
    ).hexdigest()[:24]
    path = features_cache_dir() / f"{key}.safetensors"
    if cache and path.is_file():
        stored = load_file(str(path))
        return stored["features"], stored.get("labels")
    was_training = backbone.training
    backbone.eval()
    device = next(iter(backbone.parameters()), torch.empty(0)).device
    outputs: list[np.ndarray] = []
    with torch.inference_mode():
        for batch in iterate_batches(dataset, preprocessor, batch_size, progress, desc, device):
            outputs.append(backbone(**batch).float().cpu().numpy())
    backbone.train(was_training)
    features = np.concatenate(outputs) if outputs else np.zeros((0, backbone.feature_dim))
    labels = np.asarray(dataset["label"]) if "label" in dataset.column_names else None
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        arrays: dict[str, Any] = {"features": np.ascontiguousarray(features, dtype=np.float32)}
        if labels is not None:
            arrays["labels"] = np.ascontiguousarray(labels)
        save_file(arrays, str(tmp))
        os.replace(tmp, path)
    return features, labels
