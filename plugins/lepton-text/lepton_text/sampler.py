"""Length-grouped batching: batches of sentences of similar length, so that dynamic padding pads
little.

Padding every sentence of a batch to the longest one in the whole data set wastes most of the
compute on short sentences; padding to the longest in a random batch still wastes some. Grouping
examples of similar length into the same batch (within "mega-batches" of ``batch_size * 50``
randomly drawn examples, so that training order stays random) makes the padding nearly vanish.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from lepton_platform.errors import ConfigError

__all__ = ["LengthGroupedBatchSampler", "padded_tokens"]


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices; use it as a ``DataLoader(batch_sampler=...)``.

    Training (``shuffle=True``): a random permutation (seeded by ``seed`` plus the epoch set
    with :meth:`set_epoch`) is cut into mega-batches of ``batch_size * mega_batch_factor``;
    each is sorted by length, longest first, and cut into batches; the batch order is then
    shuffled, except that the batch holding the longest example comes first (an out-of-memory
    error shows on the first step, not the last). Evaluation (``shuffle=False``): every index
    sorted by length, longest first, then cut into batches; deterministic.

    Example::

        sampler = LengthGroupedBatchSampler(ds["length"], batch_size=32, seed=0)
        loader = DataLoader(ds, batch_sampler=sampler, collate_fn=preprocessor.collate)
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        mega_batch_factor: int = 50,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if mega_batch_factor < 1:
            raise ConfigError(f"mega_batch_factor must be at least 1, got {mega_batch_factor}")
        self.lengths = [int(n) for n in lengths]
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.mega_batch_factor = int(mega_batch_factor)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use another permutation for the next pass (call once per epoch, as with
        ``DistributedSampler``)."""
        self.epoch = int(epoch)

    def _cut(self, order: list[int]) -> list[list[int]]:
        size = self.batch_size
        batches = [order[i : i + size] for i in range(0, len(order), size)]
        if self.drop_last and batches and len(batches[-1]) < size:
            batches.pop()
        return batches

    def batches(self) -> list[list[int]]:
        """Every batch of the current epoch, in the order :meth:`__iter__` yields them."""
        lengths = self.lengths
        if not self.shuffle:
            return self._cut(sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        permutation = torch.randperm(len(lengths), generator=generator).tolist()
        mega = self.batch_size * self.mega_batch_factor
        order: list[int] = []
        for start in range(0, len(permutation), mega):
            chunk = permutation[start : start + mega]
            order.extend(sorted(chunk, key=lambda i: -lengths[i]))
        batches = self._cut(order)
        if len(batches) > 1:
            shuffled = torch.randperm(len(batches), generator=generator).tolist()
            batches = [batches[i] for i in shuffled]
            longest = max(range(len(batches)), key=lambda b: max(lengths[i] for i in batches[b]))
            batches[0], batches[longest] = batches[longest], batches[0]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        full, rest = divmod(len(self.lengths), self.batch_size)
        return full if (self.drop_last or rest == 0) else full + 1


def padded_tokens(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> int:
    """How many token positions the batches occupy when each is padded to its longest example."""
    return sum(len(batch) * max(lengths[i] for i in batch) for batch in batches if batch)
