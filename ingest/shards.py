"""MP16 msgpack shards as a Ray Data source: each shard is streamed by its own read task (image bytes never pass
through the driver), and each record is joined with its metadata row in that task.

The metadata CSV (`IMG_ID,AUTHOR,LAT,LON,...`, 4.7 M rows for MP16) is read once by a Ray task into numeric
columns keyed by a 64-bit hash of the photo id (locator.shards.read_metadata), and shared through Ray's object
store: numpy arrays are read there without copies by every task on a node.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from ray.data.datasource import FileBasedDatasource

from ingest.rows import KnownIds, row_schema, row_status
from locator.shards import MetadataLookup, iter_shard_records

RECORDS_PER_BLOCK = 256


class MP16ShardDatasource(FileBasedDatasource):
    """Rows (see ingest.rows) of the records of MP16 shards; `lookup` and `known` (KnownIds) are Ray object refs."""

    def __init__(self, paths: list[str], lookup, known, source: str = "mp16", **kwargs) -> None:
        super().__init__(paths, **kwargs)
        self._lookup_ref, self._known_ref, self._source = lookup, known, source

    def _read_stream(self, f: pa.NativeFile, path: str) -> Iterator[pa.Table]:
        import ray
        lookup, known = ray.get(self._lookup_ref), ray.get(self._known_ref)
        batch: list[tuple[str, bytes]] = []
        for record in iter_shard_records(f, path):
            batch.append(record)
            if len(batch) == RECORDS_PER_BLOCK:
                yield self._block(path, batch, lookup, known)
                batch = []
        if batch:
            yield self._block(path, batch, lookup, known)

    def _block(self, path: str, records: list[tuple[str, bytes]], lookup: MetadataLookup,
               known: KnownIds) -> pa.Table:
        ids = [photo_id for photo_id, _ in records]
        rows = lookup.find(ids)
        found = rows >= 0
        safe = np.clip(rows, 0, None)
        lat, lon = np.where(found, lookup.lat[safe], np.nan), np.where(found, lookup.lon[safe], np.nan)
        owners = [lookup.owners[lookup.owner_codes[r]] if r >= 0 else "" for r in rows]
        sources = [self._source] * len(ids)
        status = row_status(ids, sources, lat, lon, known, found)
        data = [d if s == "" else b"" for (_, d), s in zip(records, status)]  # bytes only for photos to embed
        return pa.table({"image": [f"{path}#{i}" for i in ids], "photo_id": ids, "owner": owners,
                         "source": sources, "lat": lat, "lon": lon, "data": data, "status": status},
                        schema=row_schema())
