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


def metrics_json(rows: list[GeoMetrics], reliabilities: list[Reliability] | None = None,
                 extra: dict | None = None) -> str:
    body = {"failure_counts_as_km": FAILURE_ERROR_KM, "rows": [r.to_json() for r in rows]}
    if reliabilities:
        body["reliability"] = [r.to_json() for r in reliabilities]
    return json.dumps({**body, **(extra or {})}, indent=2)


@dataclass(frozen=True)
class Reliability:
    """How well a method's `confidence` estimates P(error < threshold): expected calibration error over equal-width
    bins, the bins themselves, and the share of errors within the predicted `radius_km` (a median: 0.5 is right)."""

    name: str
    threshold_km: float
    photos: int
    ece: float
    bins: list[dict]
    within_radius: float | None

    def to_json(self) -> dict:
        return asdict(self)


def reliability(name: str, confidence: ArrayLike, errors_km: ArrayLike, threshold_km: float = 25.0, bins: int = 10,
                radius_km: ArrayLike | None = None) -> Reliability:
    """Reliability of the photos with a confidence (failed photos have none and are left out)."""
    c, e = np.asarray(confidence, float), np.asarray(errors_km, float)
    keep = np.isfinite(c) & np.isfinite(e)
    c, e = c[keep], e[keep]
    success = e < threshold_km
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(c, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        mean_c = float(c[inside].mean()) if n else float("nan")
        accuracy = float(success[inside].mean()) if n else float("nan")
        if n:
            ece += n / len(c) * abs(accuracy - mean_c)
        rows.append({"from": float(edges[b]), "to": float(edges[b + 1]), "photos": n, "mean_confidence": mean_c,
                     "accuracy": accuracy})
    within = None
    if radius_km is not None:
        r = np.asarray(radius_km, float)[keep]
        within = float(np.mean(e < r)) if len(e) else float("nan")
    return Reliability(name, threshold_km, len(c), float(ece) if len(c) else float("nan"), rows, within)


def reliability_markdown(rel: Reliability) -> str:
    lines = [f"Reliability of `confidence` as P(error < {rel.threshold_km:g} km), {rel.name}: expected calibration "
             f"error **{rel.ece:.3f}** over {rel.photos} photos"
             + (f"; {100 * rel.within_radius:.1f}% of errors lie within `radius_km` (a median radius: 50% is "
                "right)." if rel.within_radius is not None else "."), "",
             "| confidence | photos | mean confidence | share within " + f"{rel.threshold_km:g} km |", "|---|---|---|---|"]
    for row in rel.bins:
        if row["photos"]:
            lines.append(f"| {row['from']:.1f}–{row['to']:.1f} | {row['photos']} | {row['mean_confidence']:.3f} | "
                         f"{row['accuracy']:.3f} |")
        else:
            lines.append(f"| {row['from']:.1f}–{row['to']:.1f} | 0 | – | – |")
    return "\n".join(lines) + "\n"
