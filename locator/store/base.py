"""The vector store interface: the background collection as a filtered vector collection.

Points are ℓ2-normalised embeddings (dot product = cosine) with a payload carrying, for every partition level
k, the integer class `cell_k` and the S2 token `s2_k`, plus lat, lon, photo_id, owner, source, image and
ingest_time. Beside the points, each collection keeps a ledger of the points removed from it (`removals`).
Cell ids are Python ints everywhere: Qdrant silently matches nothing when an integer field is
queried with a string, so the interface refuses anything but integers.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np

from locator.errors import StoreError
from locator.geo import CoordinateError, validate_latlon

if TYPE_CHECKING:
    from locator.store.point import PhotoPoint

NORM_TOLERANCE = 1e-3


SOURCE_FIELD = "source"
REMOVE_CHUNK = 10_000  # ids looked up and removed per request (a server's gRPC messages are bounded)
FACET_LIMIT = 1 << 20  # distinct values counted at most (the finest partitions hold ~13 K to ~32 K cells)


def cell_field(level: int) -> str:
    return f"cell_{level}"


def token_field(level: int) -> str:
    return f"s2_{level}"


def point_id(source: str, photo_id: str) -> int:
    """Deterministic 63-bit point id of a photo: re-ingesting it overwrites, never duplicates."""
    digest = hashlib.sha256(f"{source}\x00{photo_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass(frozen=True)
class CollectionSpec:
    """What a collection is made for: vector size, number of partition levels, and the bundle's fingerprint."""

    vector_size: int
    levels: int
    fingerprint: str

    def to_json(self) -> dict:
        return {"vector_size": self.vector_size, "levels": self.levels, "fingerprint": self.fingerprint}


@dataclass(frozen=True)
class Hits:
    """Top-k results per query; rows with fewer than k hits are padded with id -1 and NaN.

    `cells`, when the search was restricted to cells, lists the finest-partition classes searched per query.
    """

    ids: np.ndarray
    scores: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    cells: list[list[int]] | None = None

    @classmethod
    def from_rows(cls, rows: list[list[tuple[int, float, float, float]]], k: int) -> Hits:
        n = len(rows)
        ids = np.full((n, k), -1, dtype=np.int64)
        scores, lat, lon = (np.full((n, k), np.nan) for _ in range(3))
        for i, row in enumerate(rows):
            for j, (pid, score, p_lat, p_lon) in enumerate(row[:k]):
                ids[i, j], scores[i, j], lat[i, j], lon[i, j] = pid, score, p_lat, p_lon
        return cls(ids, scores, lat, lon)

    def counts(self) -> np.ndarray:
        return (self.ids >= 0).sum(axis=1)


def check_cells(cells: Sequence[int | Sequence[int]] | None, n: int) -> list[list[int]] | None:
    """Per-query lists of integer cell ids (a single int per query is allowed)."""
    if cells is None:
        return None
    if len(cells) != n:
        raise StoreError(f"got {len(cells)} cell filters for {n} queries")
    out = []
    for entry in cells:
        values = [entry] if isinstance(entry, (int, np.integer)) else list(entry)
        for value in values:
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"cell ids must be integers, got {value!r} ({type(value).__name__}); "
                                "a string would silently match nothing in Qdrant")
        out.append([int(v) for v in values])
    return out


def check_batch(spec: CollectionSpec, ids: Sequence[int], vectors: np.ndarray, payloads: Sequence[dict]) -> np.ndarray:
    """Validate a batch before anything is written; returns the vectors as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != spec.vector_size:
        raise StoreError(f"vectors must have shape (n, {spec.vector_size}), got {vectors.shape}")
    if not (len(ids) == len(vectors) == len(payloads)):
        raise StoreError(f"batch has {len(ids)} ids, {len(vectors)} vectors and {len(payloads)} payloads")
    if not np.isfinite(vectors).all():
        bad = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
        raise StoreError(f"vector of point {ids[bad]} (photo {payloads[bad].get('photo_id')!r}) is not finite")
    norms = np.linalg.norm(vectors, axis=1)
    if len(norms) and np.abs(norms - 1).max() > NORM_TOLERANCE:
        bad = int(np.argmax(np.abs(norms - 1)))
        raise StoreError(f"vector of point {ids[bad]} has norm {norms[bad]:.4f}; the store needs ℓ2-normalised vectors")
    for pid, payload in zip(ids, payloads):
        for level in range(spec.levels):
            value = payload.get(cell_field(level))
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise StoreError(f"point {pid}: payload {cell_field(level)} must be an integer, got {value!r}")
        try:
            validate_latlon(payload.get("lat"), payload.get("lon"), f"point {pid} (photo {payload.get('photo_id')!r})")
        except (CoordinateError, TypeError) as exc:
            raise StoreError(str(exc)) from exc
    return vectors


@dataclass(frozen=True)
class Removal:
    """One entry of a collection's ledger of removals: which photo went, and when (UTC, ISO 8601)."""

    id: int
    source: str
    photo_id: str
    removed_at: str

    def to_json(self) -> dict:
        return asdict(self)


class VectorStore(ABC):
    """One collection of photo embeddings, made for one bundle (see CollectionSpec)."""

    spec: CollectionSpec
    location: str

    @property
    def fingerprint(self) -> str:
        return self.spec.fingerprint

    def add(self, points: Sequence["PhotoPoint"], vectors: np.ndarray) -> None:
        """Insert or overwrite photo points (their ids come from source and photo id)."""
        self.upsert([p.id for p in points], vectors, [p.payload() for p in points])

    def upsert(self, ids: Sequence[int], vectors: np.ndarray, payloads: Sequence[dict]) -> None:
        """Insert or overwrite points; the whole batch is validated before anything is written."""
        vectors = check_batch(self.spec, ids, vectors, payloads)
        clean = [{k: (int(v) if isinstance(v, np.integer) else float(v) if isinstance(v, np.floating) else v)
                  for k, v in p.items()} for p in payloads]
        self._upsert([int(i) for i in ids], vectors, clean)

    def remove(self, ids: Sequence[int]) -> list[int]:
        """Remove points, `REMOVE_CHUNK` at a time; returns the ids that were there (others are skipped). Each is
        recorded first in the collection's ledger of removals (`removals`), which ingest consults: a removed photo
        that a manifest still lists is not added back unless asked."""
        ids, removed = [int(i) for i in ids], []
        for start in range(0, len(ids), REMOVE_CHUNK):
            payloads = self.payloads(ids[start:start + REMOVE_CHUNK])
            present = sorted(payloads)
            if present:
                now = datetime.now(timezone.utc).isoformat(timespec="seconds")
                self._record_removals([Removal(i, str(payloads[i].get("source", "")),
                                               str(payloads[i].get("photo_id", "")), now) for i in present])
                self._remove(present)
                removed += present
        return removed

    def removals(self) -> list[Removal]:
        """The ledger of removals, oldest first."""
        return sorted(self._ledger(), key=lambda r: r.removed_at)  # stable: the ledger's order within a second

    def removed_ids(self) -> np.ndarray:
        """The sorted ids of every point ever removed (whether or not added again since); the ledger is streamed,
        as it can hold millions of entries once whole sources have been removed."""
        return np.unique(np.fromiter((r.id for r in self._ledger()), dtype=np.int64))

    def search(self, queries: np.ndarray, cells: Sequence[int | Sequence[int]] | None, k: int = 10,
               level: int = -1, exact: bool = False) -> Hits:
        """Top-k most similar points per query, restricted to its cell(s) at partition `level` (None: no filter).
        Within cells the search is exact; a global one goes through the store's index (an HNSW graph where
        there is one), unless `exact` asks for a scan of every point."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.spec.vector_size:
            raise StoreError(f"queries must have {self.spec.vector_size} dimensions, got {queries.shape[1]}")
        if k < 1:
            raise StoreError(f"k must be positive, got {k}")
        level = level % self.spec.levels
        return self._search(queries, check_cells(cells, len(queries)), k, level, exact)

    @abstractmethod
    def _upsert(self, ids: list[int], vectors: np.ndarray, payloads: list[dict]) -> None: ...

    @abstractmethod
    def _remove(self, ids: list[int]) -> None: ...

    @abstractmethod
    def _record_removals(self, removals: list[Removal]) -> None:
        """Add to the ledger of removals, durably, before the points go."""

    @abstractmethod
    def _ledger(self) -> Iterator[Removal]:
        """The ledger of removals, entry by entry, in any order."""

    @abstractmethod
    def _search(self, queries: np.ndarray, cells: list[list[int]] | None, k: int, level: int, exact: bool) -> Hits: ...

    @abstractmethod
    def count(self) -> int: ...

    @abstractmethod
    def payloads(self, ids: Sequence[int]) -> dict[int, dict]:
        """Full payloads of points (missing ids are absent from the result)."""

    @abstractmethod
    def vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]: ...

    @abstractmethod
    def counts_by(self, field: str) -> dict:
        """Points per value of an indexed payload field (`SOURCE_FIELD`, or a cell field), from the index."""

    @abstractmethod
    def all_ids(self, source: str | None = None) -> np.ndarray:
        """Every point's id, or those of one source."""

    def optimize(self) -> None:
        """Build the search indexes after a bulk load (nothing to do where the engine builds them by itself)."""

    @abstractmethod
    def flush(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> VectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
