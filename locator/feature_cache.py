"""Feature cache: backbone features of a dataset in an on-disk array (built by `geoloc-train features`).

    features.npy   (N, D) float16 or float32
    status.npy     (N,) uint8: 0 pending, 1 done, 2 failed (written after the features it covers)
    labels.npz     lat, lon (float64 degrees) and group (int64: a hash of the owner, for owner-grouped splits)
    index.csv      row, image, photo_id, owner, source, lat, lon
    failures.csv   row, image, reason
    meta.json      backbone, preprocessing, dtype, size, records hash

Training reads rows with `read` (a contiguous block) and `gather` (any rows) through plain file reads, not a
memory map, so that the process's resident memory holds only what it asked for, whatever the cache's size; the
labels are columns, so that 4.7 M rows need no Python object each. Read here (the locator uses a cache of the
background photos for the raw-feature ablation); built in training/features.py.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from locator.datasets import Record
from locator.errors import DataError

PENDING, DONE, FAILED = 0, 1, 2
LABELS = "labels.npz"


class FeatureCacheError(DataError):
    """A cache directory that does not match what was asked of it."""


def records_hash(records: list[Record]) -> str:
    digest = hashlib.sha256()
    for r in records:
        digest.update(f"{r.image}\t{r.photo_id}\t{r.owner}\t{r.source}\t{r.lat!r}\t{r.lon!r}\n".encode())
    return digest.hexdigest()


def group_ids(groups: list[str]) -> np.ndarray:
    """Stable 63-bit ids of owner groups (equal strings, equal ids)."""
    return np.array([int.from_bytes(hashlib.sha256(g.encode()).digest()[:8], "big") >> 1 for g in groups],
                    dtype=np.int64)


def write_labels(directory: Path, lat: np.ndarray, lon: np.ndarray, groups: np.ndarray) -> None:
    np.savez(directory / LABELS, lat=np.asarray(lat, np.float64), lon=np.asarray(lon, np.float64),
             group=np.asarray(groups, np.int64))


@dataclass
class FeatureCache:
    directory: Path
    features: np.ndarray  # a read-only memory map, for small caches and tests; training uses read / gather
    status: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    groups: np.ndarray
    meta: dict
    _records: list[Record] | None = field(default=None, repr=False)

    @property
    def done(self) -> np.ndarray:
        return self.status == DONE

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def records(self) -> list[Record]:
        """Every row's record, read from index.csv on first use (avoid it for millions of rows)."""
        if self._records is None:
            self._records = _read_index(self.directory / "index.csv")
        return self._records

    def as_float32(self, rows: np.ndarray | None = None) -> np.ndarray:
        stored = self.read(0, len(self.status)) if rows is None else self.gather(rows)
        return stored.astype(np.float32, copy=False)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) in the stored dtype, with one file read."""
        row_bytes = self.dim * self.features.dtype.itemsize
        out = np.empty((max(stop - start, 0), self.dim), dtype=self.features.dtype)
        with (self.directory / "features.npy").open("rb", buffering=0) as handle:
            handle.seek(self.features.offset + start * row_bytes)
            handle.readinto(memoryview(out).cast("B"))
        return out

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """Any rows (in the order given) in the stored dtype; runs of consecutive rows are read together."""
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        out = np.empty((len(rows), self.dim), dtype=self.features.dtype)
        row_bytes = self.dim * self.features.dtype.itemsize
        breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
        fd = os.open(self.directory / "features.npy", os.O_RDONLY)
        try:
            for run in np.split(np.arange(len(ordered)), breaks):
                if not len(run):
                    continue
                first, count = int(ordered[run[0]]), len(run)
                data = os.pread(fd, count * row_bytes, self.features.offset + first * row_bytes)
                out[order[run]] = np.frombuffer(data, dtype=self.features.dtype).reshape(count, self.dim)
        finally:
            os.close(fd)
        return out

    @classmethod
    def open(cls, directory: str | Path, writable: bool = False) -> FeatureCache:
        directory = Path(directory)
        meta_path = directory / "meta.json"
        if not meta_path.is_file():
            raise FeatureCacheError(f"{directory}: not a feature cache (no meta.json)")
        meta = json.loads(meta_path.read_text())
        mode = "r+" if writable else "r"
        features = np.load(directory / "features.npy", mmap_mode=mode)
        status = np.load(directory / "status.npy", mmap_mode=mode)
        records = None
        if (directory / LABELS).is_file():
            with np.load(directory / LABELS) as labels:
                lat, lon, groups = labels["lat"], labels["lon"], labels["group"]
        else:  # a cache written before labels.npz existed
            records = _read_index(directory / "index.csv")
            lat, lon = np.array([r.lat for r in records]), np.array([r.lon for r in records])
            groups = group_ids([r.group for r in records])
        if not (len(lat) == len(features) == len(status)):
            raise FeatureCacheError(f"{directory}: labels, features and status have different lengths")
        return cls(directory, features, status, lat, lon, groups, meta, records)


def write_index(path: Path, records: list[Record]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "image", "photo_id", "owner", "source", "lat", "lon"])
        for row, r in enumerate(records):
            writer.writerow([row, r.image, r.photo_id, r.owner, r.source, repr(r.lat), repr(r.lon)])


def _read_index(path: Path) -> list[Record]:
    with path.open(newline="") as handle:
        return [Record(row["image"], float(row["lat"]), float(row["lon"]), row["owner"], row["photo_id"], row["source"])
                for row in csv.DictReader(handle)]
