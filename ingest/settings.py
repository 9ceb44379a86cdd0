"""Settings of an ingest run (CLI arguments; kept free of torch and Ray so that `--help` is quick)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from locator.heads import HEADS
from locator.settings import option


@dataclass
class IngestSettings:
    placeable_only: bool = option(False, "keep only photos the classifier puts in their true cell "
                                         "(the paper's background set)")
    placeable_head: str | None = option(None, "head for --placeable-only (default: the bundle's)", choices=HEADS)
    batch_size: int | None = option(None, "photos per batch between the pipeline's stages (default: 256 with GPUs, "
                                          "64 on CPUs)", minimum=1)
    flush_every: int = option(20_000, "points between flushes (a flush also truncates Qdrant Edge's WAL, which "
                                      "keeps upserts fast)", minimum=1)
    actors: int | None = option(None, "embedding actors (default: one per GPU, else 1)", minimum=1)
    address: str | None = option(None, "join an existing Ray cluster (e.g. auto or ray://host:10001)")
    object_store_mb: int = option(512, "Ray object store size for a local cluster, MB", minimum=64)
    rejects: Path | None = option(None, "CSV of rejected photos (default: beside the store)")
    index: bool = option(True, "after writing, build the collection's index for global search (Qdrant's HNSW "
                               "graph; minutes per million points, and global queries then take milliseconds)")
    include_removed: bool = option(False, "add photos that were removed from the collection since an earlier run "
                                          "(geoloc remove, DELETE /v1/photos) when the input lists them again; by "
                                          "default they are rejected, as 'removed from the collection'")
    progress: bool = option(True, "show a progress bar", cli=False)
