"""Training data read in minibatches from a feature cache (or an in-memory array, alike), in shuffled blocks.

An epoch visits the cache's blocks of consecutive rows in random order and shuffles the rows inside each block;
a block is one file read, and rows left over at the end of a block start the next batch. Only a block (and the
next one, read ahead) and a batch are in memory at a time, so resident memory does not grow with the number of
rows, and the same seed gives the same batches whether the features come from the cache or from memory, on
whichever device.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from locator.feature_cache import FeatureCache, group_ids

BLOCK_ROWS = 65_536


@dataclass
class TrainingRows:
    """Features by row, with each row's lat, lon (degrees) and owner group id."""

    read: Callable[[int, int], np.ndarray]  # rows [start, stop), any float dtype
    gather: Callable[[np.ndarray], np.ndarray]  # rows in the order given
    lat: np.ndarray
    lon: np.ndarray
    groups: np.ndarray
    dim: int
    usable: np.ndarray  # rows with features
    block_rows: int = BLOCK_ROWS  # rows per file read

    def __len__(self) -> int:
        return len(self.lat)

    @classmethod
    def from_cache(cls, cache: FeatureCache) -> TrainingRows:
        return cls(cache.read, cache.gather, cache.lat, cache.lon, cache.groups, cache.dim, np.flatnonzero(cache.done))

    @classmethod
    def from_arrays(cls, features: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                    groups: np.ndarray | list[str] | None = None) -> TrainingRows:
        """In memory; without groups, every photo is its own owner."""
        if groups is None:
            groups = np.arange(len(lat), dtype=np.int64)
        elif len(groups) and isinstance(groups[0], str):
            groups = group_ids(list(groups))
        return cls(lambda a, b: features[a:b], lambda rows: features[np.asarray(rows)], np.asarray(lat, float),
                   np.asarray(lon, float), np.asarray(groups, np.int64), int(features.shape[1]),
                   np.arange(len(lat)))


def _blocks(data: TrainingRows, rows: np.ndarray, rng: np.random.Generator) -> Iterator[tuple[int, int, np.ndarray]]:
    """(start, stop, the block's chosen rows in shuffled order) for each block holding any of the sorted `rows`,
    blocks in random order."""
    block_rows = data.block_rows
    for block in rng.permutation(-(-len(data) // block_rows)):
        start, stop = block * block_rows, min((block + 1) * block_rows, len(data))
        lo, hi = np.searchsorted(rows, [start, stop])
        if lo < hi:
            inside = rows[lo:hi]
            yield start, stop, inside[rng.permutation(len(inside))]


def _read_block(data: TrainingRows, start: int, stop: int, chosen: np.ndarray,
                pin: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows [start, stop) and the chosen rows' offsets in them, as tensors (pinned for a non-blocking upload)."""
    block = data.read(start, stop)
    if not block.flags.writeable or not block.flags.c_contiguous:
        block = np.array(block)
    tensors = torch.from_numpy(block), torch.from_numpy(chosen - start)
    return tuple(t.pin_memory() for t in tensors) if pin else tensors


def batches(data: TrainingRows, rows: np.ndarray, batch_size: int, rng: np.random.Generator,
            device: str | torch.device = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of (row ids, features in the stored dtype) minibatches over `rows`, both on `device`.

    A thread reads the next block (pinned, on CUDA) while this one is trained on; a block goes to the device
    whole and is shuffled there, so a step costs the host nothing but its launches."""
    device = torch.device(device)
    plan = _blocks(data, np.sort(np.asarray(rows, dtype=np.int64)), rng)
    pin = device.type == "cuda"
    carry_rows = carry_x = None
    with ThreadPoolExecutor(max_workers=1) as pool:
        def fetch():
            step = next(plan, None)
            return None if step is None else (step[0], pool.submit(_read_block, data, *step, pin))
        pending = fetch()
        while pending is not None:
            start, future = pending
            pending = fetch()
            block, offsets = (t.to(device, non_blocking=True) for t in future.result())
            block_rows, block_x = offsets + start, block[offsets]
            if carry_rows is not None:
                block_rows, block_x = torch.cat([carry_rows, block_rows]), torch.cat([carry_x, block_x])
            full = len(block_rows) // batch_size * batch_size
            for s in range(0, full, batch_size):
                yield block_rows[s:s + batch_size], block_x[s:s + batch_size]
            carry_rows, carry_x = block_rows[full:], block_x[full:]
    if carry_rows is not None and len(carry_rows):
        yield carry_rows, carry_x


def holdout(data: TrainingRows, rows: np.ndarray, fraction: float, max_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) rows: whole owner groups are held out (about `fraction` of them, by a seeded hash of
    the group id), and the validation rows are capped at `max_rows` (a seeded sample)."""
    rows = np.asarray(rows, dtype=np.int64)
    if fraction <= 0:
        return rows, rows[:0]
    mixed = (data.groups[rows].astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seed)) % np.uint64(10_000)
    held = mixed < np.uint64(round(fraction * 10_000))
    validation = rows[held]
    if len(validation) > max_rows:
        validation = np.sort(np.random.default_rng(seed).choice(validation, max_rows, replace=False))
    return rows[~held], validation
