"""Building the feature cache (see locator.feature_cache): embed a dataset once so heads and the RRM train in minutes.

Resumable: running again with the same records and backbone continues with the pending rows.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from locator.backbone import PRECISIONS, Backbone, compute_dtype, default_device, stream_features
from locator.datasets import Record
from locator.feature_cache import (DONE, FAILED, PENDING, FeatureCache, FeatureCacheError, group_ids, records_hash,
                                   write_index, write_labels)
from locator.loading import ImageInput, load_stream
from locator.preprocessing import Preprocessing

__all__ = ["DONE", "FAILED", "PENDING", "FeatureCache", "FeatureCacheError", "build_feature_cache"]


def _create(directory: Path, records: list[Record], meta: dict) -> FeatureCache:
    directory.mkdir(parents=True, exist_ok=True)
    dtype = np.dtype(meta["dtype"])
    features = np.lib.format.open_memmap(directory / "features.npy", "w+", dtype, (len(records), meta["dim"]))
    status = np.lib.format.open_memmap(directory / "status.npy", "w+", np.uint8, (len(records),))
    features.flush()
    status.flush()
    write_index(directory / "index.csv", records)
    write_labels(directory, [r.lat for r in records], [r.lon for r in records], group_ids([r.group for r in records]))
    (directory / "failures.csv").write_text("row,image,reason\n")
    (directory / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")  # last: marks a complete layout
    return FeatureCache.open(directory, writable=True)


def build_feature_cache(records: list[Record], backbone: Backbone, directory: str | Path, backbone_id: str,
                        dtype: str = "float16", batch_size: int | None = None, device: str | None = None,
                        progress: bool = True, workers: int | None = None, precision: str = "auto",
                        items: Sequence[ImageInput] | None = None) -> FeatureCache:
    """Embed `records` with `backbone` into `directory`, resuming a matching cache; returns the cache. The backbone
    computes in `precision` ("auto": locator.backbone.autocast_dtype's; "float32": full), recorded in the cache.
    `items` say where to read each record's photo when not at `record.image` (e.g. `ShardRecord`s)."""
    directory = Path(directory)
    if dtype not in ("float16", "float32"):
        raise FeatureCacheError(f"dtype must be float16 or float32, got {dtype!r}")
    if precision not in PRECISIONS:
        raise FeatureCacheError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = torch.device(device) if device is not None else default_device()
    computed = compute_dtype(device, precision)
    meta = {"backbone": backbone_id, "arch": backbone.arch, "dim": backbone.feature_dim, "dtype": dtype,
            "preprocessing": backbone.preprocessing.to_json(), "count": len(records),
            "records_sha256": records_hash(records), "computed_in": str(computed).removeprefix("torch.")}
    meta = json.loads(json.dumps(meta))  # compare like with like: tuples become lists in the stored JSON
    if (directory / "meta.json").is_file():
        cache = FeatureCache.open(directory, writable=True)
        changed = _differences(cache.meta, meta)
        if changed:
            raise FeatureCacheError(f"{directory}: holds a cache made with other settings ({', '.join(changed)}); "
                                    "choose another output folder")
    else:
        cache = _create(directory, records, meta)
    pending = np.flatnonzero(cache.status == PENDING)
    bar = tqdm(total=len(records), initial=len(records) - len(pending), unit="img", desc="features", disable=not progress)
    with (directory / "failures.csv").open("a", newline="") as failures:
        writer = _RowWriter(cache, csv.writer(failures), failures, bar)

        def readable() -> Iterator[tuple[int, torch.Tensor]]:
            images = [(items[r] if items is not None else records[r].image) for r in pending]
            for position, item in load_stream(images, backbone.preprocessing, device, workers):
                if isinstance(item, str):
                    writer.failed(int(pending[position]), records[pending[position]].image, item)
                else:
                    yield int(pending[position]), item

        for rows, values in stream_features(backbone, readable(), batch_size, device, computed):
            writer.done(np.array(rows), values)
        writer.flush()
    bar.close()
    return cache


def _differences(stored: dict, meta: dict) -> list[str]:
    """Settings in which a stored cache differs from `meta` (caches older than `computed_in` match any; settings
    added to the preprocessing since a cache was made take the values it was made with)."""
    stored = {"computed_in": meta["computed_in"], **stored}
    if "preprocessing" in stored:
        stored["preprocessing"] = Preprocessing.from_json(stored["preprocessing"]).to_json()
        stored = json.loads(json.dumps(stored))
    return sorted(k for k in set(meta) | set(stored) if stored.get(k) != meta.get(k))


class _RowWriter:
    """Features into the cache; a row's status is written (and flushed) only after its features."""

    def __init__(self, cache: FeatureCache, log, handle, bar, flush_every: int = 512) -> None:
        self.cache, self.log, self.handle, self.bar, self.flush_every = cache, log, handle, bar, flush_every
        self.rows: list[int] = []
        self.statuses: list[int] = []

    def done(self, rows: np.ndarray, values: np.ndarray) -> None:
        self.cache.features[rows] = values.astype(self.cache.features.dtype)
        self._mark(rows.tolist(), DONE)

    def failed(self, row: int, image: str, reason: str) -> None:
        self.log.writerow([row, image, reason])
        self._mark([row], FAILED)

    def _mark(self, rows: list[int], status: int) -> None:
        self.rows += rows
        self.statuses += [status] * len(rows)
        if len(self.rows) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        self.cache.features.flush()
        self.handle.flush()
        if self.rows:
            self.cache.status[np.array(self.rows)] = np.array(self.statuses, np.uint8)
            self.cache.status.flush()
            self.bar.update(len(self.rows))
        self.rows, self.statuses = [], []


def create_array_cache(directory: str | Path, chunks: Iterable[np.ndarray], rows: int, dim: int, lat: np.ndarray,
                       lon: np.ndarray, groups: np.ndarray, meta: dict, dtype: str = "float16") -> FeatureCache:
    """A complete cache from feature chunks (no images: e.g. synthetic data for benchmarks and tests), written a
    chunk at a time; every row is done and its index row names it `array:<row>`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    features = np.lib.format.open_memmap(directory / "features.npy", "w+", np.dtype(dtype), (rows, dim))
    start = 0
    for chunk in chunks:
        features[start:start + len(chunk)] = chunk
        start += len(chunk)
    if start != rows:
        raise FeatureCacheError(f"{directory}: chunks hold {start} rows, expected {rows}")
    features.flush()
    del features
    np.save(directory / "status.npy", np.full(rows, DONE, dtype=np.uint8))
    write_labels(directory, lat, lon, groups)
    with (directory / "index.csv").open("w", newline="") as handle:
        handle.write("row,image,photo_id,owner,source,lat,lon\n")
        for s in range(0, rows, 100_000):
            handle.writelines(f"{r},array:{r},{r},{int(groups[r])},array,{float(lat[r])!r},{float(lon[r])!r}\n"
                              for r in range(s, min(s + 100_000, rows)))
    (directory / "failures.csv").write_text("row,image,reason\n")
    (directory / "meta.json").write_text(json.dumps({**meta, "dim": dim, "dtype": dtype, "count": rows}, indent=2) + "\n")
    return FeatureCache.open(directory)
