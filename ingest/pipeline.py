"""The Ray Data ingest pipeline: list → decode (parallel tasks) → embed (actor pool) → one writer.

Resumable: photos whose point id is already in the store are skipped, and points are written whole, so a run
killed at any moment and started again ends with exactly the right set of points. Growing: another source
adds to the same collection (point ids are derived from source and photo id).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from locator.bundle import Bundle
from locator.errors import BundleError
from locator.store import open_store, point_id
from ingest.decode import decode_batch
from ingest.embedder import Embedder
from ingest.settings import IngestSettings
from ingest.writer import StoreWriter


@dataclass
class IngestSummary:
    listed: int
    already_stored: int
    read: int = 0
    embedded: int = 0
    written: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    count_after: int = 0

    def line(self) -> str:
        rejected = ", ".join(f"{v} {k}" for k, v in sorted(self.rejected.items())) or "none"
        rate = self.read / self.seconds if self.seconds else 0.0
        return (f"ingest: {self.listed:,} listed, {self.already_stored:,} already stored, {self.read:,} read, "
                f"{self.embedded:,} embedded, {self.written:,} written, rejected: {rejected}; "
                f"{rate:.1f} photos/s; collection now holds {self.count_after:,} points")


def default_rejects_path(location: str) -> Path:
    """Beside an Edge store (`<store>.rejects.csv`); in the working folder for a server collection."""
    if location.startswith("edge:"):
        return Path(location[len("edge:"):].rstrip("/")).with_suffix(".rejects.csv")
    return Path("geoloc-ingest.rejects.csv")


def _init_ray(settings: IngestSettings, gpus: int) -> None:
    import ray
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if settings.address:
        ray.init(address=settings.address, log_to_driver=False)
    else:
        ray.init(num_cpus=os.cpu_count(), num_gpus=gpus, object_store_memory=settings.object_store_mb * 1024 ** 2,
                 include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False  # our own bar counts written photos
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # no "progress bars disabled" line


def _dataset(rows: list[dict], bundle: Bundle, bundle_dir: Path, settings: IngestSettings, gpus: int):
    import ray
    cpus = os.cpu_count() or 1
    actors = settings.actors or (gpus if gpus else 1)
    # Fractional CPUs: an actor pool holding every CPU would starve the decode tasks (deadlock on 2 cores).
    actor_resources = {"num_gpus": 1} if gpus else {"num_cpus": max(0.5, (cpus - 1) / actors)}
    head = bundle.config.get("default_head") if settings.placeable_only and not settings.placeable_head \
        else settings.placeable_head
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows) // settings.batch_size, 200)))
    ds = ds.map_batches(decode_batch, fn_kwargs={"preprocessing": bundle.backbone.preprocessing.to_json()},
                        batch_size=settings.batch_size, num_cpus=0.25)
    with warnings.catch_warnings():
        # max_restarts has no named parameter yet; passing it is the documented way to switch restarts off.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        return ds.map_batches(Embedder, fn_constructor_args=(str(bundle_dir), head if settings.placeable_only else None,
                                                             None if gpus else max(1, cpus - 1)),
                              batch_size=settings.batch_size, compute=ray.data.ActorPoolStrategy(size=actors),
                              # Ray cannot restart actors whose arguments live in its object store (ray#53727) and
                              # logs an error for each; a failed actor fails the run, and a rerun resumes exactly.
                              max_restarts=0, **actor_resources)


def run_ingest(bundle_dir: str | Path, store_location: str | None, rows: list[dict],
               settings: IngestSettings = IngestSettings()) -> IngestSummary:
    """Embed `rows` (see ingest.sources) and write them into the store made for this bundle."""
    import ray
    bundle_dir = Path(bundle_dir)
    bundle = Bundle.load(bundle_dir)
    if settings.placeable_only and not bundle.heads:
        raise BundleError(f"{bundle_dir}: the placeable filter needs a trained head in the bundle")
    store = open_store(store_location, bundle.collection_spec())
    start = time.perf_counter()
    try:
        stored = set(store.all_ids().tolist())
        todo = [r for r in rows if point_id(r["source"], r["photo_id"]) not in stored]
        summary = IngestSummary(listed=len(rows), already_stored=len(rows) - len(todo))
        rejects = settings.rejects or default_rejects_path(store.location)
        writer = StoreWriter(store, bundle, Path(rejects), settings.placeable_only, settings.flush_every)
        if todo:
            gpus = torch.cuda.device_count()
            _init_ray(settings, gpus)
            try:
                bar = tqdm(total=len(todo), unit="photo", desc="ingest", disable=not settings.progress)
                for batch in _dataset(todo, bundle, bundle_dir, settings, gpus).iter_batches(
                        batch_size=settings.batch_size, batch_format="numpy"):
                    bar.update(writer.write(batch))
                bar.close()
            finally:
                ray.shutdown()
        writer.close()
        summary.read, summary.embedded, summary.written = len(todo), writer.embedded, writer.written
        summary.rejected = dict(writer.rejected)
        summary.count_after = store.count()
    finally:
        store.close()
    summary.seconds = time.perf_counter() - start
    return summary
