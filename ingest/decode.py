"""Ray map task: decode and resize photos into raw RGB pixels (normalisation happens in the embedding actor)."""

from __future__ import annotations

import numpy as np

from locator.backbone import Preprocessing
from locator.images import ImageLoadError, load_image


def decode_batch(batch: dict[str, np.ndarray], preprocessing: dict) -> dict[str, np.ndarray]:
    """For `map_batches` tasks (batch_format="numpy"): adds `pixels` (bytes), `height`, `width`, `error`."""
    resize = Preprocessing.from_json(preprocessing).resized
    pixels, heights, widths, errors = [], [], [], []
    encoded = batch.get("data")
    for row, image in enumerate(batch["image"]):
        try:
            source = bytes(encoded[row]) if encoded is not None else str(image)
            resized = resize(load_image(source, name=str(image)))
            pixels.append(np.asarray(resized, dtype=np.uint8).tobytes())
            widths.append(resized.width)
            heights.append(resized.height)
            errors.append("")
        except ImageLoadError as exc:
            pixels.append(b"")
            widths.append(0)
            heights.append(0)
            errors.append(f"unreadable: {exc}")
    out = {k: v for k, v in batch.items() if k != "data"}
    out.update(pixels=np.array(pixels, dtype=object), height=np.array(heights), width=np.array(widths),
               error=np.array(errors, dtype=object))
    return out
