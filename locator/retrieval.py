"""Retrievers: one protocol for every way of finding a photo's K nearest reference photos.

- `WithinCell`: the store, filtered to the classifier's most probable cell(s) (search within cell, §3.4);
- `GlobalSearch`: the whole store, no filter;
- `ExactRaw`: an in-memory exact index over raw backbone features (the paper's ablation).

Each returns `Hits` (ids, similarities, lat, lon; padded with -1) and looks up payloads for the evidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from locator.exact_index import ExactIndex
from locator.store import Hits, VectorStore
from locator.swc import search_within_cell


class Retriever(Protocol):
    def search(self, features: np.ndarray, embeddings: np.ndarray, probabilities: np.ndarray, k: int) -> Hits:
        """Top-k neighbours of each photo, from its raw `features`, stored-space `embeddings` and cell
        `probabilities` (each retriever uses what it needs)."""

    def payloads(self, ids: Sequence[int]) -> dict[int, dict]: ...


class WithinCell:
    def __init__(self, store: VectorStore, top_cells: int = 1, unsure_below: float | None = None) -> None:
        self.store, self.top_cells, self.unsure_below = store, top_cells, unsure_below

    def search(self, features: np.ndarray, embeddings: np.ndarray, probabilities: np.ndarray, k: int) -> Hits:
        hits, cells = search_within_cell(self.store, embeddings, probabilities, k, self.top_cells, self.unsure_below)
        return Hits(hits.ids, hits.scores, hits.lat, hits.lon, cells)

    def payloads(self, ids: Sequence[int]) -> dict[int, dict]:
        return self.store.payloads(ids)


class GlobalSearch:
    def __init__(self, store: VectorStore) -> None:
        self.store = store

    def search(self, features: np.ndarray, embeddings: np.ndarray, probabilities: np.ndarray, k: int) -> Hits:
        return self.store.search(embeddings, None, k=k)  # through the store's index (exact=True scans all)

    def payloads(self, ids: Sequence[int]) -> dict[int, dict]:
        return self.store.payloads(ids)


class ExactRaw:
    def __init__(self, index: ExactIndex) -> None:
        self.index = index

    def search(self, features: np.ndarray, embeddings: np.ndarray, probabilities: np.ndarray, k: int) -> Hits:
        return self.index.search(features, k)

    def payloads(self, ids: Sequence[int]) -> dict[int, dict]:
        return self.index.payloads(ids)
