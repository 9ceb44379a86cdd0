"""The single writer: turns embedded batches into points, upserts them in batches and flushes periodically."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from locator.bundle import Bundle
from locator.store import VectorStore, cell_field, point_id, token_field


class StoreWriter:
    """Writes accepted photos to the store and rejected ones (with the reason) to a CSV file."""

    def __init__(self, store: VectorStore, bundle: Bundle, rejects_path: Path, placeable_only: bool,
                 flush_every: int = 20_000) -> None:
        self.store, self.bundle, self.placeable_only = store, bundle, placeable_only
        self.flush_every = flush_every
        self.written = 0
        self.embedded = 0
        self.rejected: Counter[str] = Counter()
        self._since_flush = 0
        rejects_path.parent.mkdir(parents=True, exist_ok=True)
        self._rejects_file = rejects_path.open("w", newline="")
        self._rejects = csv.writer(self._rejects_file)
        self._rejects.writerow(["image", "photo_id", "source", "reason"])

    def _reject(self, batch: dict, row: int, reason: str) -> None:
        kind = reason.split(":", 1)[0]
        self.rejected[kind] += 1
        self._rejects.writerow([batch["image"][row], batch["photo_id"][row], batch["source"][row], reason])

    def _payload(self, batch: dict, row: int, now: str) -> dict:
        payload = {"lat": float(batch["lat"][row]), "lon": float(batch["lon"][row]),
                   "photo_id": str(batch["photo_id"][row]), "owner": str(batch["owner"][row]),
                   "source": str(batch["source"][row]), "image": str(batch["image"][row]), "ingest_time": now}
        for level, partition in enumerate(self.bundle.partitions):
            cell = int(batch["cells"][row, level])
            payload[cell_field(level)] = cell
            payload[token_field(level)] = partition.tokens[cell] if cell >= 0 else ""
        return payload

    def write(self, batch: dict) -> int:
        """Handle one embedded batch; returns the number of photos it covered (written or rejected)."""
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        keep = []
        for row, error in enumerate(batch["error"]):
            if error:
                self._reject(batch, row, str(error))
                continue
            self.embedded += 1
            if self.placeable_only and not batch["placeable"][row]:
                self._reject(batch, row, "not placeable: the classifier puts it outside its true cell")
                continue
            keep.append(row)
        if keep:
            ids = [point_id(str(batch["source"][r]), str(batch["photo_id"][r])) for r in keep]
            self.store.upsert(ids, np.asarray(batch["vector"])[keep], [self._payload(batch, r, now) for r in keep])
            self.written += len(keep)
            self._since_flush += len(keep)
        if self._since_flush >= self.flush_every:
            self.flush()
        self._rejects_file.flush()
        return len(batch["error"])

    def flush(self) -> None:
        self.store.flush()
        self._since_flush = 0

    def close(self) -> None:
        self.flush()
        self._rejects_file.close()
