"""Feature cache: embed a dataset once into an on-disk, memory-mapped array, so heads and the RRM train in minutes.

    features.npy   (N, D) float16 or float32, memory-mapped
    status.npy     (N,) uint8: 0 pending, 1 done, 2 failed (written after the features it covers)
    index.csv      row, image, photo_id, owner, source, lat, lon
    failures.csv   row, image, reason
    meta.json      backbone, preprocessing, dtype, size, records hash

Resumable: running again with the same records and backbone continues with the pending rows.
"""

from __future__ import annotations

import csv
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from locator.backbone import Backbone, extract_features
from locator.datasets import Record
from locator.images import ImageLoadError, load_image

PENDING, DONE, FAILED = 0, 1, 2


class FeatureCacheError(ValueError):
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


def _write_index(path: Path, records: list[Record]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "image", "photo_id", "owner", "source", "lat", "lon"])
        for row, r in enumerate(records):
            writer.writerow([row, r.image, r.photo_id, r.owner, r.source, repr(r.lat), repr(r.lon)])


def _read_index(path: Path) -> list[Record]:
    with path.open(newline="") as handle:
        return [Record(row["image"], float(row["lat"]), float(row["lon"]), row["owner"], row["photo_id"], row["source"])
                for row in csv.DictReader(handle)]


def _create(directory: Path, records: list[Record], meta: dict) -> FeatureCache:
    directory.mkdir(parents=True, exist_ok=True)
    dtype = np.dtype(meta["dtype"])
    features = np.lib.format.open_memmap(directory / "features.npy", "w+", dtype, (len(records), meta["dim"]))
    status = np.lib.format.open_memmap(directory / "status.npy", "w+", np.uint8, (len(records),))
    features.flush()
    status.flush()
    _write_index(directory / "index.csv", records)
    (directory / "failures.csv").write_text("row,image,reason\n")
    (directory / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")  # last: marks a complete layout
    return FeatureCache.open(directory)


def _load_tensor(record: Record, backbone: Backbone) -> torch.Tensor | str:
    try:
        return backbone.preprocessing.to_tensor(load_image(record.image))
    except ImageLoadError as exc:
        return str(exc)


def build_feature_cache(records: list[Record], backbone: Backbone, directory: str | Path, backbone_id: str,
                        dtype: str = "float16", batch_size: int | None = None, chunk: int = 128,
                        device: str | None = None, progress: bool = True) -> FeatureCache:
    """Embed `records` with `backbone` into `directory`, resuming a matching cache; returns the cache."""
    directory = Path(directory)
    if dtype not in ("float16", "float32"):
        raise FeatureCacheError(f"dtype must be float16 or float32, got {dtype!r}")
    meta = {"backbone": backbone_id, "arch": backbone.arch, "dim": backbone.feature_dim, "dtype": dtype,
            "preprocessing": backbone.preprocessing.to_json(), "count": len(records),
            "records_sha256": records_hash(records)}
    meta = json.loads(json.dumps(meta))  # compare like with like: tuples become lists in the stored JSON
    if (directory / "meta.json").is_file():
        cache = FeatureCache.open(directory)
        if cache.meta != meta:
            changed = sorted(k for k in meta if cache.meta.get(k) != meta[k])
            raise FeatureCacheError(f"{directory}: holds a cache made with other settings ({', '.join(changed)}); "
                                    "choose another output folder")
    else:
        cache = _create(directory, records, meta)
    pending = np.flatnonzero(cache.status == PENDING)
    bar = tqdm(total=len(records), initial=len(records) - len(pending), unit="img", desc="features", disable=not progress)
    with ThreadPoolExecutor(max_workers=2) as pool, (directory / "failures.csv").open("a", newline="") as failures:
        log = csv.writer(failures)
        for start in range(0, len(pending), chunk):
            rows = pending[start:start + chunk]
            loaded = list(pool.map(lambda r: _load_tensor(records[r], backbone), rows))
            good = [k for k, item in enumerate(loaded) if not isinstance(item, str)]
            if good:
                values = extract_features(backbone, [loaded[k] for k in good], batch_size=batch_size, device=device)
                cache.features[rows[good]] = values.astype(cache.features.dtype)
                cache.features.flush()
            for k, item in enumerate(loaded):
                if isinstance(item, str):
                    log.writerow([int(rows[k]), records[rows[k]].image, item])
            failures.flush()
            cache.status[rows] = np.array([FAILED if isinstance(item, str) else DONE for item in loaded], np.uint8)
            cache.status.flush()
            bar.update(len(rows))
    bar.close()
    return cache
