"""Adaptive S2 partitioning (§3.1 of the paper, after PlaNet).

Start from the six face cells and repeatedly split the cell holding the most photos into its four children,
until no cell holds more than τmax photos, a target number of cells is reached, or the fullest cell is at the
maximum level. Cells with fewer than τmin photos are then dropped: their photos get no class. A cell's centre
is the spherical mean of its photos. The result depends only on the input coordinates and the settings.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from locator import s2
from locator.cells import NO_CELL, Partition
from locator.errors import SettingsError
from locator.settings import REQUIRED, option
from locator.geo import latlon_to_xyz, validate_latlon, xyz_to_latlon


@dataclass(frozen=True)
class PartitionSettings:
    """τmax, τmin and the optional stopping limits of the adaptive partitioning."""

    tau_max: int = option(REQUIRED, "split cells holding more photos than this")
    tau_min: int = option(1, "drop cells holding fewer photos than this")
    max_cells: int | None = option(None, "stop splitting at this many cells")
    max_level: int = option(s2.MAX_LEVEL, "never split cells at this S2 level")

    def __post_init__(self) -> None:
        if self.tau_max < 1 or self.tau_min < 0:
            raise SettingsError(f"need tau_max >= 1 and tau_min >= 0, got tau_max={self.tau_max}, tau_min={self.tau_min}")
        if self.max_cells is not None and self.max_cells < 6:
            raise SettingsError(f"max_cells must be at least 6 (the face cells), got {self.max_cells}")
        if not 0 <= self.max_level <= s2.MAX_LEVEL:
            raise SettingsError(f"max_level must be in 0..30, got {self.max_level}")


@dataclass(frozen=True)
class PartitionResult:
    """The partition and, for every input photo, its class index (NO_CELL = -1 when its cell was dropped)."""

    partition: Partition
    classes: np.ndarray

    def summary(self) -> str:
        counts = self.partition.counts
        levels = self.partition.levels
        unplaced = int((self.classes == NO_CELL).sum())
        if len(counts) == 0:
            return f"{len(self.classes):,} photos -> 0 cells ({unplaced:,} photos without a class)"
        return (
            f"{len(self.classes):,} photos -> {len(counts):,} cells (levels {levels.min()}-{levels.max()}, "
            f"photos per cell min {counts.min():,} / median {int(np.median(counts)):,} / max {counts.max():,}); "
            f"{unplaced:,} photos without a class"
        )


class _PhotoCounter:
    """Counts photos inside S2 cells with two binary searches on the sorted leaf ids."""

    def __init__(self, sorted_leaves: np.ndarray) -> None:
        self.leaves = sorted_leaves

    def span(self, cell_id: int) -> tuple[int, int]:
        lo, hi = s2.range_min([cell_id])[0], s2.range_max([cell_id])[0]
        return int(np.searchsorted(self.leaves, lo, "left")), int(np.searchsorted(self.leaves, hi, "right"))

    def count(self, cell_id: int) -> int:
        start, stop = self.span(cell_id)
        return stop - start


def split_cells(sorted_leaves: np.ndarray, settings: PartitionSettings) -> list[int]:
    """Non-empty cells after splitting the fullest cell until a stopping rule holds (before the τmin drop)."""
    counter = _PhotoCounter(sorted_leaves)
    heap = [(-counter.count(c), c) for c in s2.face_ids()]
    heap = [item for item in heap if item[0] < 0]
    heapq.heapify(heap)
    done: list[int] = []
    while heap and -heap[0][0] > settings.tau_max:
        neg_count, cell = heapq.heappop(heap)
        if int(s2.levels([cell])[0]) >= settings.max_level:
            done.append(cell)
            continue
        kids = [(-counter.count(c), c) for c in s2.children(cell)]
        kids = [item for item in kids if item[0] < 0]
        if settings.max_cells is not None and len(heap) + len(done) + len(kids) > settings.max_cells:
            heapq.heappush(heap, (neg_count, cell))
            break
        for item in kids:
            heapq.heappush(heap, item)
    return sorted(done + [cell for _, cell in heap])


def adaptive_partition(lat: ArrayLike, lon: ArrayLike, settings: PartitionSettings) -> PartitionResult:
    """Partition photos at (lat, lon) degrees into S2 cells; see the module docstring."""
    lat_arr, lon_arr = validate_latlon(np.ravel(lat), np.ravel(lon), "partition coordinates")
    leaves = s2.leaf_ids(lat_arr, lon_arr)
    order = np.argsort(leaves, kind="stable")
    sorted_leaves = leaves[order]
    counter = _PhotoCounter(sorted_leaves)
    cells = split_cells(sorted_leaves, settings)
    spans = np.array([counter.span(c) for c in cells], dtype=np.int64).reshape(-1, 2)
    counts = spans[:, 1] - spans[:, 0]
    keep = counts >= max(settings.tau_min, 1)
    kept_cells = [c for c, k in zip(cells, keep) if k]
    lat_c, lon_c = _cell_centres(latlon_to_xyz(lat_arr[order], lon_arr[order]), spans[keep])
    partition = Partition(
        tokens=tuple(s2.id_to_token(c) for c in kept_cells),
        counts=counts[keep],
        lat=lat_c,
        lon=lon_c,
        num_images=len(lat_arr),
    )
    return PartitionResult(partition=partition, classes=partition.lookup_leaf_ids(leaves))


def _cell_centres(sorted_xyz: np.ndarray, spans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spherical mean of the photos in each [start, stop) span of the leaf-sorted unit vectors."""
    if len(spans) == 0:
        return np.zeros(0), np.zeros(0)
    cumulative = np.concatenate([np.zeros((1, 3)), np.cumsum(sorted_xyz, axis=0)])
    sums = cumulative[spans[:, 1]] - cumulative[spans[:, 0]]
    return xyz_to_latlon(sums)
