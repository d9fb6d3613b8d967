"""Training data loader whose every random choice is a pure function of (seed, iteration).

- Order: epoch e visits the images in `randperm` order from a generator seeded by (seed, e);
  with aspect-ratio grouping, a global batch is the next `batch` images of one orientation.
- Sharding: global batch `it` is split into contiguous slices, one per process, so the union over
  processes is exactly what one process with the whole batch would see.
- Augmentation: the dataset's transforms run under torch's global RNG seeded by (seed, epoch,
  index), so a flip does not depend on the worker or process that loads the image.
- Model sampling: `target["seed"]` is derived from (seed, iteration, position in the global batch).

Resuming at iteration N therefore only needs N: the sampler replays the index stream (cheap, no
images are read) and skips the first N batches.

A user error while loading a sample (an image whose pixels are cut short) travels to the main
process as a `FailedSample` and is raised there as itself: one line naming the file, rather than
a worker's traceback wrapped in the DataLoader's.
"""

from __future__ import annotations

import random
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..errors import UserError
from .repeat_factors import repeated_indices

Key = tuple[int, int, int, int]  # (iteration, position in global batch, epoch, dataset index)


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (SeedSequence hashing, stable across platforms)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


class GroupedBatches:
    """Infinite stream of global batches, each a list of (epoch, index).

    `aspect_ratios` (width / height per image) or None for no grouping; `repeat_factors` (N,)
    per image (data/repeat_factors.py) or None: each image once per epoch.
    """

    def __init__(self, num_images: int, batch_size: int, seed: int,
                 aspect_ratios: Sequence[float] | None = None,
                 repeat_factors: torch.Tensor | None = None):  # fmt: skip
        if num_images <= 0:
            raise ValueError("the training set is empty")
        self.num_images, self.batch_size, self.seed = num_images, batch_size, seed
        self.aspect_ratios, self.repeat_factors = aspect_ratios, repeat_factors

    def epoch_order(self, epoch: int) -> list[int]:
        """The image indices epoch `epoch` visits, in order."""
        gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
        if self.repeat_factors is None:
            return torch.randperm(self.num_images, generator=gen).tolist()
        indices = repeated_indices(self.repeat_factors, gen)
        return indices[torch.randperm(len(indices), generator=gen)].tolist()

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        buckets: dict[bool, list[tuple[int, int]]] = {True: [], False: []}
        epoch = 0
        while True:
            for index in self.epoch_order(epoch):
                wide = self.aspect_ratios is None or self.aspect_ratios[index] >= 1.0
                bucket = buckets[wide]
                bucket.append((epoch, index))
                if len(bucket) == self.batch_size:
                    yield bucket.copy()
                    bucket.clear()
            epoch += 1  # leftovers stay in their bucket and complete in the next epoch


class ShardedBatches:
    """This process's slice of each global batch from `start_iter` on, as lists of Keys."""

    def __init__(self, batches: GroupedBatches, start_iter: int, rank: int, world_size: int):
        if batches.batch_size % world_size:
            raise ValueError(f"global batch {batches.batch_size} is not divisible by "
                             f"{world_size} processes")  # fmt: skip
        self.batches, self.start_iter = batches, start_iter
        per = batches.batch_size // world_size
        self.positions = range(rank * per, (rank + 1) * per)

    def __iter__(self) -> Iterator[list[Key]]:
        for it, batch in enumerate(self.batches):
            if it < self.start_iter:
                continue
            yield [(it, pos, *batch[pos]) for pos in self.positions]


class FailedSample:
    """What a worker returns instead of a sample it could not load; `raise_failed` raises it."""

    def __init__(self, error: UserError):
        self.error = error


def raise_failed(batch):
    """The batch itself, or the user error behind it raised in this (the main) process."""
    if isinstance(batch, FailedSample):
        raise batch.error
    return batch


class TrainSamples(Dataset):
    """Looks up a Key in `dataset` with seeded augmentation and adds the model's `seed`."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __getitem__(self, key: Key):
        it, pos, epoch, index = key
        # fork_rng restores the caller's RNG afterwards, so seeding here has no side effects.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, epoch, index))
            try:
                image, target = self.dataset[index]
            except UserError as exc:
                return FailedSample(exc)
        target = dict(target, seed=derive_seed(self.seed, it, pos))
        return image, target


def collate(batch: list) -> tuple[list, list] | FailedSample:
    """Images differ in size, so a batch stays two lists; the model pads."""
    failed = [sample for sample in batch if isinstance(sample, FailedSample)]
    if failed:
        return failed[0]
    return [image for image, _ in batch], [target for _, target in batch]


def _seed_worker(worker_id: int) -> None:
    # DataLoader gives each worker torch seed = base + id; numpy and random follow it so any
    # dataset code that uses them is reproducible too.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_train_loader(dataset: Dataset, batch_size: int, seed: int, *, start_iter: int = 0,
                       rank: int = 0, world_size: int = 1, num_workers: int = 0,
                       aspect_ratios: Sequence[float] | None = None,
                       repeat_factors: torch.Tensor | None = None) -> DataLoader:  # fmt: skip
    """Endless DataLoader of (list[image], list[target]) for one process; batch_size is global."""
    batches = GroupedBatches(len(dataset), batch_size, seed, aspect_ratios, repeat_factors)
    return DataLoader(
        TrainSamples(dataset, seed),
        batch_sampler=ShardedBatches(batches, start_iter, rank, world_size),
        collate_fn=collate,
        num_workers=num_workers,
        worker_init_fn=_seed_worker,
        generator=torch.Generator().manual_seed(derive_seed(seed, rank)),
        persistent_workers=num_workers > 0,
    )
