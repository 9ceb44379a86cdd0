"""The rows that flow through the ingest pipeline, from every kind of source, and their status.

A row is one photo: `image` (a path, or `SHARD#ID`), `photo_id`, `owner`, `source`, `lat`, `lon`, `data` (the
encoded image when it came from a shard, else empty) and `status`: "" for a photo to embed, "stored" for one the
collection already holds (a resumed or repeated run), or the reason it is rejected (among them: removed from the
collection since an earlier run).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from locator.geo import valid_latlon
from locator.store import point_id

if TYPE_CHECKING:
    import pyarrow as pa

STORED = "stored"


@cache
def row_schema() -> pa.Schema:
    """The rows' Arrow schema (pyarrow is imported here only: the writer and the stages called without Ray, as on
    a machine without Ray, need none of it)."""
    import pyarrow as pa
    return pa.schema([("image", pa.string()), ("photo_id", pa.string()), ("owner", pa.string()),
                      ("source", pa.string()), ("lat", pa.float64()), ("lon", pa.float64()), ("data", pa.binary()),
                      ("status", pa.string())])


REMOVED = ("removed from the collection: taken out by geoloc remove or DELETE /v1/photos (ingest with "
           "--include-removed to add it again)")


@dataclass(frozen=True)
class KnownIds:
    """What the collection says about point ids before a run: those it holds, and those removed from it (each a
    sorted int64 array); a removed photo that it does not hold again is not added back."""

    stored: np.ndarray
    removed: np.ndarray

    def status(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(held, removed and not held again) masks of `ids`."""
        held = _member(self.stored, ids)
        return held, _member(self.removed, ids) & ~held


def _member(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    if not len(sorted_ids):
        return np.zeros(len(ids), dtype=bool)
    return sorted_ids[np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)] == ids


def row_status(photo_ids: list[str], sources: list[str], lat: np.ndarray, lon: np.ndarray, known: KnownIds,
               found: np.ndarray | None = None) -> list[str]:
    """Each row's status, given what the collection knows of their ids (a KnownIds, or its Ray ref)."""
    known = _resolve(known)
    ids = np.array([point_id(s, p) for s, p in zip(sources, photo_ids)], dtype=np.int64)
    in_store, removed = known.status(ids)
    valid = valid_latlon(lat, lon)
    out = []
    for k in range(len(ids)):
        if found is not None and not found[k]:
            out.append("no metadata: the photo id is not in the metadata CSV")
        elif not valid[k]:
            out.append(f"invalid coordinates: lat={float(lat[k])!r}, lon={float(lon[k])!r}")
        elif in_store[k]:
            out.append(STORED)
        elif removed[k]:
            out.append(REMOVED)
        else:
            out.append("")
    return out


def manifest_rows(batch: pa.Table, root: str, default_source: str, columns: dict[str, str | None],
                  known: KnownIds) -> pa.Table:
    """A batch of a manifest or benchmark CSV (read by Ray's CSV reader) as rows; images relative to `root`."""
    def column(name: str) -> list:
        source = columns.get(name)
        return batch.column(source).to_pylist() if source else [None] * batch.num_rows

    images = [str(v or "").strip() for v in column("image")]
    photo_ids = [str(p).strip() if p not in (None, "") else Path(i).stem for p, i in zip(column("photo_id"), images)]
    sources = [str(s).strip() if s not in (None, "") else default_source for s in column("source")]
    lat = np.array([_number(v) for v in column("lat")], dtype=np.float64)
    lon = np.array([_number(v) for v in column("lon")], dtype=np.float64)
    status = row_status(photo_ids, sources, lat, lon, known)
    status = ["empty image path" if not image else s for image, s in zip(images, status)]
    import pyarrow as pa
    return pa.table({"image": [str(Path(root) / i) if i else "" for i in images], "photo_id": photo_ids,
                     "owner": [str(o or "").strip() for o in column("owner")], "source": sources, "lat": lat,
                     "lon": lon, "data": [b""] * batch.num_rows, "status": status}, schema=row_schema())


def _number(value: object) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _resolve(value):
    """A Ray object ref's value (Ray passes some arguments of map tasks on as refs), or the value itself."""
    if type(value).__name__ == "ObjectRef":
        import ray
        return ray.get(value)
    return value
