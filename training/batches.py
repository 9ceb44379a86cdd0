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
                pin: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """With `pin`, rows [start, stop) and the chosen rows' offsets in them, pinned, for the device to shuffle;
    else the chosen rows themselves, shuffled here (and the block read freed at once)."""
    block = data.read(start, stop)
    if not pin:  # gathered by numpy: torch would start an OpenMP pool for this thread beside the training's
        return torch.from_numpy(block[chosen - start]), None
    if not block.flags.writeable or not block.flags.c_contiguous:
        block = np.array(block)
    return torch.from_numpy(block).pin_memory(), torch.from_numpy(chosen - start).pin_memory()


def _on_device(read: tuple[torch.Tensor, torch.Tensor | None], start: int, chosen: np.ndarray,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(row ids, features) of a block's chosen rows, in their shuffled order, on the device."""
    x, offsets = read
    if offsets is None:
        return torch.from_numpy(chosen).to(device), x.to(device)
    offsets = offsets.to(device, non_blocking=True)
    return offsets + start, x.to(device, non_blocking=True)[offsets]


def batches(data: TrainingRows, rows: np.ndarray, batch_size: int, rng: np.random.Generator,
            device: str | torch.device = "cpu") -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of (row ids, features in the stored dtype) minibatches over `rows`, both on `device`.

    A thread reads the next block (pinned, on CUDA) while this one is trained on; on CUDA a block goes to the
    device whole and is shuffled there, so a step costs the host nothing but its launches."""
    device = torch.device(device)
    plan = _blocks(data, np.sort(np.asarray(rows, dtype=np.int64)), rng)
    pin = device.type == "cuda"
    carry_rows, carry_x = None, None
    with ThreadPoolExecutor(max_workers=1) as pool:
        def fetch():
            step = next(plan, None)
            return None if step is None else (step, pool.submit(_read_block, data, *step, pin))
        pending = fetch()
        while pending is not None:
            (start, _, chosen), future = pending
            pending = fetch()
            block_rows, block_x = _on_device(future.result(), start, chosen, device)
            del future  # the block as read, once shuffled, is not kept
            if carry_rows is not None:  # the rows left from the last block open this one's first batch
                need = batch_size - len(carry_rows)
                first_rows, first_x = torch.cat([carry_rows, block_rows[:need]]), torch.cat([carry_x, block_x[:need]])
                block_rows, block_x = block_rows[need:], block_x[need:]
                if len(first_rows) < batch_size:  # this block did not fill it
                    carry_rows, carry_x = first_rows, first_x
                    continue
                yield first_rows, first_x
            full = len(block_rows) // batch_size * batch_size
            for s in range(0, full, batch_size):
                yield block_rows[s:s + batch_size], block_x[s:s + batch_size]
            # copies: a view would keep the whole block alive while the next is read
            carry_rows, carry_x = block_rows[full:].clone(), block_x[full:].clone()
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
