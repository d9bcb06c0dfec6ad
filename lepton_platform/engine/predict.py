"""The one prediction function: a module's outputs on every row of a prepared dataset.

Every place that runs a model over data without training it calls :func:`predict` (or
:func:`batches` for the batching alone): validation in the fine-tune engine, the feature cache
of the linear probe, WiSE-FT's alpha sweep, tuning trials, the cross-domain matrix, the
label-free validators and a loaded model's predictor. No optimiser or ``Accelerator`` is built
to predict::

    >>> from lepton_platform.engine.predict import predict
    >>> out = predict(model, prepared_test, preprocessor, batch_size=64)   # doctest: +SKIP
    >>> out.outputs.shape, out.labels.shape                                # doctest: +SKIP
    ((200, 10), (200,))

With several processes (an ``accelerator`` from ``accelerate launch``), each process takes a
contiguous share of the rows and every process receives the whole result, in row order.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from lepton_platform.engine._loop_utils import DatasetView, make_collate
from lepton_platform.engine.hardware import uses_channels_last
from lepton_platform.errors import DataError
from lepton_platform.models import Preprocessor

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = ["Prediction", "batches", "check_prepared", "multi_hot_width", "predict"]


@dataclass
class Prediction:
    """What :func:`predict` returns: the module's outputs ``(rows, ...)`` in row order, and the
    dataset's labels (0/1 rows for multi-label data) when it has a ``label`` column."""

    outputs: np.ndarray
    labels: np.ndarray | None

    def __iter__(self) -> Iterator[Any]:  # ``logits, labels = predict(...)``
        return iter((self.outputs, self.labels))


def check_prepared(dataset: Any, preprocessor: Preprocessor, what: str, *, labels: bool) -> None:
    """Raise :class:`DataError` unless ``dataset`` is a non-empty ``datasets.Dataset`` holding
    the preprocessor's output columns (and ``label`` when ``labels``)."""
    columns = getattr(dataset, "column_names", None)
    if columns is None:
        raise DataError(f"the {what} data must be a datasets.Dataset, got {type(dataset).__name__}")
    needed = [*preprocessor.output_columns, *(["label"] if labels else [])]
    missing = [c for c in needed if c not in columns]
    if missing:
        raise DataError(
            f"the {what} dataset lacks the column(s) {missing} (it has {columns}); run it "
            "through lepton_platform.data.prepare(dataset, preprocessor) first"
        )
    if len(dataset) == 0:
        raise DataError(f"the {what} dataset is empty")


def multi_hot_width(dataset: Any, num_labels: int | None) -> int | None:
    """The width of the 0/1 label vectors to build from a ``List(ClassLabel)`` label column
    (multi-label data), or ``None`` when labels are used as they are."""
    from lepton_platform.data import is_multi_label

    if num_labels is None or "label" not in dataset.column_names:
        return None
    return num_labels if is_multi_label(dataset.features.get("label")) else None


def batches(
    dataset: Any,
    preprocessor: Preprocessor,
    batch_size: int,
    *,
    rows: Sequence[int] | None = None,
    with_labels: bool = False,
    multi_hot: int | None = None,
    num_workers: int = 0,
    device: torch.device | None = None,
    channels_last: bool = False,
    progress: bool = False,
    desc: str = "batches",
) -> Iterator[dict[str, torch.Tensor]]:
    """Collated batches of a prepared dataset in row order (or of ``rows``), without
    augmentation; ``labels`` is in each batch when ``with_labels``."""
    columns = [c for c in preprocessor.output_columns if c in dataset.column_names]
    if not columns:
        raise DataError(
            f"the dataset has none of the preprocessor's columns {preprocessor.output_columns} "
            f"(it has {dataset.column_names}); was it prepared with this backbone?"
        )
    if with_labels:
        columns.append("label")
    order = list(range(len(dataset))) if rows is None else list(rows)
    plan = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    loader = torch.utils.data.DataLoader(
        DatasetView(dataset, columns),
        batch_sampler=plan,
        collate_fn=cast(
            Any,
            make_collate(preprocessor, train=False, with_labels=with_labels, multi_hot=multi_hot),
        ),
        num_workers=num_workers,
        pin_memory=device is not None and device.type == "cuda",
        generator=torch.Generator(),  # the global RNG stays untouched (exact resume)
    )
    bar = _bar(len(plan), desc, progress)
    try:
        for batch in loader:
            if device is not None:
                batch = to_device(batch, device, channels_last)
            yield batch
            bar.update(1)
    finally:
        bar.close()


def to_device(
    batch: dict[str, torch.Tensor], device: torch.device, channels_last: bool = False
) -> dict[str, torch.Tensor]:
    """Every tensor of a batch on ``device`` (4-d ones channels-last when asked)."""
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if channels_last and value.ndim == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


@torch.no_grad()
def predict(
    module: torch.nn.Module,
    dataset: Any,
    preprocessor: Preprocessor,
    *,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    accelerator: Accelerator | None = None,
    num_labels: int | None = None,
    num_workers: int = 0,
    channels_last: bool | None = None,
    progress: bool = False,
    desc: str = "predict",
) -> Prediction:
    """``module(**batch)`` for every row of ``dataset`` (prepared with ``preprocessor``), in
    evaluation mode and without gradients; the module's training mode is put back afterwards.

    ``device`` defaults to the module's own. With an ``accelerator`` of several processes each
    takes a share and all get the whole result. ``num_labels`` turns multi-label label lists
    into 0/1 rows. The labels are returned when the dataset has a ``label`` column. 4-D inputs
    are passed channels-last when ``channels_last``, by default when the module's convolutions
    are stored so (a model trained channels-last predicts in its layout)."""
    check_prepared(dataset, preprocessor, "prediction", labels=False)
    with_labels = "label" in dataset.column_names
    multi_hot = multi_hot_width(dataset, num_labels) if with_labels else None
    if accelerator is not None:
        target = torch.device(accelerator.device)
        world, rank = accelerator.num_processes, accelerator.process_index
    else:
        target = torch.device(device) if device is not None else _device_of(module)
        world, rank = 1, 0
    n = len(dataset)
    share = math.ceil(n / world)
    rows = [min(r, n - 1) for r in range(rank * share, (rank + 1) * share)]  # pad the last share
    if channels_last is None:
        channels_last = uses_channels_last(module)
    was_training = module.training
    module.eval()
    outputs: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    try:
        for batch in batches(
            dataset,
            preprocessor,
            batch_size,
            rows=rows,
            with_labels=with_labels,
            multi_hot=multi_hot,
            num_workers=num_workers,
            device=target,
            channels_last=channels_last,
            progress=progress and rank == 0,
            desc=desc,
        ):
            labels = batch.pop("labels", None)
            outputs.append(module(**batch).float())
            if labels is not None:
                targets.append(labels.to(target))
    finally:
        module.train(was_training)
    result = torch.cat(outputs)
    label_tensor = torch.cat(targets) if with_labels else None
    if world > 1:
        assert accelerator is not None
        result = accelerator.gather(result)
        if label_tensor is not None:
            label_tensor = accelerator.gather(label_tensor)
    return Prediction(
        outputs=result[:n].cpu().numpy(),
        labels=None if label_tensor is None else label_tensor[:n].cpu().numpy(),
    )


def _device_of(module: torch.nn.Module) -> torch.device:
    for parameter in module.parameters():
        return parameter.device
    for buffer in module.buffers():
        return buffer.device
    return torch.device("cpu")


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)
