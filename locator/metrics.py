"""The paper's evaluation: accuracy within distance thresholds, median and mean error.

An image whose prediction failed counts as a miss at every threshold and is never dropped from the
denominator; in the median and mean it counts as the largest possible error (half the Earth's circumference).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike

from locator.geo import EARTH_RADIUS_KM, haversine_km

THRESHOLDS_KM = (0.1, 1.0, 5.0, 10.0, 25.0, 200.0, 750.0, 2500.0)
FAILURE_ERROR_KM = math.pi * EARTH_RADIUS_KM


@dataclass(frozen=True)
class GeoMetrics:
    """Accuracy (fraction of all images) below each threshold, error statistics and counts."""

    name: str
    images: int
    failed: int
    accuracy: dict[str, float]
    median_km: float
    mean_km: float

    def to_json(self) -> dict:
        return asdict(self)


def threshold_label(km: float) -> str:
    return f"{km:g} km"


def geolocation_metrics(true_lat: ArrayLike, true_lon: ArrayLike, pred_lat: ArrayLike, pred_lon: ArrayLike,
                        name: str = "predictions", thresholds: tuple[float, ...] = THRESHOLDS_KM) -> GeoMetrics:
    """Metrics for predictions against the truth; a NaN prediction is a failed image."""
    t_lat, t_lon = np.asarray(true_lat, float), np.asarray(true_lon, float)
    p_lat, p_lon = np.asarray(pred_lat, float), np.asarray(pred_lon, float)
    if not (t_lat.shape == t_lon.shape == p_lat.shape == p_lon.shape):
        raise ValueError("truth and predictions must have one entry per image")
    failed = ~(np.isfinite(p_lat) & np.isfinite(p_lon))
    errors = np.where(failed, FAILURE_ERROR_KM, haversine_km(t_lat, t_lon, np.nan_to_num(p_lat), np.nan_to_num(p_lon)))
    n = len(errors)
    accuracy = {threshold_label(t): (float(np.sum(~failed & (errors < t))) / n if n else 0.0) for t in thresholds}
    return GeoMetrics(
        name=name,
        images=n,
        failed=int(failed.sum()),
        accuracy=accuracy,
        median_km=float(np.median(errors)) if n else float("nan"),
        mean_km=float(np.mean(errors)) if n else float("nan"),
    )


def markdown_table(rows: list[GeoMetrics]) -> str:
    """One row per method: Acc@ thresholds in percent, then median / mean error and counts."""
    if not rows:
        return ""
    labels = list(rows[0].accuracy)
    head = ["method", *(f"Acc@{label}" for label in labels), "median km", "mean km", "images", "failed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.name, *(f"{100 * row.accuracy[label]:.1f}" for label in labels),
                 f"{row.median_km:,.1f}", f"{row.mean_km:,.1f}", str(row.images), str(row.failed)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def metrics_json(rows: list[GeoMetrics]) -> str:
    return json.dumps({"failure_counts_as_km": FAILURE_ERROR_KM, "rows": [r.to_json() for r in rows]}, indent=2)
