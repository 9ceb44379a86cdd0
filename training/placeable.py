"""The background collection (§3.3.3): training photos that the classifier puts in their true cell."""

from __future__ import annotations

import copy

import numpy as np
import torch

from locator.heads import Head
from training.batches import TrainingRows
from training.heads import resolve_device, to_device

CHUNK = 8192


@torch.inference_mode()
def placeable_mask(head: Head, features: np.ndarray, true_cells: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """True for photos whose predicted finest cell equals their true cell (-1 = no cell: never placeable)."""
    predicted = np.concatenate([
        head.predict(torch.from_numpy(np.asarray(features[s:s + batch_size], dtype=np.float32))).cell
        for s in range(0, len(features), batch_size)
    ]) if len(features) else np.zeros(0, dtype=np.int64)
    return (predicted == np.asarray(true_cells)) & (np.asarray(true_cells) >= 0)


@torch.inference_mode()
def predicted_cells(head: Head, data: TrainingRows, rows: np.ndarray,
                    device: str | torch.device | None = None) -> np.ndarray:
    """The head's finest cell for each of `rows`, read from the cache a chunk at a time, on `device` (default:
    CUDA when present: at MP16's scale a ce head over 12,893 cells costs ~170 TFLOP, half an hour on a CPU)."""
    device = resolve_device(device)
    model = head if device.type == "cpu" else copy.deepcopy(head).to(device)
    out = [model.predict(to_device(data.gather(rows[s:s + CHUNK]), device)).cell
           for s in range(0, len(rows), CHUNK)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
