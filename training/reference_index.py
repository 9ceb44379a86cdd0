"""Exact search over one fold's reference photos, for fitting the fused model, in bounded memory.

The references' embeddings are written once, sorted by fine cell, as float16: in memory when small, else into a
file in a temporary folder (removed on close). A search within cells reads only those cells'
rows, one contiguous slice per cell; a global search streams the array in blocks and keeps a running top k. So
resident memory depends on the block and the number of queries, not on the number of references: at MP16's
scale (~3 M placeable photos × 1,792 dims, 11 GB) the array would not fit beside everything else.

Results are those of an exhaustive search: the k best scores, best first (among equal scores, which come first
is not defined).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from locator.exact_index import block_rows, stream_top_k, top_k

IN_MEMORY_BYTES = 1 << 30
Hits = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # ids, scores, lat, lon: (queries, k) each


class ReferenceIndex:
    def __init__(self, embeddings: np.ndarray | Path, dim: int, lat: np.ndarray, lon: np.ndarray, cells: np.ndarray,
                 folder: Path | None = None) -> None:
        """The embeddings (references × dim float16, sorted by cell: an array, or a file of them) and the
        references' lat, lon and fine cells, in the same order; `folder` is removed on close."""
        self.embeddings, self.dim, self.folder = embeddings, dim, folder
        self.lat, self.lon, self.cells = lat, lon, cells

    @classmethod
    def build(cls, embed: Callable[[np.ndarray], np.ndarray], rows: np.ndarray, dim: int, lat: np.ndarray,
              lon: np.ndarray, cells: np.ndarray, chunk: int = 8192) -> ReferenceIndex:
        """`embed(rows)` gives the embeddings of training rows; `rows` are the references, `lat`, `lon` and
        `cells` theirs. They are embedded in cell order, a chunk at a time."""
        order = np.argsort(cells, kind="stable")
        rows = np.asarray(rows)[order]
        folder = None
        if len(rows) * dim * 2 <= IN_MEMORY_BYTES:
            out: np.ndarray | Path = np.empty((len(rows), dim), dtype=np.float16)
        else:
            folder = Path(tempfile.mkdtemp(prefix="geoloc-fusion-index-"))
            out = folder / "embeddings.f16"
        try:
            with (open(out, "wb") if isinstance(out, Path) else nullcontext()) as handle:
                for s in range(0, len(rows), chunk):
                    block = np.ascontiguousarray(embed(rows[s:s + chunk]), dtype=np.float16)
                    if handle is None:
                        out[s:s + len(block)] = block
                    else:
                        handle.write(memoryview(block).cast("B"))
        except BaseException:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        return cls(out, dim, np.asarray(lat, float)[order], np.asarray(lon, float)[order], np.asarray(cells)[order],
                   folder)

    def __len__(self) -> int:
        return len(self.cells)

    def close(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> ReferenceIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Embeddings [start, stop) as float32; from the file by one read (a memory map would count every page
        it ever touched as resident memory)."""
        stop = min(stop, len(self))
        if isinstance(self.embeddings, np.ndarray):
            return self.embeddings[start:stop].astype(np.float32)
        out = np.empty((max(stop - start, 0), self.dim), dtype=np.float16)
        with open(self.embeddings, "rb", buffering=0) as handle:
            handle.seek(start * self.dim * 2)
            handle.readinto(memoryview(out).cast("B"))
        return out.astype(np.float32)

    def search(self, queries: np.ndarray, allowed: list[np.ndarray] | None, k: int) -> Hits:
        """The k most similar references of each query: among those in its `allowed` cells, or anywhere (None);
        ids are positions in the index, -1 (score -inf) where fewer were found."""
        queries = np.asarray(queries, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf)
        found_scores, found_ids = self._global(queries, k) if allowed is None else self._within(queries, allowed, k)
        width = found_ids.shape[1]
        ids[:, :width], scores[:, :width] = found_ids, found_scores
        safe = np.clip(ids, 0, None)
        lat = np.where(ids >= 0, self.lat[safe], 0.0) if len(self) else np.zeros(ids.shape)
        lon = np.where(ids >= 0, self.lon[safe], 0.0) if len(self) else np.zeros(ids.shape)
        return ids, scores, lat, lon

    def _within(self, queries: np.ndarray, allowed: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, ids = np.full((len(queries), k), -np.inf), np.full((len(queries), k), -1, dtype=np.int64)
        for j, cells in enumerate(allowed):
            cells = np.unique(np.asarray(cells, dtype=self.cells.dtype))
            starts, stops = np.searchsorted(self.cells, cells, "left"), np.searchsorted(self.cells, cells, "right")
            spans = [(a, b) for a, b in zip(starts, stops) if b > a]
            if spans:
                positions = np.concatenate([np.arange(a, b) for a, b in spans])
                embeddings = np.concatenate([self.rows(a, b) for a, b in spans])
                best_scores, best_ids = top_k((embeddings @ queries[j])[None], positions[None], k)
                scores[j, :best_ids.shape[1]], ids[j, :best_ids.shape[1]] = best_scores[0], best_ids[0]
        return scores, ids

    def _global(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        size = block_rows(len(queries), self.dim)
        blocks = ((np.arange(s, min(s + size, len(self))), self.rows(s, s + size)) for s in range(0, len(self), size))
        return stream_top_k(queries, blocks, k)
