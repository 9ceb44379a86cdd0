"""What a photo's own metadata claims about where it was taken: its EXIF GPS position, read beside the estimate
and never used to make it. For analysts checking a claimed location, the distance between the two is the point."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from locator.datasets import DatasetError, read_exif_gps
from locator.geo import haversine_km
from locator.predictions import Prediction


def exif_position(source: object) -> tuple[float, float] | None:
    """(lat, lon) from the EXIF GPS tags of a photo given as a path or encoded bytes; None for other inputs, for
    photos without a GPS position, and for unreadable or malformed tags (a claim that cannot be read is no claim)."""
    if not isinstance(source, (str, Path, bytes)):
        return None
    try:
        return read_exif_gps(source)
    except DatasetError:
        return None


def attach_exif_claims(predictions: Sequence[Prediction], sources: Sequence[object]) -> None:
    """Fill each prediction's `exif_lat`, `exif_lon` and `exif_distance_km` (estimate to claim) from its photo."""
    for p, source in zip(predictions, sources):
        claim = exif_position(source)
        if claim is None:
            continue
        p.exif_lat, p.exif_lon = claim
        if p.ok and not math.isnan(p.lat):
            p.exif_distance_km = float(haversine_km(p.lat, p.lon, *claim))
