"""Photo coordinate samples for partitioning: reading `LAT,LON` / `lat,lon` CSVs and a synthetic world."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from locator.datasets import DatasetError
from locator.geo import CoordinateError, validate_latlon, xyz_to_latlon, latlon_to_xyz

_LAT_NAMES = ("lat", "latitude")
_LON_NAMES = ("lon", "lng", "longitude")


def read_coordinates_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon) arrays in degrees from any CSV with a lat and a lon column (any case)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip().lower() for name in next(reader, [])]
            lat_i = next((header.index(n) for n in _LAT_NAMES if n in header), None)
            lon_i = next((header.index(n) for n in _LON_NAMES if n in header), None)
            if lat_i is None or lon_i is None:
                raise DatasetError(f"{path}: need a lat and a lon column (LAT,LON or lat,lon); header is {header}")
            rows = [(row[lat_i], row[lon_i]) for row in reader if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot read coordinates ({exc})") from exc
    try:
        values = np.array(rows, dtype=np.float64).reshape(-1, 2)
    except ValueError as exc:
        raise DatasetError(f"{path}: a lat/lon value is not a number ({exc})") from exc
    try:
        return validate_latlon(values[:, 0], values[:, 1], str(path))
    except CoordinateError as exc:
        raise DatasetError(str(exc)) from exc


def write_coordinates_csv(path: str | Path, lat: np.ndarray, lon: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["lat", "lon"])
        writer.writerows(zip(np.round(lat, 6), np.round(lon, 6)))


def synthetic_coordinates(n: int, clusters: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A SYNTHETIC photo distribution: `clusters` "cities" of heavy-tailed sizes with Gaussian spread.

    Not real data; used by the demo and tests when no real coordinates are given.
    """
    rng = np.random.default_rng(seed)
    centre_lat = np.degrees(np.arcsin(rng.uniform(-0.8, 0.95, clusters)))
    centre_lon = rng.uniform(-180, 180, clusters)
    weights = rng.pareto(1.2, clusters) + 0.05
    which = rng.choice(clusters, size=n, p=weights / weights.sum())
    spread_km = rng.choice([2.0, 20.0, 200.0], size=n, p=[0.5, 0.35, 0.15])
    xyz = latlon_to_xyz(centre_lat[which], centre_lon[which])
    xyz = xyz + rng.normal(size=(n, 3)) * (spread_km / 6371.0)[:, None]
    return xyz_to_latlon(xyz)
