"""The Ray Data ingest pipeline: read (parallel tasks) → decode (tasks on the CPUs) → embed (one actor per GPU,
or a fractional-CPU pool) → one writer in the driver.

The driver never holds image bytes: read tasks stream shards and files, and the driver receives only embedded
batches (vectors and payload fields). Resumable: the collection's point ids are shared with the read tasks,
which mark photos already stored instead of reading them again, and points are written whole, so a run killed
at any moment and started again ends with exactly the right set of points. Growing: another source adds to the
same collection (point ids are derived from source and photo id). With a cluster (`--address auto`) the read and
decode tasks and the embedding actors spread over its nodes; the single writer keeps Edge's one-writer rule.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ingest.decode import decode_batch
from ingest.embedder import Embedder
from ingest.settings import IngestSettings
from ingest.sources import IngestSource, source_dataset
from ingest.writer import StoreWriter
from locator.bundle import Bundle
from locator.errors import BundleError
from locator.store import open_store

DECODE_CPUS = 0.25


@dataclass
class IngestSummary:
    listed: int = 0
    already_stored: int = 0
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


def _init_ray(settings: IngestSettings) -> int:
    """Start (or join) Ray; returns the number of GPUs the cluster offers."""
    import ray
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if settings.address:
        ray.init(address=settings.address, log_to_driver=False)
    else:
        import torch
        ray.init(num_cpus=os.cpu_count(), num_gpus=torch.cuda.device_count(),
                 object_store_memory=settings.object_store_mb * 1024 ** 2, include_dashboard=False,
                 log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False  # our own bar counts written photos
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # no "progress bars disabled" line
    return int(ray.cluster_resources().get("GPU", 0))


def batch_size_for(settings: IngestSettings, gpus: int) -> int:
    """Photos per batch between the stages: what a GPU wants, or what keeps a CPU actor busy."""
    return settings.batch_size or (256 if gpus else 16)


def _embedding_stage(ds, bundle: Bundle, bundle_dir: Path, settings: IngestSettings, gpus: int, batch: int):
    import ray
    cpus = int(ray.cluster_resources().get("CPU", os.cpu_count() or 1))
    actors = settings.actors or (gpus if gpus else 1)
    # Fractional CPUs: an actor pool holding every CPU would starve the decode tasks (deadlock on 2 cores).
    resources = {"num_gpus": 1} if gpus else {"num_cpus": max(0.5, (cpus - 1) / actors)}
    head = (settings.placeable_head or bundle.config.get("default_head")) if settings.placeable_only else None
    with warnings.catch_warnings():
        # max_restarts has no named parameter yet; passing it is the documented way to switch restarts off.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        return ds.map_batches(Embedder, fn_constructor_args=(str(bundle_dir), head, None if gpus else max(1, cpus - 1)),
                              batch_size=batch, compute=ray.data.ActorPoolStrategy(size=actors),
                              # Ray cannot restart actors whose arguments live in its object store (ray#53727) and
                              # logs an error for each; a failed actor fails the run, and a rerun resumes exactly.
                              max_restarts=0, **resources)


def run_ingest(bundle_dir: str | Path, store_location: str | None, source: IngestSource,
               settings: IngestSettings = IngestSettings()) -> IngestSummary:
    """Embed the photos of `source` and write them into the store made for this bundle."""
    import ray
    source.check()
    bundle_dir = Path(bundle_dir)
    bundle = Bundle.load(bundle_dir)
    if settings.placeable_only and not bundle.heads:
        raise BundleError(f"{bundle_dir}: the placeable filter needs a trained head in the bundle")
    store = open_store(store_location, bundle.collection_spec())
    start = time.perf_counter()
    try:
        stored = np.sort(store.all_ids())
        rejects = settings.rejects or default_rejects_path(store.location)
        writer = StoreWriter(store, bundle, Path(rejects), settings.placeable_only, settings.flush_every)
        gpus = _init_ray(settings)
        try:
            batch = batch_size_for(settings, gpus)
            ds = source_dataset(source, stored)
            ds = ds.map_batches(decode_batch, fn_kwargs={"preprocessing": bundle.backbone.preprocessing.to_json()},
                                batch_size=batch, num_cpus=DECODE_CPUS)
            ds = _embedding_stage(ds, bundle, bundle_dir, settings, gpus, batch)
            with tqdm(unit="photo", desc="ingest", disable=not settings.progress) as bar:
                for embedded in ds.iter_batches(batch_size=batch, batch_format="numpy"):
                    bar.update(writer.write(embedded))
        finally:
            ray.shutdown()
        writer.close()
        summary = IngestSummary(listed=writer.seen, already_stored=writer.already_stored,
                                read=writer.seen - writer.already_stored, embedded=writer.embedded,
                                written=writer.written, rejected=dict(writer.rejected), count_after=store.count())
    finally:
        store.close()
    summary.seconds = time.perf_counter() - start
    return summary
