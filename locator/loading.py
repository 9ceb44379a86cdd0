"""Reading photos for the backbone as a stream that overlaps the model: on CUDA through DataLoader worker
processes (threads for fewer than STREAM_ITEMS photos), on a CPU through two threads (the cores run the model).
Each item comes out as (position, tensor), or (position, error message) for a photo that cannot be read;
positions come out in order."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from locator.backbone import Preprocessing
from locator.datasets import DatasetError
from locator.images import DraftSize, ImageLoadError, load_image, to_model_image
from locator.shards import ShardRecord

ImageInput = str | Path | bytes | Image.Image | np.ndarray | ShardRecord
CPU_THREADS = 2
READ_AHEAD = 32  # photos decoded ahead of the model on threads
STREAM_ITEMS = 512  # worker processes take about a second to start: fewer photos decode on threads


def photo_name(item: ImageInput, index: int) -> str:
    if isinstance(item, ShardRecord):
        return item.location
    return str(item) if isinstance(item, (str, Path)) else f"<image {index}>"


def read_photo(item: ImageInput, draft_to: DraftSize | None = None) -> Image.Image:
    """A path, encoded bytes, PIL image or uint8 array as an upright, metadata-free RGB image; ImageLoadError
    otherwise. `draft_to` as load_image's."""
    if isinstance(item, (str, Path)):
        return load_image(item, draft_to=draft_to)
    if isinstance(item, ShardRecord):
        try:
            return load_image(item.read(), name=item.location, draft_to=draft_to)
        except DatasetError as exc:  # the shard cannot be read there
            raise ImageLoadError(str(exc)) from exc
    if isinstance(item, bytes):
        return load_image(item, draft_to=draft_to)
    if isinstance(item, Image.Image):
        return to_model_image(item)
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim not in (2, 3):
            raise ImageLoadError(f"<array {item.shape} {item.dtype}>: need a uint8 H×W or H×W×C array")
        return to_model_image(Image.fromarray(item))
    raise ImageLoadError(f"<{type(item).__name__}>: not a path, PIL image or numpy array")


class PhotoDataset(Dataset):
    def __init__(self, items: Sequence[ImageInput], preprocessing: Preprocessing) -> None:
        self.items, self.preprocessing = items, preprocessing

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | str]:
        try:
            image = read_photo(self.items[index], self.preprocessing.draft_to)
            return index, self.preprocessing.to_tensor(image)
        except ImageLoadError as exc:
            return index, str(exc)


def default_workers(device: torch.device, items: int) -> int:
    """Worker processes for a stream beside a GPU; none on a CPU, or for fewer than STREAM_ITEMS photos."""
    if device.type != "cuda" or items < STREAM_ITEMS:
        return 0
    return min(8, max(1, (os.cpu_count() or 2) - 1))


def decode_threads(device: torch.device) -> int:
    """Threads decoding when no worker process does: two on a CPU (its cores run the model), up to eight beside a
    GPU."""
    return min(8, max(CPU_THREADS, os.cpu_count() or 2)) if device.type == "cuda" else CPU_THREADS


def load_stream(items: Sequence[ImageInput], preprocessing: Preprocessing, device: torch.device,
                workers: int | None = None) -> Iterator[tuple[int, torch.Tensor | str]]:
    """Every item once, in order, read ahead of the model."""
    dataset = PhotoDataset(items, preprocessing)
    workers = default_workers(device, len(items)) if workers is None else workers
    if workers and len(items) > 1:
        yield from DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers, prefetch_factor=8,
                              collate_fn=_as_is)
        return
    if len(items) == 1:  # nothing to overlap: a thread pool would only add its start-up (~0.4 ms)
        yield dataset[0]
        return
    with ThreadPoolExecutor(max_workers=decode_threads(device)) as pool:
        pending: deque = deque()
        for index in range(len(items)):
            pending.append(pool.submit(dataset.__getitem__, index))
            if len(pending) > READ_AHEAD:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _as_is(item: tuple[int, torch.Tensor | str]) -> tuple[int, torch.Tensor | str]:
    return item
