"""Search within cell (§3.4): classify, then a filtered top-K query inside the predicted cell(s) of the store.

Beyond the paper, `top_cells` > 1 searches the most probable cells together: always (`unsure_below=None`), or only
for photos whose best cell is sparse (fewer than K stored photos) or whose best-cell probability is below
`unsure_below`. Off by default (`top_cells=1`).
"""

from __future__ import annotations

import numpy as np

from locator.errors import SettingsError
from locator.store import Hits, VectorStore


def choose_cells(probabilities: np.ndarray, top_cells: int = 1, unsure_below: float | None = None) -> list[list[int]]:
    """Per photo, the cell classes to search: the best one, or the `top_cells` most probable."""
    if top_cells < 1:
        raise SettingsError(f"top_cells must be at least 1, got {top_cells}")
    ranked = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_cells]
    best_p = probabilities[np.arange(len(probabilities)), ranked[:, 0]]
    widen = np.ones(len(probabilities), bool) if unsure_below is None else best_p < unsure_below
    return [[int(c) for c in (row if w else row[:1])] for row, w in zip(ranked, widen)]


def search_within_cell(store: VectorStore, embeddings: np.ndarray, probabilities: np.ndarray, k: int = 10,
                       top_cells: int = 1, unsure_below: float | None = None) -> tuple[Hits, list[list[int]]]:
    """Top-k stored photos inside each photo's chosen cell(s) of the finest partition, and the cells searched."""
    cells = choose_cells(probabilities, top_cells, unsure_below)
    hits = store.search(embeddings, cells, k=k)
    if top_cells > 1 and unsure_below is not None:
        sparse = np.flatnonzero((hits.counts() < k) & np.array([len(c) == 1 for c in cells]))
        if len(sparse):
            wider = choose_cells(probabilities[sparse], top_cells, None)
            again = store.search(embeddings[sparse], wider, k=k)
            for row, index in enumerate(sparse):
                cells[index] = wider[row]
                for array, source in ((hits.ids, again.ids), (hits.scores, again.scores), (hits.lat, again.lat),
                                      (hits.lon, again.lon)):
                    array[index] = source[row]
    return hits, cells
