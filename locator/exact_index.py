"""An exact in-memory nearest-neighbour index over ℓ2-normalised vectors (the raw-feature retrieval ablation).

The background collection itself lives in the vector store; this index serves comparisons that need another
embedding space, e.g. raw backbone features read from a feature cache.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from locator.feature_cache import FeatureCache
from locator.store import Hits
from locator.store.point import PhotoPoint


class ExactIndex:
    def __init__(self, vectors: np.ndarray, lat: np.ndarray, lon: np.ndarray, payloads: list[dict]) -> None:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.vectors = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
        self.lat, self.lon, self.payload_rows = np.asarray(lat), np.asarray(lon), payloads

    @classmethod
    def from_feature_cache(cls, directory: str | Path) -> ExactIndex:
        cache = FeatureCache.open(directory)
        rows = np.flatnonzero(cache.done)
        records = [cache.records[r] for r in rows]
        payloads = [PhotoPoint(r.photo_id, r.source, r.lat, r.lon, r.owner, r.image).payload() for r in records]
        return cls(cache.as_float32(rows), np.array([r.lat for r in records]), np.array([r.lon for r in records]),
                   payloads)

    def search(self, queries: np.ndarray, k: int) -> Hits:
        queries = np.asarray(queries, dtype=np.float32)
        queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        k = min(k, len(self.vectors))
        scores = queries @ self.vectors.T
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        rows = [[(int(i), float(scores[q, i]), float(self.lat[i]), float(self.lon[i])) for i in top[q]]
                for q in range(len(queries))]
        return Hits.from_rows(rows, k)

    def payloads(self, ids) -> dict[int, dict]:
        return {int(i): self.payload_rows[int(i)] for i in ids}
