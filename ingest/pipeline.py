"""The Ray Data ingest pipeline: read (parallel tasks) → decode (tasks on the CPUs) → embed (one actor per GPU,
or a fractional-CPU pool) → one writer actor.

The driver only orchestrates: it loads neither torch nor the store's points, and receives one row of counts per
written batch; image bytes stay in the read tasks, vectors go from the embedding actors to the writer. Resumable: the collection's point ids are shared with the read tasks,
which mark photos already stored instead of reading them again, and points are written whole, so a run killed
at any moment and started again ends with exactly the right set of points. Growing: another source adds to the
same collection (point ids are derived from source and photo id). With a cluster (`--address auto`) the read and
decode tasks and the embedding actors spread over its nodes; the single writer keeps Edge's one-writer rule.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ingest.decode import decode_batch
from ingest.embedder import Embedder
from ingest.rows import KnownIds
from ingest.settings import IngestSettings
from ingest.sources import IngestSource, source_dataset
from ingest.writer import WriterStage
from locator.bundle_config import BundleConfig
from locator.errors import BundleError
from locator.store import open_store, store_location

DECODE_CPUS = 0.25
LINEAGE_BYTES = 32 * 2 ** 20
WRITER_WAIT_S = 60.0  # a writer of a killed run may hold the Edge store for a few seconds more


@dataclass
class IngestSummary:
    listed: int = 0
    already_stored: int = 0
    read: int = 0
    embedded: int = 0
    written: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    written_sources: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    index_seconds: float = 0.0
    count_after: int = 0

    def line(self) -> str:
        rejected = ", ".join(f"{v} {k}" for k, v in sorted(self.rejected.items())) or "none"
        rate = self.read / self.seconds if self.seconds else 0.0
        return (f"ingest: {self.listed:,} listed, {self.already_stored:,} already stored, {self.read:,} read, "
                f"{self.embedded:,} embedded, {self.written:,} written, rejected: {rejected}; "
                f"{rate:.1f} photos/s; collection now holds {self.count_after:,} points"
                + (f" (indexed in {self.index_seconds:.0f} s)" if self.index_seconds else ""))


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
        ray.init(address=settings.address, log_to_driver=False, logging_level=logging.WARNING)
    else:  # Ray finds the GPUs itself
        # The driver owns every block, and Ray keeps lineage (task specifications) for owned objects up to
        # max_lineage_bytes (1 GB by default): the driver's memory would grow with the photos. A failed block fails
        # the run instead of being rebuilt, and a rerun resumes exactly.
        ray.init(num_cpus=os.cpu_count(), object_store_memory=settings.object_store_mb * 1024 ** 2,
                 include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                 _system_config={"max_lineage_bytes": LINEAGE_BYTES})
    ray.data.DataContext.get_current().enable_progress_bars = False  # our own bar counts written photos
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # no "progress bars disabled" line
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # no INFO lines about each dataset across our bar
    return int(ray.cluster_resources().get("GPU", 0))


def batch_size_for(settings: IngestSettings, gpus: int) -> int:
    """Photos per batch between the stages: what a GPU wants, or what keeps a CPU actor busy."""
    return settings.batch_size or (256 if gpus else 64)


def _embedding_stage(ds, bundle: BundleConfig, bundle_dir: Path, settings: IngestSettings, gpus: int, batch: int):
    import ray
    cpus = int(ray.cluster_resources().get("CPU", os.cpu_count() or 1))
    actors = settings.actors or (gpus if gpus else 1)
    # Fractional CPUs: an actor pool holding every CPU would starve the decode tasks (deadlock on 2 cores).
    resources = {"num_gpus": 1} if gpus else {"num_cpus": max(0.5, (cpus - 1) / actors)}
    head = (settings.placeable_head or bundle.default_head) if settings.placeable_only else None
    with warnings.catch_warnings():
        # max_restarts has no named parameter yet; passing it is the documented way to switch restarts off.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        return ds.map_batches(Embedder, fn_constructor_args=(str(bundle_dir), head, None if gpus else max(1, cpus - 1)),
                              batch_size=batch, compute=ray.data.ActorPoolStrategy(size=actors),
                              # Ray cannot restart actors whose arguments live in its object store (ray#53727) and
                              # logs an error for each; a failed actor fails the run, and a rerun resumes exactly.
                              max_restarts=0, **resources)


def _writer_stage(ds, location: str, bundle_dir: Path, rejects: Path, settings: IngestSettings, batch: int):
    import ray
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        return ds.map_batches(WriterStage, fn_constructor_args=(location, str(bundle_dir), str(rejects),
                                                                settings.placeable_only, settings.flush_every),
                              batch_size=batch, compute=ray.data.ActorPoolStrategy(size=1), num_cpus=0.25,
                              max_restarts=0)


def _collection(location: str | None, spec, include_removed: bool) -> tuple[str, KnownIds]:
    """The store's location, and the ids of the points it holds and of those removed from it (none with
    `include_removed`), creating the collection if needed; the store is closed again, for the writer actor. Runs
    as a Ray task: the driver never loads the collection."""
    with open_store(location, spec, wait_s=WRITER_WAIT_S) as store:
        removed = np.zeros(0, np.int64) if include_removed else store.removed_ids()
        return store.location, KnownIds(np.sort(store.all_ids()), removed)


def _index(location: str, spec) -> None:
    """Build the collection's index for global search, once the writer actor has let the store go."""
    with open_store(location, spec, wait_s=WRITER_WAIT_S) as store:
        store.optimize()


def run_ingest(bundle_dir: str | Path, store: str | None, source: IngestSource,
               settings: IngestSettings = IngestSettings()) -> IngestSummary:
    """Embed the photos of `source` and write them into the store made for this bundle."""
    import ray
    source.check()
    bundle_dir = Path(bundle_dir)
    bundle = BundleConfig.load(bundle_dir)
    if settings.placeable_only and not bundle.config["heads"]:
        raise BundleError(f"{bundle_dir}: the placeable filter needs a trained head in the bundle")
    start = time.perf_counter()
    location = store_location(store)
    summary = IngestSummary()
    rejected: dict[str, int] = {}
    gpus = _init_ray(settings)
    try:
        location, known = ray.get(ray.remote(num_cpus=0)(_collection).remote(location, bundle.collection_spec(),
                                                                             settings.include_removed))
        rejects = settings.rejects or default_rejects_path(location)
        batch = batch_size_for(settings, gpus)
        ds = source_dataset(source, known)
        ds = ds.map_batches(decode_batch, fn_kwargs={"preprocessing": bundle.preprocessing}, batch_size=batch,
                            num_cpus=DECODE_CPUS)
        ds = _embedding_stage(ds, bundle, bundle_dir, settings, gpus, batch)
        ds = _writer_stage(ds, location, bundle_dir, Path(rejects), settings, batch)
        with tqdm(unit="photo", desc="ingest", disable=not settings.progress) as bar:
            for counts in ds.iter_batches(batch_size=None, batch_format="numpy"):
                _add(summary, rejected, counts)
                bar.update(int(counts["seen"].sum()))
        if settings.index:  # also when nothing new was written: a run killed while indexing resumes here
            index_start = time.perf_counter()
            if settings.progress:
                print("ingest: indexing the collection for global search", file=sys.stderr, flush=True)
            ray.get(ray.remote(num_cpus=0)(_index).remote(location, bundle.collection_spec()))
            summary.index_seconds = time.perf_counter() - index_start
    finally:
        ray.shutdown()  # ends the writer actor (a later open replays what its write-ahead log holds)
    summary.rejected = rejected
    summary.read = summary.listed - summary.already_stored
    summary.count_after = summary.count_after or len(known.stored)
    summary.seconds = time.perf_counter() - start - summary.index_seconds  # the rate is the pipeline's own
    return summary


def _add(summary: IngestSummary, rejected: dict[str, int], counts: dict) -> None:
    summary.listed += int(counts["seen"].sum())
    summary.already_stored += int(counts["already_stored"].sum())
    summary.embedded += int(counts["embedded"].sum())
    summary.written += int(counts["written"].sum())
    summary.count_after = max(summary.count_after, int(counts["count"].max()))
    _add_json_counts(rejected, counts["rejected"])
    _add_json_counts(summary.written_sources, counts["sources"])


def _add_json_counts(total: dict[str, int], texts) -> None:
    """Add the writer's per-batch counts (JSON objects of name -> count) into `total`."""
    for text in texts:
        for name, n in json.loads(text).items():
            total[name] = total.get(name, 0) + n
