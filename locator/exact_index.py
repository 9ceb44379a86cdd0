"""Exact nearest-neighbour search over ℓ2-normalised vectors, streamed in blocks (the raw-feature retrieval ablation).

The background collection itself lives in the vector store; this index serves comparisons that need another
embedding space: the raw backbone features of every finished row of a feature cache, read from the cache a block
at a time with a running top k. Resident memory depends on the block and the number of queries, not on the cache:
at MP16's scale the cache is 16.9 GB of float16, 33.9 GB as float32.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from locator.feature_cache import FeatureCache
from locator.store import Hits
from locator.store.point import PhotoPoint

SCORE_BYTES = 1 << 27  # one block's query × vector scores, and its vectors (float32)


def block_rows(queries: int, dim: int) -> int:
    """Vectors per block, so that neither the block's scores nor its float32 vectors exceed SCORE_BYTES."""
    return max(1024, SCORE_BYTES // (4 * max(queries, dim, 1)))


def top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the k highest scores and their ids, best first (equal scores: the lower id first)."""
    order = np.lexsort((ids, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def stream_top_k(queries: np.ndarray, blocks: Iterable[tuple[np.ndarray, np.ndarray]],
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids), each (queries, ≤ k), of the best matches over `blocks` of (ids, float32 vectors)."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), 0), dtype=np.int64)
    for ids, vectors in blocks:
        scores = queries @ vectors.T
        ids = np.broadcast_to(np.asarray(ids, dtype=np.int64), scores.shape)
        if scores.shape[1] > k:  # the block's k best, before the merge
            keep = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            scores, ids = np.take_along_axis(scores, keep, 1), np.take_along_axis(ids, keep, 1)
        best_scores, best_ids = top_k(np.concatenate([best_scores, scores], 1),
                                      np.concatenate([best_ids, ids], 1), k)
    return best_scores, best_ids


def normalised(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class ExactIndex:
    """The finished rows of a feature cache; ids are the cache's row numbers."""

    def __init__(self, cache: FeatureCache) -> None:
        self.cache = cache
        self.done = np.asarray(cache.done)
        self.lat, self.lon = np.asarray(cache.lat, float), np.asarray(cache.lon, float)

    @classmethod
    def from_feature_cache(cls, directory: str | Path) -> ExactIndex:
        return cls(FeatureCache.open(directory))

    def _blocks(self, size: int):
        for start in range(0, len(self.done), size):
            done = self.done[start:start + size]
            if done.any():
                yield np.flatnonzero(done) + start, normalised(self.cache.read(start, start + len(done))[done])

    def search(self, queries: np.ndarray, k: int) -> Hits:
        queries = normalised(queries)
        scores, ids = stream_top_k(queries, self._blocks(block_rows(len(queries), self.cache.dim)), k)
        out = Hits(np.full((len(queries), k), -1, dtype=np.int64), *(np.full((len(queries), k), np.nan)
                                                                      for _ in range(3)))
        width = ids.shape[1]
        out.ids[:, :width], out.scores[:, :width] = ids, scores
        out.lat[:, :width], out.lon[:, :width] = self.lat[ids], self.lon[ids]
        return out

    def payloads(self, ids) -> dict[int, dict]:
        """Payloads of some rows (the cache's index is read on first use: avoid it for millions of rows)."""
        records = self.cache.records
        return {int(i): PhotoPoint(r.photo_id, r.source, r.lat, r.lon, r.owner, r.image).payload()
                for i, r in ((int(i), records[int(i)]) for i in ids)}
