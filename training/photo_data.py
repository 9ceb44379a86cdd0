"""Photos with their cell class for fine-tuning the backbone: from manifests (files) or MP16 shards (records read
by offset), as one indexed dataset, and the sampler that splits each global batch across ranks.

Every epoch is a seeded permutation of all photos; global batch j is its j-th slice, and rank r of W takes every
W-th photo of it. So the global batches are the same whatever the number of ranks (a 2-process run sees what a
single process with the same global batch sees), every photo is read by one rank only, and a run resumes exactly
from (epoch, step). Augmentations are seeded per photo and epoch, so they do not depend on which worker reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from locator.cells import Partition
from locator.datasets import Record
from locator.images import ImageLoadError, load_image
from locator.shards import index_shards, read_shard_record


@dataclass
class PhotoIndex:
    """Where each photo is (a path, or a record of `shards[shard]` at `offset`, `length` bytes) and its class."""

    paths: list[str]
    shard: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    shards: list[str]
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.classes)

    @classmethod
    def from_records(cls, records: list[Record], partition: Partition) -> PhotoIndex:
        classes = partition.lookup([r.lat for r in records], [r.lon for r in records])
        keep = np.flatnonzero(classes >= 0)
        n = len(keep)
        return cls([records[k].image for k in keep], np.full(n, -1, np.int32), np.zeros(n, np.int64),
                   np.zeros(n, np.int64), [], classes[keep])

    @classmethod
    def from_shards(cls, shards: list[str | Path], metadata: str | Path, partition: Partition) -> PhotoIndex:
        """The records of `shards` that the metadata places in a cell (one pass over the shards to index them)."""
        from training.heads import photo_classes
        index = index_shards(shards, metadata)
        classes = photo_classes([partition], index.lat, index.lon)[:, 0]
        keep = classes >= 0
        return cls([""] * int(keep.sum()), index.shard[keep], index.offset[keep], index.length[keep], index.paths,
                   classes[keep])

    def load(self, index: int):
        if self.shard[index] < 0:
            return load_image(self.paths[index])
        path = self.shards[self.shard[index]]
        photo_id, data = read_shard_record(path, self.offset[index], self.length[index])
        return load_image(data, name=f"{path}#{photo_id}")


class FineTuneDataset(Dataset):
    """(image tensor, class) per index; an unreadable photo gives a black image with class -1 (ignored by the
    loss), so that every rank's batches keep their size."""

    def __init__(self, index: PhotoIndex, transform: Callable, size: int, seed: int) -> None:
        self.index, self.transform, self.size, self.seed = index, transform, size, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        torch.manual_seed(hash((self.seed, self.epoch, int(item))) % 2**62)
        try:
            return self.transform(self.index.load(item)), int(self.index.classes[item])
        except ImageLoadError:
            return torch.zeros(3, self.size, self.size), -1


class GlobalBatchSampler(Sampler[list[int]]):
    """This rank's share of each global batch of one epoch, from `start_step` on (full batches only)."""

    def __init__(self, n: int, global_batch: int, world: int, rank: int, seed: int) -> None:
        if global_batch % world:
            raise ValueError(f"the global batch {global_batch} must be a multiple of the {world} ranks")
        self.n, self.global_batch, self.world, self.rank, self.seed = n, global_batch, world, rank, seed
        self.epoch, self.start_step = 0, 0

    def steps(self) -> int:
        return self.n // self.global_batch

    def set_position(self, epoch: int, step: int) -> None:
        self.epoch, self.start_step = epoch, step

    def __len__(self) -> int:
        return self.steps() - self.start_step

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        for step in range(self.start_step, self.steps()):
            batch = order[step * self.global_batch:(step + 1) * self.global_batch]
            yield batch[self.rank::self.world].tolist()
