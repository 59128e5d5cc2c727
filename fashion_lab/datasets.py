"""The torch side of the data modules: an in-memory uint8 Dataset fetched a whole batch at a time, Keras'
`steps_per_execution` lists of mini-batches, and a shuffle that a resumed run repeats exactly.

>>> ds = InMemoryImages(torch.zeros(4, 28, 28, dtype=torch.uint8), torch.arange(4))
>>> x, y = ds.__getitems__([0, 2])
>>> x.shape, x.dtype, y.tolist()
(torch.Size([2, 1, 28, 28]), torch.float32, [0, 2])
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler


class InMemoryImages(Dataset):
    """uint8 images (N, 28, 28) and int64 labels (N,) that are indexed a whole batch at a time.

    `__getitems__` lets the standard DataLoader fetch a batch with one tensor index instead of N item calls;
    the float conversion happens per batch, so the set itself stays uint8 (1 byte per pixel). Without labels
    (pictures to predict) a batch is the images alone. `unscaled` hands out the raw 0..255 pixel values instead
    (the tutorial's `evaluate(x_test)` slip, reproduced on purpose).
    """

    def __init__(
        self, images: Tensor, labels: Tensor | None, mean: float = 0.0, std: float = 1.0, unscaled: bool = False
    ) -> None:
        self.images, self.labels, self.mean, self.std, self.unscaled = images, labels, mean, std, unscaled

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor] | Tensor:
        batch = self.__getitems__([index])
        return batch[0] if self.labels is None else (batch[0][0], batch[1][0])

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor] | Tensor:
        idx = torch.as_tensor(indices)
        # index_select is ~5x cheaper than images[idx] for a 32-row batch (no advanced-indexing machinery)
        x = self.images.index_select(0, idx).unsqueeze(1).float()  # (B, 1, 28, 28) in 0..255
        if self.unscaled:
            return x if self.labels is None else (x, self.labels.index_select(0, idx))
        x = x.div_(255.0)  # the seed's x / 255
        if self.mean or self.std != 1.0:
            x = x.sub_(self.mean).div_(self.std)
        return x if self.labels is None else (x, self.labels.index_select(0, idx))


def keep_batch(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """`collate_fn` for `__getitems__` datasets: the batch is already stacked (module-level: workers pickle it)."""
    return batch


class MiniBatches:
    """`collate_fn` cutting one fetched batch into `batch_size` mini-batches: Keras' `steps_per_execution`;
    `drop_last` leaves out a last mini-batch smaller than `batch_size`."""

    def __init__(self, batch_size: int, drop_last: bool = False) -> None:
        self.batch_size, self.drop_last = batch_size, drop_last

    def __call__(self, batch: tuple[Tensor, Tensor]) -> list[tuple[Tensor, Tensor]]:
        x, y = batch
        mini_batches = list(zip(x.split(self.batch_size), y.split(self.batch_size), strict=True))
        if self.drop_last and len(mini_batches[-1][1]) < self.batch_size:
            mini_batches.pop()
        return mini_batches


class EpochShuffler(Sampler[int]):
    """A permutation drawn from `seed + epoch`, so every epoch's order is reproducible, also after a resume.

    torch's RandomSampler draws epoch after epoch from one generator, so a run resumed at epoch 3 would shuffle
    differently from one that never stopped. Lightning calls `set_epoch` here as it does on a DistributedSampler.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())


def mean_std(images: Tensor) -> tuple[float, float]:
    """Exact pixel mean and std in [0, 1] units from a 256-bin histogram: no float copy of the set."""
    counts = torch.bincount(images.flatten(), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255.0
    mean = (counts * values).sum() / counts.sum()
    var = (counts * (values - mean) ** 2).sum() / counts.sum()
    return mean.item(), var.sqrt().item()
