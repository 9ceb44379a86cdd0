"""Predictions: the `Prediction` a locate method returns, and prediction files (`image,lat,lon`) matched to
ground-truth records."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from locator.datasets import DatasetError, Record


@dataclass(frozen=True)
class Neighbour:
    """A reference photo used as evidence."""

    photo_id: str
    source: str
    image: str
    lat: float
    lon: float
    similarity: float
    distance_km: float
    point_id: int | None = None  # the reference's id in the store


@dataclass
class Prediction:
    """Where a photo was taken, and why. Check `ok` first: a photo that could not be read has `ok=False`, the
    reason in `error`, and NaN coordinates.

    `radius_km` and `confidence` are what the method's estimator reports (see locator.estimator).
    """

    image: str
    lat: float = math.nan
    lon: float = math.nan
    ok: bool = True
    error: str = ""
    method: str = ""
    cell_token: str = ""
    cell_probability: float = math.nan
    cells_searched: list[str] = field(default_factory=list)
    neighbours: list[Neighbour] = field(default_factory=list)
    cluster_size: int = 0
    radius_km: float = math.nan
    confidence: float = math.nan
    note: str = ""
    exif_lat: float = math.nan  # where the photo's own EXIF GPS tags say it was taken (locator.claims): a claim to
    exif_lon: float = math.nan  # check, never used by the estimate; NaN without them
    exif_distance_km: float = math.nan  # from the estimate to that claim


@dataclass(frozen=True)
class PredictionRow:
    """One predicted location; lat/lon are NaN when the prediction failed."""

    image: str
    lat: float
    lon: float


def read_predictions_csv(path: str | Path) -> list[PredictionRow]:
    """Read `image,lat,lon` rows; an empty or non-finite lat/lon marks a failed prediction."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = {"image", "lat", "lon"} - set(reader.fieldnames or [])
            if missing:
                raise DatasetError(f"{path}: missing column(s) {', '.join(sorted(missing))}; expected image,lat,lon")
            return [PredictionRow(row["image"].strip(), _number(row["lat"]), _number(row["lon"])) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot read predictions ({exc})") from exc


def _number(text: str | None) -> float:
    try:
        value = float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan
    return value if math.isfinite(value) else math.nan


def _truth_keys(record: Record) -> set[str]:
    path = Path(record.image)
    return {record.image, path.name, path.stem, record.photo_id} - {""}


def align(predictions: list[PredictionRow], truth: list[Record]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Predicted (lat, lon) arrays in truth order (NaN where an image has no prediction) and unmatched rows.

    A prediction matches a truth record by full image path, file name, file stem or photo id, whichever is
    unambiguous in the truth set.
    """
    owners: dict[str, set[int]] = {}
    for index, record in enumerate(truth):
        for key in _truth_keys(record):
            owners.setdefault(key, set()).add(index)
    unique = {key: next(iter(found)) for key, found in owners.items() if len(found) == 1}
    lat = np.full(len(truth), np.nan)
    lon = np.full(len(truth), np.nan)
    seen: set[int] = set()
    unmatched = []
    for row in predictions:
        image = Path(row.image)
        index = next((unique[k] for k in (row.image, image.name, image.stem) if k in unique), None)
        if index is None:
            unmatched.append(row.image)
            continue
        if index in seen:
            raise DatasetError(f"two predictions for the same image {truth[index].image} (second: {row.image})")
        seen.add(index)
        lat[index], lon[index] = row.lat, row.lon
    return lat, lon, unmatched
