"""Pieces of the training loop that are easier to test on their own: the data plan (which
examples each process sees in each step), seeded augmentation, RNG state capture, learning-rate
schedules and default parameter groups."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from lepton_platform.models import Preprocessor

__all__ = [
    "BatchPlan",
    "DatasetView",
    "balanced_weights",
    "capture_rng",
    "default_param_groups",
    "derive_seed",
    "length_grouped_batches",
    "lr_lambda",
    "make_collate",
    "restore_rng",
]


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that depends on every part (stable across runs and platforms)."""
    text = "/".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


class BatchPlan:
    """Which examples make up each global batch of an epoch, and which share each process takes.

    The order of an epoch depends only on ``(seed, epoch)``, never on a global RNG, so a resumed
    run sees exactly the batches an uninterrupted run would. A global batch of ``n`` examples is
    split over ``P`` processes in contiguous shares whose sizes differ by at most one; a final
    global batch smaller than ``2 P`` is dropped (every process must take part in every step,
    with at least two rows: batch-norm cannot train on one).
    """

    def __init__(
        self,
        num_examples: int,
        batch_size: int,
        *,
        seed: int,
        shuffle: bool,
        num_processes: int = 1,
        weights: Sequence[float] | np.ndarray | None = None,
        lengths: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.num_processes = num_processes
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.lengths = None if lengths is None else np.asarray(lengths, dtype=np.int64)

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        """The epoch's global batches. With ``weights`` the examples are drawn with
        replacement in proportion to them (a balanced sampler); with ``lengths`` examples of
        similar length share batches (:func:`length_grouped_batches`)."""
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", epoch))
        if not self.shuffle:
            order = np.arange(self.num_examples)
        elif self.weights is not None:
            order = torch.multinomial(
                self.weights, self.num_examples, replacement=True, generator=generator
            ).numpy()
        else:
            order = torch.randperm(self.num_examples, generator=generator).numpy()
        if self.shuffle and self.lengths is not None:
            batches = length_grouped_batches(self.lengths, self.batch_size, order, generator)
        else:
            batches = [
                order[start : start + self.batch_size]
                for start in range(0, self.num_examples, self.batch_size)
            ]
        if batches and len(batches[-1]) < self.smallest:
            batches.pop()
        return batches

    @property
    def smallest(self) -> int:
        """The smallest global batch that is trained on: two rows per process."""
        return 2 * max(self.num_processes, 1)

    @staticmethod
    def trained_rows(num_examples: int, batch_size: int, num_processes: int) -> int:
        """How many of ``num_examples`` an epoch trains on (the final batch may be dropped)."""
        full, rest = divmod(num_examples, batch_size)
        return full * batch_size + (rest if rest >= 2 * max(num_processes, 1) else 0)

    def __len__(self) -> int:
        full, rest = divmod(self.num_examples, self.batch_size)
        return full + (1 if rest >= self.smallest else 0)

    @staticmethod
    def share(batch: np.ndarray, rank: int, num_processes: int) -> np.ndarray:
        """This process's contiguous share of a global batch."""
        bounds = np.linspace(0, len(batch), num_processes + 1).round().astype(int)
        return batch[bounds[rank] : bounds[rank + 1]]


def length_grouped_batches(
    lengths: np.ndarray,
    batch_size: int,
    order: np.ndarray,
    generator: torch.Generator,
    mega_batch_factor: int = 50,
) -> list[np.ndarray]:
    """Batches of examples of similar length, in a random order.

    ``order`` (a permutation, or a weighted draw) is cut into mega-batches of
    ``batch_size * mega_batch_factor``; each is sorted by length, longest first, and cut into
    batches; the batches are shuffled, the one holding the longest example first (an
    out-of-memory error shows on the first step, not the last). With dynamic padding in
    ``collate`` this pads little, while the training order stays random. The last batch may be
    short, as without grouping.
    """
    mega = batch_size * mega_batch_factor
    grouped: list[np.ndarray] = []
    for start in range(0, len(order), mega):
        chunk = order[start : start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        grouped.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    if len(grouped) > 1:
        # the (single) short batch goes last, so every other batch is full
        short = [b for b in grouped if len(b) < batch_size]
        full = [b for b in grouped if len(b) == batch_size]
        permutation = torch.randperm(len(full), generator=generator).tolist()
        full = [full[i] for i in permutation]
        if full:
            longest = max(range(len(full)), key=lambda b: int(lengths[full[b]].max()))
            full[0], full[longest] = full[longest], full[0]
        grouped = full + short
    return grouped


def balanced_weights(labels: Sequence[int]) -> np.ndarray:
    """Per-example weights ``1 / count(class)``: each class is drawn equally often."""
    values = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(values)
    return 1.0 / counts[values]


class _LocalBatches(torch.utils.data.Sampler[list[tuple[int, int]]]):
    """Yields this process's share of global batches ``start..`` of one epoch, each index tagged
    with the batch's augmentation seed (read by :class:`DatasetView`)."""

    def __init__(
        self, plan: BatchPlan, epoch: int, start: int, rank: int, augment_seed: int | None
    ) -> None:
        self.batches = plan.global_batches(epoch)
        self.plan, self.epoch, self.start, self.rank = plan, epoch, start, rank
        self.augment_seed = augment_seed

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for b in range(self.start, len(self.batches)):
            local = BatchPlan.share(self.batches[b], self.rank, self.plan.num_processes)
            seed = (
                derive_seed(self.augment_seed, self.epoch, b, self.rank)
                if self.augment_seed is not None
                else -1
            )
            yield [(int(i), seed) for i in local]

    def __len__(self) -> int:
        return max(0, len(self.batches) - self.start)


class DatasetView(torch.utils.data.Dataset[Any]):
    """A ``datasets.Dataset`` seen as rows of the preprocessor's columns plus ``label``.

    Rows are fetched a batch at a time (``__getitems__``); each key is ``(row, seed)`` or a
    plain row index. ``labels`` (one per row), when set, replace the ``label`` column
    (:meth:`~lepton_platform.engine.finetune.Trainer.relabel`)."""

    def __init__(self, dataset: Any, columns: Sequence[str]) -> None:
        self.dataset = dataset.select_columns(list(columns))
        self.columns = list(columns)
        self.labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Any) -> Any:
        return self.__getitems__([key])

    def __getitems__(self, keys: Sequence[Any]) -> tuple[int, list[dict[str, Any]]]:
        if keys and isinstance(keys[0], tuple):
            rows = [k[0] for k in keys]
            seed = int(keys[0][1])
        else:
            rows, seed = [int(k) for k in keys], -1
        columns = self.dataset[rows]
        if self.labels is not None and "label" in columns:
            columns["label"] = self.labels[rows].tolist()
        examples = [{c: columns[c][i] for c in self.columns} for i in range(len(rows))]
        return seed, examples


def _overrides_augment(preprocessor: Preprocessor) -> bool:
    return type(preprocessor).augment is not Preprocessor.augment


def make_collate(
    preprocessor: Preprocessor, *, train: bool, with_labels: bool, multi_hot: int | None = None
) -> Callable[[tuple[int, list[dict[str, Any]]]], dict[str, torch.Tensor]]:
    """``preprocessor.collate([preprocessor.augment(e) ...])`` plus a ``labels`` tensor;
    with ``multi_hot=num_labels`` each row's list of label indices becomes a 0/1 vector
    (multi-label tasks).

    Augmentation (training only) runs under RNGs seeded from the batch's seed, then the global
    RNG states are put back: augmentation is reproducible whatever the worker count or resume
    point, and it never shifts the RNG stream that dropout draws from."""
    augment = train and _overrides_augment(preprocessor)

    def collate(item: tuple[int, list[dict[str, Any]]]) -> dict[str, torch.Tensor]:
        seed, examples = item
        labels = [e.pop("label") for e in examples] if with_labels else None
        if augment:
            saved = capture_rng(include_cuda=False)
            try:
                random.seed(seed)
                np.random.seed(seed % 2**32)
                torch.manual_seed(seed)
                examples = [preprocessor.augment(e) for e in examples]
            finally:
                restore_rng(saved)
        batch = dict(preprocessor.collate(examples))
        if labels is not None:
            if multi_hot is not None:
                hot = torch.zeros(len(labels), multi_hot, dtype=torch.float32)
                for row, indices in enumerate(labels):
                    hot[row, list(indices)] = 1.0
                batch["labels"] = hot
            else:
                batch["labels"] = torch.as_tensor(np.asarray(labels))
        return batch

    return collate


def capture_rng(*, include_cuda: bool = True) -> dict[str, Any]:
    """The python, numpy, torch (and CUDA) RNG states."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if include_cuda and torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def lr_lambda(kind: str, total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """The multiplier of the base learning rate after ``step`` optimiser steps."""

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if kind == "constant":
            return 1.0
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def default_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Every parameter in two groups: weight decay for matrices and kernels, none for biases
    and normalisation weights (1-d tensors)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for _, param in model.named_parameters():
        (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [
        {"name": "decay", "params": decay, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]
