"""The writer: turns embedded batches into photo points, upserts them in batches and flushes periodically; rows
that cannot become points go to the rejects CSV with the reason.

In the pipeline it runs as one Ray actor (`WriterStage`): a single writer, as Qdrant Edge requires, in a process
of its own, so that the driver's memory does not grow with the collection."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np

from ingest.rows import STORED
from locator.bundle_config import BundleConfig
from locator.store import PhotoPoint, VectorStore
from locator.store.point import utc_now

NOT_PLACEABLE = "not placeable: the classifier puts it outside its true cell"


class StoreWriter:
    """Writes accepted photos to the store and rejected ones (with the reason) to a CSV file."""

    def __init__(self, store: VectorStore, partitions: list, rejects_path: Path, placeable_only: bool,
                 flush_every: int = 20_000) -> None:
        self.store, self.partitions, self.placeable_only = store, partitions, placeable_only
        self.flush_every = flush_every
        self.written = self.embedded = self.seen = self.already_stored = 0
        self.rejected: Counter[str] = Counter()
        self.written_sources: Counter[str] = Counter()
        self._since_flush = 0
        rejects_path.parent.mkdir(parents=True, exist_ok=True)
        self._rejects_file = rejects_path.open("w", newline="")
        self._rejects = csv.writer(self._rejects_file)
        self._rejects.writerow(["image", "photo_id", "source", "reason"])

    def _reject(self, batch: dict, row: int, reason: str) -> None:
        self.rejected[reason.split(":", 1)[0]] += 1
        self._rejects.writerow([batch["image"][row], batch["photo_id"][row], batch["source"][row], reason])

    def _point(self, batch: dict, row: int, now: str) -> PhotoPoint:
        return PhotoPoint.placed(batch["photo_id"][row], batch["source"][row], batch["lat"][row], batch["lon"][row],
                                 self.partitions, owner=batch["owner"][row], image=batch["image"][row],
                                 cells=[int(c) for c in batch["cells"][row]], now=now)

    def counts(self) -> dict[str, int]:
        return {"seen": self.seen, "already_stored": self.already_stored, "embedded": self.embedded,
                "written": self.written}

    def write(self, batch: dict) -> int:
        """Handle one embedded batch; returns the number of photos it covered."""
        keep = []
        for row, status in enumerate(batch["status"]):
            self.seen += 1
            if status == STORED:
                self.already_stored += 1
            elif status:
                self._reject(batch, row, str(status))
            elif self.placeable_only and not batch["placeable"][row]:
                self.embedded += 1
                self._reject(batch, row, NOT_PLACEABLE)
            else:
                self.embedded += 1
                keep.append(row)
        if keep:
            now = utc_now()
            self.store.add([self._point(batch, r, now) for r in keep], np.asarray(batch["vector"])[keep])
            self.written += len(keep)
            self.written_sources.update(str(batch["source"][r]) for r in keep)
            self._since_flush += len(keep)
        if self._since_flush >= self.flush_every:
            self.flush()
        self._rejects_file.flush()
        return len(batch["status"])

    def flush(self) -> None:
        self.store.flush()
        self._since_flush = 0

    def close(self) -> None:
        self.flush()
        self._rejects_file.close()


class WriterStage:
    """The single writer as a Ray actor: each call writes one embedded batch and returns one row of counts."""

    def __init__(self, store_location: str, bundle_dir: str, rejects: str, placeable_only: bool,
                 flush_every: int) -> None:
        from locator.store import open_store
        info = BundleConfig.load(bundle_dir)
        self.store = open_store(store_location, info.collection_spec(), wait_s=60.0)
        self.writer = StoreWriter(self.store, info.partitions(), Path(rejects), placeable_only, flush_every)

    def __call__(self, batch: dict) -> dict:
        before = self.writer.counts()
        tallies = {"rejected": self.writer.rejected, "sources": self.writer.written_sources}
        tallies_before = {name: Counter(tally) for name, tally in tallies.items()}
        self.writer.write(batch)
        after = self.writer.counts()
        row = {k: np.array([after[k] - before[k]]) for k in after}
        for name, tally in tallies.items():  # this batch's share of each tally, as one JSON object
            row[name] = np.array([json.dumps(dict(tally - tallies_before[name]))], dtype=object)
        row["count"] = np.array([self.store.count()])  # so that the driver never opens the store (its memory)
        return row
