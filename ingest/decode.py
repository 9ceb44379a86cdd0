"""Ray map task: decode and resize photos into raw RGB pixels (normalisation happens in the embedding actor)."""

from __future__ import annotations

import numpy as np

from locator.preprocessing import Preprocessing
from locator.images import ImageLoadError, load_image


def decode_batch(batch: dict[str, np.ndarray], preprocessing: dict) -> dict[str, np.ndarray]:
    """For `map_batches` tasks (batch_format="numpy"): adds `pixels` (bytes), `height`, `width`; a photo that
    cannot be read gets its reason in `status`. Rows with a status are passed on without decoding."""
    settings = Preprocessing.from_json(preprocessing)
    n = len(batch["image"])
    pixels, heights, widths = [b""] * n, np.zeros(n, np.int64), np.zeros(n, np.int64)
    status = np.array(batch["status"], dtype=object)
    for row in range(n):
        if status[row]:
            continue
        encoded = batch["data"][row]
        source = bytes(encoded) if encoded is not None and len(encoded) else str(batch["image"][row])
        try:
            image = load_image(source, name=str(batch["image"][row]), draft_to=settings.draft_to)
            resized = settings.resized(image)
        except ImageLoadError as exc:
            status[row] = f"unreadable: {exc}"
            continue
        pixels[row], widths[row], heights[row] = np.asarray(resized, np.uint8).tobytes(), resized.width, resized.height
    out = {k: v for k, v in batch.items() if k != "data"}
    out.update(pixels=np.array(pixels, dtype=object), height=heights, width=widths, status=status)
    return out
