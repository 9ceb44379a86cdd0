"""Positive pairs (two photos of the same cell): one per cell and epoch, or a batch of pairs from distinct cells
drawn at random for step-counted training, so that every cell counts equally."""

from __future__ import annotations

import numpy as np

from locator.errors import DataError


class CellPairSampler:
    """Pairs of photo indices from cells holding at least two photos (cell -1 = no class is ignored)."""

    def __init__(self, cells: np.ndarray, seed: int = 0) -> None:
        cells = np.asarray(cells)
        order = np.argsort(cells, kind="stable")
        unique, starts, counts = np.unique(cells[order], return_index=True, return_counts=True)
        usable = (unique >= 0) & (counts >= 2)
        self._members = [order[s:s + c] for s, c in zip(starts[usable], counts[usable])]
        self._order, self._starts, self._counts = order, starts[usable], counts[usable]
        self._rng = np.random.default_rng(seed)
        if not self._members:
            raise DataError("no cell holds two photos: infoNCE pairs cannot be formed")

    @property
    def num_cells(self) -> int:
        return len(self._members)

    def epoch(self) -> np.ndarray:
        """(num_cells, 2) index pairs in random order, one per cell."""
        pairs = np.array([self._rng.choice(members, size=2, replace=False) for members in self._members])
        return pairs[self._rng.permutation(len(pairs))]

    def draw(self, pairs: int) -> np.ndarray:
        """(pairs, 2) index pairs from distinct cells when there are enough cells (else cells repeat)."""
        cells = self._rng.choice(self.num_cells, size=pairs, replace=pairs > self.num_cells)
        counts, starts = self._counts[cells], self._starts[cells]
        first = self._rng.integers(0, counts)
        second = (first + 1 + self._rng.integers(0, counts - 1)) % counts
        return np.stack([self._order[starts + first], self._order[starts + second]], axis=1)
