"""MP16 msgpack shards as a Ray Data source: each shard is streamed by its own read task (image bytes never pass
through the driver), and each record is joined with its metadata row in that task.

The metadata CSV (`IMG_ID,AUTHOR,LAT,LON,...`, 4.7 M rows for MP16) is read once by a Ray task into numeric
columns keyed by a 64-bit hash of the photo id, and shared through Ray's object store: numpy arrays are read
there without copies by every task on a node.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from ray.data.datasource import FileBasedDatasource

from ingest.rows import ROW_SCHEMA, row_status
from locator.datasets import iter_shard_records
from locator.feature_cache import group_ids

RECORDS_PER_BLOCK = 256


@dataclass(frozen=True)
class MetadataLookup:
    """Metadata columns sorted by `keys` (hashes of the photo ids)."""

    keys: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    owner_codes: np.ndarray
    owners: list[str]

    def find(self, photo_ids: list[str]) -> np.ndarray:
        """Row of each photo id, or -1."""
        keys = group_ids(photo_ids)
        if not len(self.keys):
            return np.full(len(keys), -1)
        pos = np.clip(np.searchsorted(self.keys, keys), 0, len(self.keys) - 1)
        return np.where(self.keys[pos] == keys, pos, -1)


def read_metadata(path: str) -> MetadataLookup:
    """The lookup of a benchmark-format metadata CSV (IMG_ID, AUTHOR, LAT, LON columns, any case)."""
    from pyarrow import csv

    table = csv.read_csv(path)
    names = {name.strip().lower(): name for name in table.column_names}
    missing = {"img_id", "lat", "lon"} - set(names)
    if missing:
        from locator.datasets import DatasetError
        raise DatasetError(f"{path}: metadata needs the columns IMG_ID, LAT, LON (missing {', '.join(sorted(missing))})")
    ids = [str(v) for v in table.column(names["img_id"]).to_pylist()]
    owners = [str(v or "") for v in table.column(names["author"]).to_pylist()] if "author" in names else [""] * len(ids)
    unique, codes = np.unique(np.array(owners, dtype=object), return_inverse=True)
    keys = group_ids(ids)
    order = np.argsort(keys, kind="stable")
    lat = np.asarray(table.column(names["lat"]).to_numpy(zero_copy_only=False), dtype=np.float64)
    lon = np.asarray(table.column(names["lon"]).to_numpy(zero_copy_only=False), dtype=np.float64)
    return MetadataLookup(keys[order], lat[order], lon[order], codes[order].astype(np.int32), [str(o) for o in unique])


class MP16ShardDatasource(FileBasedDatasource):
    """Rows (see ingest.rows) of the records of MP16 shards; `lookup` and `stored` are Ray object refs."""

    def __init__(self, paths: list[str], lookup, stored, source: str = "mp16", **kwargs) -> None:
        super().__init__(paths, **kwargs)
        self._lookup_ref, self._stored_ref, self._source = lookup, stored, source

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        import ray
        lookup, stored = ray.get(self._lookup_ref), ray.get(self._stored_ref)
        batch: list[tuple[str, bytes]] = []
        for record in iter_shard_records(f, path):
            batch.append(record)
            if len(batch) == RECORDS_PER_BLOCK:
                yield self._block(path, batch, lookup, stored)
                batch = []
        if batch:
            yield self._block(path, batch, lookup, stored)

    def _block(self, path: str, records: list[tuple[str, bytes]], lookup: MetadataLookup,
               stored: np.ndarray) -> pa.Table:
        ids = [photo_id for photo_id, _ in records]
        rows = lookup.find(ids)
        found = rows >= 0
        safe = np.clip(rows, 0, None)
        lat, lon = np.where(found, lookup.lat[safe], np.nan), np.where(found, lookup.lon[safe], np.nan)
        owners = [lookup.owners[lookup.owner_codes[r]] if r >= 0 else "" for r in rows]
        sources = [self._source] * len(ids)
        status = row_status(ids, sources, lat, lon, stored, found)
        data = [d if s == "" else b"" for (_, d), s in zip(records, status)]  # bytes only for photos to embed
        return pa.table({"image": [f"{path}#{i}" for i in ids], "photo_id": ids, "owner": owners,
                         "source": sources, "lat": lat, "lon": lon, "data": data, "status": status},
                        schema=ROW_SCHEMA)
