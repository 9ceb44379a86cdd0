"""MP16 msgpack shards: records `{"id": str, "image": bytes}` one after another. The one shard reader of the
project: Ray ingest streams shards with `iter_shard_records`; feature caching, fine-tuning and `list_rows` share
`index_shards` (record offsets joined with a metadata CSV, `IMG_ID,AUTHOR,LAT,LON,...`, through
`MetadataLookup`) and read records by offset.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import msgpack
import numpy as np

from locator.datasets import DatasetError, Record
from locator.feature_cache import group_ids
from locator.geo import valid_latlon


def iter_shard_records(source: Path | BinaryIO, name: str | None = None) -> Iterator[tuple[str, bytes]]:
    """(photo id, encoded image) of each `{"id", "image"}` record of an MP16 msgpack shard, streamed from a path or
    a binary file object; the one shard reader of the project (Ray ingest and training read shards with it)."""
    label = name or str(source)
    try:
        if isinstance(source, (str, Path)):
            with Path(source).open("rb") as handle:
                yield from iter_shard_records(handle, label)
            return
        for position, item in enumerate(msgpack.Unpacker(source, raw=False, max_buffer_size=1 << 30)):
            if not isinstance(item, dict) or "id" not in item or "image" not in item:
                raise DatasetError(f"{label}: record {position} is not an {{'id', 'image'}} map")
            yield str(item["id"]), bytes(item["image"])
    except (OSError, msgpack.UnpackException, ValueError) as exc:
        raise DatasetError(f"{label}: cannot read msgpack shard ({exc})") from exc


def write_shard(path: str | Path, records: Iterable[tuple[str, bytes]]) -> int:
    """Write `{"id", "image"}` msgpack records (photo id, encoded image) as one MP16-format shard; returns the count."""
    count = 0
    with Path(path).open("wb") as handle:
        packer = msgpack.Packer(use_bin_type=True)
        for photo_id, data in records:
            handle.write(packer.pack({"id": str(photo_id), "image": bytes(data)}))
            count += 1
    return count


def index_shard(path: str | Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(photo ids, byte offsets, byte lengths) of every record of a shard, for reading records one by one."""
    ids, offsets, lengths = [], [], []
    try:
        with Path(path).open("rb") as handle:
            unpacker = msgpack.Unpacker(handle, raw=False, max_buffer_size=1 << 30)
            start = 0
            for position, item in enumerate(unpacker):
                if not isinstance(item, dict) or "id" not in item:
                    raise DatasetError(f"{path}: record {position} is not an {{'id', 'image'}} map")
                end = unpacker.tell()
                ids.append(str(item["id"]))
                offsets.append(start)
                lengths.append(end - start)
                start = end
    except (OSError, msgpack.UnpackException, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read msgpack shard ({exc})") from exc
    return ids, np.array(offsets, dtype=np.int64), np.array(lengths, dtype=np.int64)


def read_shard_record(path: str | Path, offset: int, length: int) -> tuple[str, bytes]:
    """One record of a shard, by its offset and length from `index_shard`."""
    fd = os.open(path, os.O_RDONLY)
    try:
        item = msgpack.unpackb(os.pread(fd, int(length), int(offset)), raw=False)
    except (OSError, msgpack.UnpackException, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read the record at byte {offset} ({exc})") from exc
    finally:
        os.close(fd)
    return str(item["id"]), bytes(item["image"])


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


def read_metadata(path: str | Path) -> MetadataLookup:
    """The lookup of a benchmark-format metadata CSV (IMG_ID, AUTHOR, LAT, LON columns, any case); ids and owners
    are trimmed. Rows whose lat/lon are not valid degrees stay in the lookup: their photos are rejected one by one
    (locator.geo.valid_latlon tells them)."""
    import pyarrow
    from pyarrow import csv

    try:
        table = csv.read_csv(str(path))
    except (OSError, pyarrow.ArrowInvalid) as exc:
        raise DatasetError(f"{path}: cannot read the metadata CSV ({exc})") from exc
    names = {name.strip().lower(): name for name in table.column_names}
    missing = {"img_id", "lat", "lon"} - set(names)
    if missing:
        raise DatasetError(f"{path}: metadata needs the columns IMG_ID, LAT, LON (missing {', '.join(sorted(missing))})")
    ids = [str(v).strip() for v in table.column(names["img_id"]).to_pylist()]
    owners = [str(v or "").strip() for v in table.column(names["author"]).to_pylist()] if "author" in names \
        else [""] * len(ids)
    unique, codes = np.unique(np.array(owners, dtype=object), return_inverse=True)
    keys = group_ids(ids)
    order = np.argsort(keys, kind="stable")
    lat, lon = (_degrees(table, names[axis], path) for axis in ("lat", "lon"))
    return MetadataLookup(keys[order], lat[order], lon[order], codes[order].astype(np.int32), [str(o) for o in unique])


def _degrees(table, column: str, path: str | Path) -> np.ndarray:
    try:
        return np.asarray(table.column(column).to_numpy(zero_copy_only=False), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: column {column} holds values that are not numbers ({exc})") from exc


@dataclass(frozen=True)
class ShardRecord:
    """Where one photo lies in a shard, so that it is read by offset with no index of the shard."""

    path: str
    offset: int
    length: int
    photo_id: str

    @property
    def location(self) -> str:
        """`SHARD#ID`, as records, payloads and thumbnails name a photo inside a shard."""
        return f"{self.path}#{self.photo_id}"

    def read(self) -> bytes:
        return read_shard_record(self.path, self.offset, self.length)[1]


@dataclass(frozen=True)
class ShardIndex:
    """The records of some shards that a metadata CSV locates, as columns: which shard, where in it, the photo id,
    and the photo's row of the metadata; `missing` counts the shard records the metadata lacks or places nowhere
    (lat/lon that are not valid degrees)."""

    paths: list[str]
    shard: np.ndarray  # int32: index into paths
    offset: np.ndarray
    length: np.ndarray
    photo_ids: np.ndarray  # str objects
    row: np.ndarray
    lookup: MetadataLookup
    missing: int

    def __len__(self) -> int:
        return len(self.row)

    @property
    def lat(self) -> np.ndarray:
        return self.lookup.lat[self.row]

    @property
    def lon(self) -> np.ndarray:
        return self.lookup.lon[self.row]

    def place(self, k: int) -> ShardRecord:
        return ShardRecord(self.paths[self.shard[k]], int(self.offset[k]), int(self.length[k]), self.photo_ids[k])


def index_shards(shards: Iterable[str | Path], metadata: str | Path) -> ShardIndex:
    """One pass over the shards (record headers only) joined with the metadata: the one index of shard records
    that feature caching, fine-tuning and `list_rows` share."""
    lookup = read_metadata(metadata)
    paths, parts, missing, valid = [str(s) for s in shards], [], 0, valid_latlon(lookup.lat, lookup.lon)
    for s, path in enumerate(paths):
        ids, offsets, lengths = index_shard(path)
        rows = lookup.find(ids)
        found = (rows >= 0) & valid[np.maximum(rows, 0)]
        missing += int((~found).sum())
        named = np.empty(len(ids), dtype=object)
        named[:] = ids
        parts.append((np.full(int(found.sum()), s, np.int32), offsets[found], lengths[found], named[found],
                      rows[found]))
    if not parts:
        parts = [(np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, object),
                  np.zeros(0, np.int64))]
    shard, offset, length, photo_ids, row = (np.concatenate([p[i] for p in parts]) for i in range(5))
    return ShardIndex(paths, shard, offset, length, photo_ids, row, lookup, missing)


def shard_records(shards: Iterable[str | Path], metadata: str | Path,
                  source: str = "mp16") -> tuple[list[Record], list[ShardRecord], int]:
    """The photos of `shards` that the metadata locates: their records (image `SHARD#ID`), where to read each, and
    how many shard records the metadata lacks."""
    index = index_shards(shards, metadata)
    lookup, places, records = index.lookup, [], []
    for k, row in enumerate(index.row):
        place = index.place(k)
        records.append(Record(place.location, float(lookup.lat[row]), float(lookup.lon[row]),
                              lookup.owners[lookup.owner_codes[row]], place.photo_id, source))
        places.append(place)
    return records, places, index.missing
