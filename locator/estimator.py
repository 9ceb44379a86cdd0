"""The estimator: a photo's retrieved neighbours → latitude, longitude, error radius and confidence.

The neighbours are aggregated (locator.aggregation); when none was found, the estimate falls back to the
predicted cell's centre. `radius_km` is the extent of the supporting neighbours when at least two agree, else the
cell's size; `confidence` = cell probability × (cluster size / K).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from locator.aggregation import aggregate
from locator.geo import haversine_km

_FACE_EDGE_KM = 10_007.5  # a quarter of the Earth's circumference: the edge of an S2 face cell


def cell_radius_km(level: int) -> float:
    """About half the diagonal of an S2 cell at `level`."""
    return 0.7 * _FACE_EDGE_KM / 2 ** level


@dataclass(frozen=True)
class Estimate:
    lat: float
    lon: float
    radius_km: float
    confidence: float
    cluster_size: int = 0
    distances_km: np.ndarray | None = None  # from the estimate to each valid neighbour
    note: str = ""


def estimate(lat: np.ndarray, lon: np.ndarray, scores: np.ndarray, k: int, aggregation: str,
             cell_lat: float, cell_lon: float, cell_level: int, cell_probability: float,
             **params: float) -> Estimate:
    """Estimate from the valid neighbours (lat, lon, similarity; most similar first) of one photo."""
    if len(lat) == 0:
        return Estimate(cell_lat, cell_lon, cell_radius_km(cell_level), 0.0,
                        note="no stored photo in the searched cell(s): estimate is the predicted cell's centre")
    result = aggregate(aggregation, lat, lon, scores, **params)
    distances = haversine_km(result.lat, result.lon, lat, lon)
    radius = float(max(distances[result.members].max(), 1.0)) if result.size >= 2 else cell_radius_km(cell_level)
    confidence = cell_probability * result.size / k if not math.isnan(cell_probability) else math.nan
    return Estimate(result.lat, result.lon, radius, confidence, result.size, distances)
