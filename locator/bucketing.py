"""Shape buckets: photos keep their aspect ratio, so a stream of them holds many shapes; a backbone wants batches
of one shape. `Preprocessing` rounds the shorter side to a multiple of `bucket` px (32 by default), which bounds
the shapes to about 2 × size / bucket, and the batcher here groups a stream by shape across the whole stream: a
photo waits until its bucket holds `batch_size` photos, or until the stream ends. Each batch carries the stream
positions of its photos, so callers put the results back in order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch


class BucketBatcher:
    def __init__(self, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.batch_size = batch_size
        self._buckets: dict[tuple[int, ...], tuple[list[int], list[torch.Tensor]]] = {}

    def add(self, index: int, tensor: torch.Tensor) -> tuple[list[int], torch.Tensor] | None:
        """Put one photo in its bucket; returns (positions, stacked batch) when the bucket is full."""
        indices, tensors = self._buckets.setdefault(tuple(tensor.shape), ([], []))
        indices.append(index)
        tensors.append(tensor)
        if len(indices) < self.batch_size:
            return None
        del self._buckets[tuple(tensor.shape)]
        return indices, torch.stack(tensors)

    def flush(self) -> Iterator[tuple[list[int], torch.Tensor]]:
        """The partial buckets, once the stream has ended."""
        buckets, self._buckets = self._buckets, {}
        for indices, tensors in buckets.values():
            yield indices, torch.stack(tensors)


def bucketed(stream: Iterable[tuple[int, torch.Tensor]], batch_size: int) -> Iterator[tuple[list[int], torch.Tensor]]:
    """(positions, batch) of one shape each, from (position, tensor) pairs; every photo exactly once."""
    batcher = BucketBatcher(batch_size)
    for index, tensor in stream:
        full = batcher.add(index, tensor)
        if full is not None:
            yield full
    yield from batcher.flush()
