"""What the service serves: one locator over one collection, which grows (and shrinks) while it serves.

All model and store work runs on one worker thread (the Edge store takes one writer, and the models are not
shared across threads). Photos added through the service are validated like ingest, re-encoded (pixels only)
into the uploads folder, embedded, written and flushed before the answer: once acknowledged, they survive a
kill -9 of the service.
"""

from __future__ import annotations

import io
import logging
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from locator.api import Locator
from locator.errors import DataError, GeolocError, StoreError
from locator.claims import attach_exif_claims
from locator.datasets import read_exif_gps
from locator.geo import CoordinateError, validate_latlon
from locator.images import load_image, longest_side
from locator.methods import LocateSettings
from locator.predictions import Prediction
from locator.shards import index_shard, read_shard_record
from locator.store import SOURCE_FIELD, PhotoPoint, cell_field, point_id

THUMBNAIL_PX = 160
logger = logging.getLogger(__name__)


def default_uploads(location: str) -> Path:
    """Beside an Edge store (`<store>.uploads`); in the working folder for a server collection."""
    if location.startswith("edge:"):
        return Path(location[len("edge:"):].rstrip("/") + ".uploads")
    return Path("geoloc-uploads")


def _worker() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="geoloc-worker")


class ServedCollection:
    def __init__(self, locator: Locator, uploads: Path, worker: ThreadPoolExecutor | None = None) -> None:
        if locator.store is None:
            raise StoreError("the service needs a store (geoloc serve: --store or GEOLOC_STORE)")
        self.locator, self.store, self.uploads = locator, locator.store, uploads
        self.uploads.mkdir(parents=True, exist_ok=True)
        self.worker = worker or _worker()
        self._ids: np.ndarray | None = None  # sorted point ids, for the collection view's pages
        self._ids_of: dict[str, np.ndarray] = {}  # the same for one source, dropped when it changes
        self._lock = threading.Lock()
        self.warmed: dict | None = None  # what warm_up did, once it has
        self.stop_warm_up = threading.Event()

    @classmethod
    def load(cls, bundle: str | Path, location: str, uploads: Path | None = None) -> ServedCollection:
        """Loads the locator on the worker thread, where all its torch work then runs: torch starts an OpenMP
        thread pool per calling thread, and two pools on the same cores made the backbone 2.5x slower."""
        worker = _worker()
        locator = worker.submit(Locator.load, bundle, store=location).result()
        return cls(locator, uploads or default_uploads(locator.store.location), worker)

    def close(self) -> None:
        self.worker.submit(self.locator.close).result()
        self.worker.shutdown()

    # --- locate ---------------------------------------------------------------------------------------------
    def locate_groups(self, groups: list[tuple[list[bytes], LocateSettings]]) -> list[list[Prediction]]:
        """Photos of several requests, embedded together; each group located with its own settings."""
        photos = [photo for group, _ in groups for photo in group]
        encoded = self.locator.encode(photos)
        out, start = [], 0
        for group, settings in groups:
            rows = list(range(start, start + len(group)))
            out.append(self.locator.predict(encoded.take(rows), settings))
            attach_exif_claims(out[-1], group)
            start += len(group)
        return out

    def warm_up(self, largest_batch: int, progress: Callable[[], None] | None = None) -> dict:
        """Before serving: the backbone over every shape and batch size of `PhotoEncoder.warm_up_plan`, then one
        photo located end to end (the store's first query and the method's first scoring: 194 against 43 ms on a
        2-core CPU), by the default method, or by `swc` where the bundle has no fused model. Reads only. Returns
        what it did, with its time; `stop_warm_up` ends it early (a Ctrl-C while it runs)."""
        start = time.perf_counter()

        def step() -> None:
            if self.stop_warm_up.is_set():
                raise WarmUpStopped
            if progress is not None:
                progress()

        shapes, sizes = self.locator.encoder.warm_up(largest_batch, step)
        method = LocateSettings().method if self.locator.bundle.fusion is not None else "swc"
        try:  # a collection the method cannot search yet (empty, say) must not keep the service from starting
            (located,) = self.locate_groups([([_blank_photo()], LocateSettings(method=method))])[0]
            outcome = located.ok or located.error
        except GeolocError as exc:
            outcome = str(exc)
        self.warmed = {"shapes": len(shapes), "batch_sizes": sizes, "method": method, "located": outcome,
                       "seconds": round(time.perf_counter() - start, 2)}
        return self.warmed

    # --- add ------------------------------------------------------------------------------------------------
    def add_photo(self, data: bytes, lat: float | None, lon: float | None, photo_id: str, owner: str,
                  source: str) -> tuple[PhotoPoint, bool]:
        """Validate, keep and embed one reference photo; durable when this returns. Without lat and lon, the
        photo's own EXIF GPS position places it. Also says whether it replaced a photo of the same source and id."""
        if not photo_id.strip():
            raise DataError("photo_id must not be empty")
        name = f"photo {photo_id.strip()!r}"
        image = load_image(data, name=name)
        if lat is None and lon is None:
            claim = read_exif_gps(data, name)
            if claim is None:
                raise DataError(f"{name}: give lat and lon, or a photo with a GPS position in its EXIF")
            lat, lon = claim
        elif lat is None or lon is None:
            raise DataError(f"{name}: give both lat and lon, or neither to take them from the photo's EXIF GPS")
        try:
            lat_a, lon_a = validate_latlon(lat, lon, name)
        except CoordinateError as exc:
            raise DataError(str(exc)) from exc
        bundle = self.locator.bundle
        point = PhotoPoint.placed(photo_id.strip(), source.strip() or "service", float(lat_a), float(lon_a),
                                  bundle.partitions, owner=owner.strip())
        path = self.uploads / f"{point.id}.jpg"
        _write_durably(path, image)
        point = PhotoPoint.placed(point.photo_id, point.source, point.lat, point.lon, bundle.partitions,
                                  owner=point.owner, image=str(path.resolve()), cells=list(point.cells))
        encoded = self.locator.encode([path])
        if encoded.errors[0]:
            raise DataError(encoded.errors[0])
        replaced = bool(self.store.payloads([point.id]))  # the same (source, photo id) again replaces itself
        self.store.add([point], encoded.embeddings[:1])
        self.store.flush()
        if replaced:
            _thumbnail.cache_clear()
        with self._lock:
            if self._ids is not None and not replaced:
                self._ids = np.insert(self._ids, int(np.searchsorted(self._ids, point.id)), point.id)
            self._ids_of.pop(point.source, None)
        return point, replaced

    # --- remove ---------------------------------------------------------------------------------------------
    def removals(self, offset: int, limit: int) -> tuple[int, list[dict]]:
        """A page of the collection's ledger of removals, newest first; `back`: the photo is in the collection
        again (added since)."""
        ledger = self.store.removals()[::-1]
        chosen = ledger[offset:offset + limit]
        present = self.store.payloads([r.id for r in chosen])
        return len(ledger), [{**r.to_json(), "id": str(r.id), "back": r.id in present} for r in chosen]

    def remove_photo(self, point: int) -> PhotoPoint:
        """Take one reference out of the collection (durable when this returns) and return it; KeyError if it is
        not there. A photo this service kept in its uploads folder goes too; photos read elsewhere at
        ingest are left alone."""
        payload = self.store.payloads([point]).get(point)
        if payload is None or not self.store.remove([point]):
            raise KeyError(point)
        self.store.flush()
        with self._lock:
            if self._ids is not None:
                self._ids = self._ids[self._ids != point]
            self._ids_of.pop(str(payload.get("source", "")), None)
        self._forget_upload(point, Path(str(payload.get("image", ""))))
        return PhotoPoint.from_payload(payload)

    def _forget_upload(self, point: int, image: Path) -> None:
        _thumbnail.cache_clear()
        if image.parent.resolve() != self.uploads.resolve() or image.name != f"{point}.jpg":
            return  # not a photo this service kept: never deleted
        try:
            image.unlink(missing_ok=True)
        except OSError as exc:  # the removal itself is done and durable
            logger.warning("removed point %s, but its upload %s could not be deleted: %s", point, image, exc)

    # --- the collection -------------------------------------------------------------------------------------
    def count(self) -> int:
        return self.store.count()

    def cell_counts(self) -> Counter[int]:
        """Points per finest cell (-1: outside the partition), from the store's index."""
        return Counter({int(c): n for c, n in
                        self.store.counts_by(cell_field(len(self.locator.bundle.partitions) - 1)).items()})

    def source_counts(self) -> dict[str, int]:
        return {str(source): n for source, n in self.store.counts_by(SOURCE_FIELD).items()}

    def sorted_ids(self, source: str | None = None) -> np.ndarray:
        """Every point id, or those of one source, sorted: read from the store, kept up to date by this service's
        writes, and read again when the store counts a different number (writes by another replica of a Qdrant
        server's collection, an ingest, `geoloc remove`)."""
        counted = self.store.count() if source is None else self.source_counts().get(source, 0)
        with self._lock:
            kept = self._ids if source is None else self._ids_of.get(source)
            if kept is not None and len(kept) == counted:
                return kept
            ids = np.sort(self.store.all_ids(source=source))
            if source is None:
                self._ids = ids
            elif len(ids):  # any name can be asked for: only real sources are kept
                self._ids_of[source] = ids
            else:
                self._ids_of.pop(source, None)
            return ids

    def page(self, offset: int, limit: int, source: str | None = None,
             photo_id: str | None = None) -> tuple[int, list[dict]]:
        """A page of the collection (of one source), or the photos named `photo_id` (in one source, or in any)."""
        ids = self.sorted_ids(source) if photo_id is None else self._named(photo_id, source)
        chosen = [int(i) for i in ids[offset:offset + limit]]
        payloads = self.store.payloads(chosen)
        return len(ids), [{"id": str(i), **payloads[i], "image": _file_name(payloads[i])} for i in chosen
                          if i in payloads]

    def _named(self, photo_id: str, source: str | None) -> np.ndarray:
        """Point ids follow from (source, photo id): looked up directly in each source, no scan."""
        sources = [source] if source is not None else list(self.source_counts())
        wanted = sorted({point_id(s, photo_id) for s in sources})
        return np.array(sorted(self.store.payloads(wanted)), dtype=np.int64)

    def thumbnail(self, point: int) -> bytes:
        payload = self.store.payloads([point]).get(point)
        if payload is None:
            raise KeyError(point)
        return _thumbnail(str(payload.get("image", "")))


class WarmUpStopped(GeolocError):
    """The warm-up was asked to stop (the service is closing before it listens)."""


def _blank_photo() -> bytes:
    """A 400 x 300 JPEG of noise: a readable photo that no reference resembles."""
    pixels = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def _write_durably(path: Path, image: Image.Image) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as handle:
        image.save(handle, format="JPEG", quality=92)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


@lru_cache(maxsize=64)
def _shard_index(path: str) -> dict[str, tuple[int, int]]:
    ids, offsets, lengths = index_shard(path)
    return {i: (int(o), int(n)) for i, o, n in zip(ids, offsets, lengths)}


@lru_cache(maxsize=2048)
def _thumbnail(location: str) -> bytes:
    """A JPEG thumbnail of the photo at a location recorded at ingest: a path, or SHARD#ID."""
    if "#" in location and not Path(location).is_file():
        shard, _, photo_id = location.rpartition("#")
        offset, length = _shard_index(shard)[photo_id]
        image = load_image(read_shard_record(shard, offset, length)[1], name=location,
                           draft_to=longest_side(THUMBNAIL_PX))
    else:
        image = load_image(location, draft_to=longest_side(THUMBNAIL_PX))
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _file_name(payload: dict) -> str:
    """A reference's file name, without the server's folders (its pixels are at the thumbnail URL)."""
    return Path(str(payload.get("image", ""))).name


def prediction_json(p: Prediction, cell_polygon: list[list[float]] | None) -> dict:
    def clean(value):
        return None if isinstance(value, float) and math.isnan(value) else value
    out = {k: clean(v) for k, v in vars(p).items() if k != "neighbours"}
    out["cell_polygon"] = cell_polygon
    out["neighbours"] = []
    for n in p.neighbours:
        entry = {k: clean(v) for k, v in vars(n).items()}
        entry["point_id"] = str(n.point_id) if n.point_id is not None else None  # 63-bit: a string for JavaScript
        entry["thumbnail"] = f"/v1/photos/{n.point_id}/thumbnail" if n.point_id is not None else None
        entry["image"] = Path(n.image).name if n.image else ""
        out["neighbours"].append(entry)
    return out
