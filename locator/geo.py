"""Geodesy on a spherical Earth (R = 6371 km). Coordinates are (lat, lon) in degrees, always in that order."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from locator.errors import DataError

EARTH_RADIUS_KM = 6371.0


class CoordinateError(DataError):
    """A latitude/longitude that is not finite or out of range."""


def valid_latlon(lat: ArrayLike, lon: ArrayLike) -> np.ndarray:
    """Which (lat, lon) pairs are degrees on the globe: finite, |lat| <= 90 and |lon| <= 180."""
    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    return np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90.0) & (np.abs(lon) <= 180.0)


def validate_latlon(lat: ArrayLike, lon: ArrayLike, source: str = "coordinates") -> tuple[np.ndarray, np.ndarray]:
    """Return (lat, lon) as float64 arrays, or raise CoordinateError naming `source` and the first bad entry."""
    lat_arr = np.asarray(lat, dtype=np.float64)
    lon_arr = np.asarray(lon, dtype=np.float64)
    if lat_arr.shape != lon_arr.shape:
        raise CoordinateError(f"{source}: lat has shape {lat_arr.shape} but lon has shape {lon_arr.shape}")
    bad = ~valid_latlon(lat_arr, lon_arr)
    if bad.any():
        first = np.flatnonzero(bad.ravel())[0]
        raise CoordinateError(
            f"{source}: {int(bad.sum())} invalid coordinate(s); first at index {first}: "
            f"lat={float(lat_arr.ravel()[first])!r}, lon={float(lon_arr.ravel()[first])!r} "
            "(need finite values with |lat| <= 90 and |lon| <= 180, in degrees)"
        )
    return lat_arr, lon_arr


def haversine_km(lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike) -> np.ndarray:
    """Great-circle distance in km between (lat1, lon1) and (lat2, lon2), broadcasting like numpy."""
    phi1, lam1, phi2, lam2 = (np.radians(np.asarray(a, dtype=np.float64)) for a in (lat1, lon1, lat2, lon2))
    h = np.sin((phi2 - phi1) / 2) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin((lam2 - lam1) / 2) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def latlon_to_xyz(lat: ArrayLike, lon: ArrayLike) -> np.ndarray:
    """Unit vectors of shape (..., 3) for (lat, lon) in degrees."""
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    lam = np.radians(np.asarray(lon, dtype=np.float64))
    cos_phi = np.cos(phi)
    return np.stack([cos_phi * np.cos(lam), cos_phi * np.sin(lam), np.sin(phi)], axis=-1)


def xyz_to_latlon(xyz: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon) in degrees of vectors of shape (..., 3); the vectors need not be unit length."""
    v = np.asarray(xyz, dtype=np.float64)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    lat = np.degrees(np.arctan2(z, np.hypot(x, y)))
    lon = np.degrees(np.arctan2(y, x))
    return lat, lon


def spherical_mean(lat: ArrayLike, lon: ArrayLike, weights: ArrayLike | None = None) -> tuple[float, float]:
    """Mean direction of points on the sphere: the (weighted) mean of their unit vectors, renormalised.

    Raises ValueError for no points, or when the points balance out (e.g. two antipodes) and no mean exists.
    """
    xyz = latlon_to_xyz(lat, lon).reshape(-1, 3)
    if len(xyz) == 0:
        raise ValueError("spherical_mean of no points")
    w = np.ones(len(xyz)) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    total = (xyz * w[:, None]).sum(axis=0)
    norm = np.sqrt((total * total).sum())  # as locator.candidates' cluster means, bit for bit
    if norm < 1e-12 * max(np.abs(w).sum(), 1e-300):
        raise ValueError("spherical_mean is undefined: the points balance out on the sphere")
    mean_lat, mean_lon = xyz_to_latlon(total / norm)
    return float(mean_lat), float(mean_lon)
