"""Qdrant Edge backend: the real Qdrant engine in-process, one writer per path (the WAL is the lock).

Layout: `<path>/geoloc_store.json` (what the collection was made for), `<path>/shard/` (Qdrant's files) and,
once a point has been removed, `<path>/removed.jsonl` (the ledger of removals).
Within-cell queries are exact, on the float vectors: the payload index finds the cell's points, whatever its size.
Global (unfiltered) queries, which retrieval and the fused method run for every photo, go through an HNSW graph
over int8-quantised vectors, rescored on the float vectors, once `optimize()` has built it (ingest does at its
end); without it they scan every vector exactly: 380 ms a query at the paper's 763 K points on 2 cores against
5 ms (benchmarks/results/store.md). Stores made before the graph keep scanning exactly.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import qdrant_edge as qe

from locator.store.base import (FACET_LIMIT, SOURCE_FIELD, CollectionSpec, Hits, Removal, StoreError, VectorStore,
                                cell_field)

SPEC_FILE = "geoloc_store.json"
LEDGER_FILE = "removed.jsonl"  # the ledger of removals, one JSON object a line
_SCROLL_PAGE = 10_000
_UPSERT_CHUNK = 256
# Segments under full_scan_threshold KB of vectors (about 1,400 at 1,792-d) get no graph and are scanned exactly.
_HNSW = dict(m=16, ef_construct=100, full_scan_threshold=10_000)
GLOBAL_EF = 128  # graph candidates per global query
_QUANTISED = qe.ScalarQuantizationConfig(qe.ScalarType.Int8, quantile=0.99, always_ram=True)
_EXACT_VECTORS = qe.QuantizationSearchParams(ignore=True)  # within cells: the float vectors, as the paper's SwC
_RESCORED = qe.QuantizationSearchParams(rescore=True, oversampling=4.0)


def _cell_filter(field: str, cells: list[int]) -> qe.Filter:
    match = qe.MatchValue(cells[0]) if len(cells) == 1 else qe.MatchAny(cells)
    return qe.Filter(must=[qe.FieldCondition(field, match=match)])


class EdgeStore(VectorStore):
    def __init__(self, path: str | Path, spec: CollectionSpec, create: bool = True, wait_s: float = 0.0) -> None:
        """Open (or create) the shard; while another process holds its WAL, retry for up to `wait_s` seconds
        (a writer of a killed job can outlive it by a few seconds)."""
        self.path = Path(path)
        self.location = f"edge:{self.path}"
        if not create and not (self.path / SPEC_FILE).is_file():
            raise StoreError(f"{self.location} holds no collection (ingest photos into it first with geoloc-ingest)")
        self.spec = _open_spec(self.path, spec)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.shard = self._open_shard(spec)
                break
            except Exception as exc:  # the binding raises a bare Exception, e.g. for a WAL held by another writer
                if "WouldBlock" in str(exc) and time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                raise StoreError(f"{self.location}: cannot open the Qdrant Edge shard ({exc}); "
                                 "is another process writing to it?") from exc
        self._ensure_indexes()

    def _open_shard(self, spec: CollectionSpec) -> qe.EdgeShard:
        shard_dir = self.path / "shard"
        if (shard_dir / "edge_config.json").exists():
            return qe.EdgeShard.load(str(shard_dir))
        config = qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=spec.vector_size, distance=qe.Distance.Dot),
                               hnsw_config=qe.HnswIndexConfig(**_HNSW), quantization_config=_QUANTISED,
                               payload_memory=qe.Memory.Cached)  # lat/lon of hits are read per query
        return qe.EdgeShard.create(str(shard_dir), config)

    def _ensure_indexes(self) -> None:
        """Integer indexes on the cell fields (the filters of SwC) and a keyword index on the source (its counts);
        a store made before the source index gets it on first open."""
        existing = set(self.shard.info().payload_schema)
        wanted = {cell_field(level): qe.PayloadSchemaType.Integer for level in range(self.spec.levels)}
        for field, kind in {**wanted, SOURCE_FIELD: qe.PayloadSchemaType.Keyword}.items():
            if field not in existing:
                self.shard.update(qe.UpdateOperation.create_field_index(field, kind))

    def _upsert(self, ids: list[int], vectors: np.ndarray, payloads: list[dict]) -> None:
        # A memoryview of a float32 row reaches Qdrant through the buffer protocol: ~28 µs per 1,792-d point,
        # against ~95 µs for a Python list. Building points also overlaps Qdrant's update of the previous chunk.
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)

        def points(start: int) -> list[qe.Point]:
            stop = start + _UPSERT_CHUNK
            return [qe.Point(pid, memoryview(row), payload)
                    for pid, row, payload in zip(ids[start:stop], vectors[start:stop], payloads[start:stop])]

        starts = range(0, len(ids), _UPSERT_CHUNK)
        if len(starts) == 1:
            self.shard.update(qe.UpdateOperation.upsert_points(points(0)))
            return
        with ThreadPoolExecutor(max_workers=1) as builder:
            pending = builder.submit(points, starts[0])
            for following in [*starts[1:], None]:
                chunk = pending.result()
                if following is not None:
                    pending = builder.submit(points, following)
                self.shard.update(qe.UpdateOperation.upsert_points(chunk))

    def _remove(self, ids: list[int]) -> None:
        self.shard.update(qe.UpdateOperation.delete_points(ids))

    def _record_removals(self, removals: list[Removal]) -> None:
        ledger = self.path / LEDGER_FILE
        new = not ledger.exists()
        with ledger.open("a+b") as f:
            f.seek(0, os.SEEK_END)
            if f.tell():
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a line cut by a crash stays a line of its own
                    f.write(b"\n")
            f.write("".join(json.dumps(r.to_json()) + "\n" for r in removals).encode())
            f.flush()
            os.fsync(f.fileno())
        if new:  # the file's name too must survive a crash
            _fsync_dir(self.path)

    def _ledger(self) -> Iterator[Removal]:
        ledger = self.path / LEDGER_FILE
        if not ledger.is_file():
            return
        with ledger.open() as lines:
            for line in lines:
                try:
                    yield Removal(**json.loads(line))
                except (ValueError, TypeError):  # a line cut by a crash: its points were never removed
                    continue

    def _search(self, queries: np.ndarray, cells: list[list[int]] | None, k: int, level: int, exact: bool) -> Hits:
        field = cell_field(level)
        selector = qe.PayloadSelector.Include(["lat", "lon"])
        if cells is None and not exact:
            params = qe.SearchParams(hnsw_ef=GLOBAL_EF, quantization=_RESCORED)
        else:  # exact even in cells large enough for the planner to prefer the graph; the payload index still
            params = qe.SearchParams(exact=True, quantization=_EXACT_VECTORS)  # finds their points (as fast)
        requests = [qe.QueryRequest(limit=k, query=qe.Query.Nearest(q.tolist()), with_payload=selector, params=params,
                                    filter=_cell_filter(field, cells[i]) if cells is not None else None)
                    for i, q in enumerate(queries)]
        if len(requests) == 1:  # a one-query batch measured slower than a plain query
            results = [self.shard.query(requests[0])]
        else:
            results = self.shard.query_batch(qe.QueryBatchRequest(requests))
        rows = [[(int(p.id), p.score, p.payload["lat"], p.payload["lon"]) for p in result] for result in results]
        return Hits.from_rows(rows, k)

    def count(self) -> int:
        return self.shard.count(qe.CountRequest(exact=True))

    def payloads(self, ids: Sequence[int]) -> dict[int, dict]:
        return {int(r.id): dict(r.payload) for r in self.shard.retrieve([int(i) for i in ids], with_payload=True, with_vector=False)}

    def vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        records = self.shard.retrieve([int(i) for i in ids], with_payload=False, with_vector=True)
        return {int(r.id): np.asarray(r.vector, dtype=np.float32) for r in records}

    def counts_by(self, field: str) -> dict:
        hits = self.shard.facet(qe.FacetRequest(field, limit=FACET_LIMIT, exact=True)).hits
        return {h.value: int(h.count) for h in hits if h.count > 0}  # a removed value can stay with 0

    def all_ids(self, source: str | None = None) -> np.ndarray:
        only = (None if source is None
                else qe.Filter(must=[qe.FieldCondition(SOURCE_FIELD, match=qe.MatchValue(source))]))
        ids, offset = [], None
        while True:
            records, offset = self.shard.scroll(qe.ScrollRequest(limit=_SCROLL_PAGE, offset=offset, with_payload=False,
                                                                 filter=only))
            ids.extend(int(r.id) for r in records)
            if offset is None:
                return np.array(ids, dtype=np.int64)

    def optimize(self) -> None:
        self.shard.optimize()

    def flush(self) -> None:
        self.shard.flush()

    def close(self) -> None:
        if getattr(self, "shard", None) is not None:
            self.shard.flush()
            self.shard.close()
            self.shard = None


def open_edge(location: str, spec: CollectionSpec, create: bool = True, wait_s: float = 0.0) -> EdgeStore:
    """`edge:/path`: Qdrant Edge, embedded; a store held by another process is retried for `wait_s` seconds."""
    path = location.partition(":")[2]
    if not path:
        raise StoreError(f"store location {location!r} names no folder: use edge:/path/to/store")
    return EdgeStore(path, spec, create, wait_s)


def _open_spec(path: Path, wanted: CollectionSpec) -> CollectionSpec:
    spec_path = path / SPEC_FILE
    if spec_path.is_file():
        stored = CollectionSpec(**json.loads(spec_path.read_text()))
        if stored.fingerprint != wanted.fingerprint:
            raise StoreError(f"edge:{path} holds a collection made for another bundle (fingerprint "
                             f"{stored.fingerprint[:12]}, this bundle {wanted.fingerprint[:12]}); use another store path")
        if stored != wanted:
            raise StoreError(f"edge:{path}: collection is {stored.to_json()}, not {wanted.to_json()}")
        return stored
    if path.exists() and any(path.iterdir()):
        raise StoreError(f"edge:{path} is not empty and holds no geoloc collection; refusing to write there")
    path.mkdir(parents=True, exist_ok=True)
    temporary = spec_path.with_suffix(".tmp")
    temporary.write_text(json.dumps(wanted.to_json(), indent=2) + "\n")
    os.replace(temporary, spec_path)
    return wanted


def _fsync_dir(path: Path) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
