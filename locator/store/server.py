"""Qdrant server backend through qdrant-client (gRPC preferred), for the docker-compose deployment and its dashboard.

`QdrantClient(":memory:")` serves as a double of the server API in tests (it scans every point per filtered
query: fine for tests, never for real collections). The collection's spec lives in its metadata.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from urllib.parse import urlparse

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from locator.store.base import (FACET_LIMIT, SOURCE_FIELD, CollectionSpec, Hits, Removal, StoreError, VectorStore,
                                cell_field)

_SCROLL_PAGE = 10_000
DEFAULT_COLLECTION = "geoloc"
LEDGER_SUFFIX = "-removed"  # the collection beside it that keeps its ledger of removals


def open_server(location: str, spec: CollectionSpec, create: bool = True, wait_s: float = 0.0) -> ServerStore:
    """`http(s)://host:6333[/collection]`: a Qdrant server (gRPC preferred); `wait_s` is for Edge only."""
    url = urlparse(location)
    if not url.netloc:
        raise StoreError(f"store location {location!r} names no server: use http://host:6333[/collection]")
    client = QdrantClient(url=f"{url.scheme}://{url.netloc}", prefer_grpc=True)
    return ServerStore(client, url.path.strip("/") or DEFAULT_COLLECTION, spec, location, create)


def open_memory(location: str, spec: CollectionSpec, create: bool = True, wait_s: float = 0.0) -> ServerStore:
    """`memory[:name]`: qdrant-client's in-process double of the server API (tests only)."""
    return ServerStore(QdrantClient(":memory:"), location.partition(":")[2] or DEFAULT_COLLECTION, spec, location,
                       create)


def _cell_filter(field: str, cells: list[int]) -> qm.Filter:
    match = qm.MatchValue(value=cells[0]) if len(cells) == 1 else qm.MatchAny(any=cells)
    return qm.Filter(must=[qm.FieldCondition(key=field, match=match)])


class ServerStore(VectorStore):
    def __init__(self, client: QdrantClient, collection: str, spec: CollectionSpec, location: str,
                 create: bool = True) -> None:
        self.client, self.collection, self.location = client, collection, location
        if not create and not client.collection_exists(collection):
            raise StoreError(f"{location}: no collection {collection!r} (ingest photos into it first with geoloc-ingest)")
        if client.collection_exists(collection):
            stored = CollectionSpec(**{k: (client.get_collection(collection).config.metadata or {}).get(k)
                                       for k in ("vector_size", "levels", "fingerprint")})
            if stored.fingerprint != spec.fingerprint:
                raise StoreError(f"{location}: collection {collection!r} was made for another bundle (fingerprint "
                                 f"{str(stored.fingerprint)[:12]}, this bundle {spec.fingerprint[:12]})")
            if stored != spec:
                raise StoreError(f"{location}: collection {collection!r} is {stored.to_json()}, not {spec.to_json()}")
        else:
            # A ledger left by a deleted collection of this name is not this collection's (its photos were never
            # removed from this one).
            if client.collection_exists(f"{collection}{LEDGER_SUFFIX}"):
                client.delete_collection(f"{collection}{LEDGER_SUFFIX}")
            client.create_collection(collection, vectors_config=qm.VectorParams(size=spec.vector_size,
                                                                                distance=qm.Distance.DOT),
                                     metadata=spec.to_json())
            for level in range(spec.levels):  # before any upload, as Qdrant recommends
                client.create_payload_index(collection, cell_field(level), qm.PayloadSchemaType.INTEGER)
        if SOURCE_FIELD not in (client.get_collection(collection).payload_schema or {}):
            client.create_payload_index(collection, SOURCE_FIELD, qm.PayloadSchemaType.KEYWORD)
        self.spec = spec

    def _upsert(self, ids: list[int], vectors: np.ndarray, payloads: list[dict]) -> None:
        self.client.upsert(self.collection, points=qm.Batch(ids=ids, vectors=vectors.tolist(), payloads=payloads),
                           wait=True)

    def _remove(self, ids: list[int]) -> None:
        self.client.delete(self.collection, points_selector=qm.PointIdsList(points=ids), wait=True)

    @property
    def _ledger_name(self) -> str:
        return f"{self.collection}{LEDGER_SUFFIX}"

    def _record_removals(self, removals: list[Removal]) -> None:
        if not self.client.collection_exists(self._ledger_name):
            try:
                self.client.create_collection(self._ledger_name,
                                              vectors_config=qm.VectorParams(size=1, distance=qm.Distance.DOT))
            except Exception:  # noqa: BLE001 - the client's errors differ by transport; another replica may have won
                if not self.client.collection_exists(self._ledger_name):
                    raise
        # Keyed by removal, not by point: a photo removed, added again and removed again keeps both entries.
        keys = [str(uuid.uuid4()) for _ in removals]
        self.client.upsert(self._ledger_name, points=qm.Batch(ids=keys, vectors=[[1.0]] * len(removals),
                                                         payloads=[r.to_json() for r in removals]), wait=True)

    def _ledger(self) -> Iterator[Removal]:
        if not self.client.collection_exists(self._ledger_name):
            return
        offset = None
        while True:
            records, offset = self.client.scroll(self._ledger_name, limit=_SCROLL_PAGE, offset=offset,
                                                 with_payload=True, with_vectors=False)
            yield from (Removal(**r.payload) for r in records)
            if offset is None:
                return

    def _search(self, queries: np.ndarray, cells: list[list[int]] | None, k: int, level: int, exact: bool) -> Hits:
        field = cell_field(level)
        requests = [qm.QueryRequest(query=q.tolist(), limit=k, with_payload=["lat", "lon"],
                                    params=qm.SearchParams(exact=exact or cells is not None),
                                    filter=_cell_filter(field, cells[i]) if cells is not None else None)
                    for i, q in enumerate(queries)]
        responses = self.client.query_batch_points(self.collection, requests=requests)
        rows = [[(int(p.id), p.score, p.payload["lat"], p.payload["lon"]) for p in r.points] for r in responses]
        return Hits.from_rows(rows, k)

    def count(self) -> int:
        return self.client.count(self.collection, exact=True).count

    def payloads(self, ids: Sequence[int]) -> dict[int, dict]:
        records = self.client.retrieve(self.collection, [int(i) for i in ids], with_payload=True)
        return {int(r.id): dict(r.payload) for r in records}

    def vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        records = self.client.retrieve(self.collection, [int(i) for i in ids], with_payload=False, with_vectors=True)
        return {int(r.id): np.asarray(r.vector, dtype=np.float32) for r in records}

    def counts_by(self, field: str) -> dict:
        hits = self.client.facet(self.collection, key=field, limit=FACET_LIMIT, exact=True).hits
        return {h.value: int(h.count) for h in hits if h.count > 0}  # a removed value can stay with 0

    def all_ids(self, source: str | None = None) -> np.ndarray:
        only = None if source is None else qm.Filter(must=[qm.FieldCondition(key=SOURCE_FIELD,
                                                                             match=qm.MatchValue(value=source))])
        ids, offset = [], None
        while True:
            records, offset = self.client.scroll(self.collection, limit=_SCROLL_PAGE, offset=offset, with_payload=False,
                                                 scroll_filter=only)
            ids.extend(int(r.id) for r in records)
            if offset is None:
                return np.array(ids, dtype=np.int64)

    def flush(self) -> None:
        """Upserts wait for the server to apply them; nothing is buffered here."""

    def close(self) -> None:
        self.client.close()
