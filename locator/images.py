"""Loading photos for models: pixels only, upright, RGB, with one clear error for anything unreadable.

Query photos may carry their true location in EXIF or comments; nothing but pixels leaves this module.
Pillow's decompression-bomb limit stays in force (an oversized image is an error, not a risk).
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from locator.errors import ImageError

ImageSource = str | Path | bytes
DraftSize = Callable[[int, int], tuple[int, int]]


class ImageLoadError(ImageError):
    """A photo that cannot be decoded; the message names it."""


def load_image(source: ImageSource, name: str | None = None, draft_to: DraftSize | None = None) -> Image.Image:
    """Decode a photo from a path or encoded bytes into a metadata-free RGB image with EXIF orientation applied.
    With `draft_to` (stored width, height → the size the image will be resized to), a JPEG is decoded at the
    smallest of libjpeg's scales (1/2, 1/4, 1/8) that still covers that size: a 12-megapixel photo meant for a
    300-px model decodes several times faster."""
    label = source_label(source, name)
    try:
        with _open(source, label) as image:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                if draft_to is not None:
                    _draft(image, draft_to)
                image.load()
                upright = ImageOps.exif_transpose(image)
            return _pixels_only(_to_rgb(upright))
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(f"{label}: refused as a possible decompression bomb ({exc})") from exc
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as exc:
        raise ImageLoadError(f"{label}: corrupt or truncated image ({exc})") from exc


def source_label(source: ImageSource, name: str | None = None) -> str:
    """How messages name a photo: `name` if given, else its path, or its size for encoded bytes."""
    return name or (f"<{len(source)} bytes>" if isinstance(source, bytes) else str(source))


def longest_side(pixels: int) -> DraftSize:
    """A `draft_to` for resizing the longest side to `pixels` (thumbnails)."""
    def size(width: int, height: int) -> tuple[int, int]:
        scale = pixels / max(width, height)
        return math.ceil(width * scale), math.ceil(height * scale)
    return size


def _draft(image: Image.Image, draft_to: DraftSize) -> None:
    need_w, need_h = draft_to(*image.size)  # resize targets are symmetric in width and height: EXIF rotation is moot
    if image.format in ("JPEG", "MPO") and image.width >= 2 * need_w and image.height >= 2 * need_h:
        image.draft(image.mode, (need_w, need_h))  # libjpeg keeps both sides at least these


def to_model_image(image: Image.Image) -> Image.Image:
    """An already-decoded PIL image prepared like `load_image`: upright, RGB, pixels only."""
    try:
        return _pixels_only(_to_rgb(ImageOps.exif_transpose(image)))
    except (OSError, ValueError) as exc:
        raise ImageLoadError(f"<PIL image {image.mode} {image.size}>: cannot convert ({exc})") from exc


def _open(source: ImageSource, label: str) -> Image.Image:
    if isinstance(source, bytes):
        data = source
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise ImageLoadError(f"{label}: cannot read file ({exc.strerror or exc})") from exc
    if not data:
        raise ImageLoadError(f"{label}: empty file (0 bytes)")
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageLoadError(f"{label}: not an image Pillow can identify") from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _wide_grey_to_rgb(image)
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Composite on white: dropping alpha would expose arbitrary colours stored under transparent pixels.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if mode == "RGB" else image.convert("RGB")


def _wide_grey_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit / 32-bit / float greyscale → 8-bit RGB, scaled by the type's range rather than clipped."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        top = 1.0 if values.size and np.nanmax(values) <= 1.0 else 65535.0
    else:
        top = 65535.0 if values.size == 0 or values.max() <= 65535 else float(values.max())
    scaled = np.clip(np.nan_to_num(values) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L").convert("RGB")


def _pixels_only(image: Image.Image) -> Image.Image:
    """A fresh image holding the pixels and nothing else (no EXIF, ICC, comments, XMP)."""
    return Image.fromarray(np.asarray(image, dtype=np.uint8), mode="RGB")
