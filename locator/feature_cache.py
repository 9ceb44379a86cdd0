"""Feature cache: backbone features of a dataset in an on-disk, memory-mapped array (built by `geoloc-train features`).

    features.npy   (N, D) float16 or float32, memory-mapped
    status.npy     (N,) uint8: 0 pending, 1 done, 2 failed (written after the features it covers)
    index.csv      row, image, photo_id, owner, source, lat, lon
    failures.csv   row, image, reason
    meta.json      backbone, preprocessing, dtype, size, records hash

Read here (the locator uses a cache of the background photos for the raw-feature ablation); built in
training/features.py.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from locator.datasets import Record
from locator.errors import DataError

PENDING, DONE, FAILED = 0, 1, 2


class FeatureCacheError(DataError):
    """A cache directory that does not match what was asked of it."""


def records_hash(records: list[Record]) -> str:
    digest = hashlib.sha256()
    for r in records:
        digest.update(f"{r.image}\t{r.photo_id}\t{r.owner}\t{r.source}\t{r.lat!r}\t{r.lon!r}\n".encode())
    return digest.hexdigest()


@dataclass
class FeatureCache:
    directory: Path
    features: np.ndarray
    status: np.ndarray
    records: list[Record]
    meta: dict

    @property
    def done(self) -> np.ndarray:
        return self.status == DONE

    def as_float32(self, rows: np.ndarray | None = None) -> np.ndarray:
        return np.asarray(self.features[rows] if rows is not None else self.features, dtype=np.float32)

    @classmethod
    def open(cls, directory: str | Path) -> FeatureCache:
        directory = Path(directory)
        meta_path = directory / "meta.json"
        if not meta_path.is_file():
            raise FeatureCacheError(f"{directory}: not a feature cache (no meta.json)")
        meta = json.loads(meta_path.read_text())
        records = _read_index(directory / "index.csv")
        features = np.load(directory / "features.npy", mmap_mode="r+")
        status = np.load(directory / "status.npy", mmap_mode="r+")
        if len(records) != len(features) or len(status) != len(features):
            raise FeatureCacheError(f"{directory}: index, features and status have different lengths")
        return cls(directory, features, status, records, meta)


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
