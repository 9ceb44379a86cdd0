"""Ray actor: embeds decoded photos with the bundle's backbone + RRM, assigns cells, judges placeability.

One bundle load per actor. The device is the actor's: CUDA when Ray gave it a GPU, else the CPU. Photos of a
batch go through the backbone by shape bucket.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np


class Embedder:
    """Imports torch in the actor only: the driver that names this class stays small."""

    def __init__(self, bundle_dir: str, placeable_head: str | None, torch_threads: int | None = None,
                 normalise_threads: int | None = None) -> None:
        import torch

        from locator.bundle import Bundle
        from locator.encoder import PhotoEncoder
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.bundle = Bundle.load(bundle_dir)
        self.encoder = PhotoEncoder(self.bundle)
        self.placeable_head = placeable_head
        # Beside a GPU, normalising a batch's pixels on one thread (0.6 ms a photo) would take as long as embedding
        # it; numpy releases the GIL, so threads share the work. On a CPU the cores are the backbone's.
        if normalise_threads is None:
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            normalise_threads = min(8, cpus) if self.encoder.device.type == "cuda" else 0
        self.pool = ThreadPoolExecutor(normalise_threads) if normalise_threads > 1 else None

    def _tensor(self, pixels: bytes, height: int, width: int):
        array = np.frombuffer(pixels, dtype=np.uint8).reshape(height, width, 3)
        return self.bundle.backbone.preprocessing.normalise(array)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["image"])
        rows = np.flatnonzero([not s for s in batch["status"]])
        vectors = np.zeros((n, self.bundle.embedding_dim), dtype=np.float32)
        cells = np.full((n, len(self.bundle.partitions)), -1, dtype=np.int64)
        placeable = np.zeros(n, dtype=bool)
        if len(rows):
            def tensor(r: int):
                return self._tensor(batch["pixels"][r], int(batch["height"][r]), int(batch["width"][r]))
            tensors = list(self.pool.map(tensor, rows)) if self.pool else [tensor(r) for r in rows]
            encoded = self.encoder.encode(tensors, classify=self.placeable_head is not None,
                                          head_kind=self.placeable_head or None)
            vectors[rows] = encoded.embeddings
            lat, lon = batch["lat"][rows].astype(float), batch["lon"][rows].astype(float)
            for level, partition in enumerate(self.bundle.partitions):
                cells[rows, level] = partition.lookup(lat, lon)
            if encoded.prediction is not None:
                placeable[rows] = (encoded.prediction.cell == cells[rows, -1]) & (cells[rows, -1] >= 0)
        out = {k: v for k, v in batch.items() if k != "pixels"}
        out.update(vector=vectors, cells=cells, placeable=placeable)
        return out
