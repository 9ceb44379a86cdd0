"""Turning the K retrieved neighbours' coordinates into one location estimate (one registry).

- `dbscan` (the paper): DBSCAN with the haversine metric (eps 1 km, min_samples 1); the largest cluster wins, a tie
  goes to the cluster holding the most similar photo; the estimate is the spherical mean of that cluster.
- `average`: spherical mean of all K.
- `kde` (Vo et al.): Gaussian kernel density on geodesic distance over the K neighbours; the neighbour of highest
  density wins (ties: the more similar one). `bandwidth_km` sets the kernel width.
- `nn`: the most similar neighbour.

Inputs are arrays of the K neighbours' lat, lon (degrees) and similarity scores, most similar first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from locator.geo import haversine_km, spherical_mean
from locator.registry import Registry

AGGREGATIONS = Registry("aggregation")


@dataclass(frozen=True)
class Aggregate:
    """The estimate and which neighbours support it (`members`, a boolean mask over the K)."""

    lat: float
    lon: float
    members: np.ndarray

    @property
    def size(self) -> int:
        return int(self.members.sum())


_SQUARING_MAX = 128  # rows wider than this are clustered by scipy, one by one
_SQUARING_VALUES = 1 << 21  # reachability values squared at a time


def cluster_labels(lat: np.ndarray, lon: np.ndarray, eps_km: float = 1.0) -> np.ndarray:
    """DBSCAN labels 0..n_clusters-1 (haversine, `eps_km`, min_samples 1: every point belongs to a cluster)."""
    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    return cluster_rows(lat[None], lon[None], np.ones((1, len(lat)), bool), eps_km)[0]


def cluster_rows(lat: np.ndarray, lon: np.ndarray, valid: np.ndarray, eps_km: float = 1.0) -> np.ndarray:
    """`cluster_labels` of each row's valid points at once; -1 where a row is padded.

    With min_samples 1, DBSCAN's clusters are the connected components of the graph of points closer than eps,
    numbered in order of their first point: computed so directly (sklearn's DBSCAN costs ~1 ms a call in set-up
    alone, and tests compare against it). For the K of a query, the reachability matrices of all rows are squared
    together until none grows (0/1 sums, exact in float32): a few microseconds a row; wider rows go to scipy."""
    rows, width = lat.shape
    labels = np.full((rows, width), -1, np.int64)
    if width > _SQUARING_MAX:
        from scipy.sparse.csgraph import connected_components
        for j in np.flatnonzero(valid.any(axis=1)):
            keep = valid[j]
            a, b = lat[j][keep], lon[j][keep]
            near = haversine_km(a[:, None], b[:, None], a[None, :], b[None, :]) <= eps_km
            labels[j, keep] = connected_components(near, directed=False)[1]
        return labels
    step = max(1, _SQUARING_VALUES // max(width * width, 1))
    for lo in range(0, rows if width else 0, step):
        part = slice(lo, lo + step)
        labels[part] = _square_until_stable(lat[part], lon[part], valid[part], eps_km)
    return labels


def _square_until_stable(lat: np.ndarray, lon: np.ndarray, valid: np.ndarray, eps_km: float) -> np.ndarray:
    near = haversine_km(lat[:, :, None], lon[:, :, None], lat[:, None, :], lon[:, None, :]) <= eps_km
    reach = (near & valid[:, :, None] & valid[:, None, :]).astype(np.float32)
    while True:
        grown = (np.matmul(reach, reach) > 0).astype(np.float32)
        if np.array_equal(grown, reach):
            break
        reach = grown
    first = reach.argmax(axis=2)  # each point's component's first point
    roots = (first == np.arange(lat.shape[1])) & valid
    number = np.cumsum(roots, axis=1) - 1
    return np.where(valid, np.take_along_axis(number, first, axis=1), -1)


@AGGREGATIONS.register("dbscan")
def dbscan(lat: np.ndarray, lon: np.ndarray, scores: np.ndarray, eps_km: float = 1.0) -> Aggregate:
    labels = cluster_labels(lat, lon, eps_km)
    sizes = np.bincount(labels)
    tied = np.flatnonzero(sizes == sizes.max())
    in_tied = np.isin(labels, tied)
    winner = labels[np.flatnonzero(in_tied)[np.argmax(scores[in_tied])]]
    members = labels == winner
    return Aggregate(*spherical_mean(lat[members], lon[members]), members)


@AGGREGATIONS.register("average")
def average(lat: np.ndarray, lon: np.ndarray, scores: np.ndarray) -> Aggregate:
    members = np.ones(len(lat), dtype=bool)
    return Aggregate(*spherical_mean(lat, lon), members)


@AGGREGATIONS.register("kde")
def kde(lat: np.ndarray, lon: np.ndarray, scores: np.ndarray, bandwidth_km: float = 25.0) -> Aggregate:
    distances = haversine_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    density = np.exp(-0.5 * (distances / bandwidth_km) ** 2).sum(axis=1)
    best = np.flatnonzero(np.isclose(density, density.max(), rtol=1e-12, atol=0))
    winner = best[np.argmax(scores[best])]
    return Aggregate(float(lat[winner]), float(lon[winner]), distances[winner] <= bandwidth_km)


@AGGREGATIONS.register("nn")
def nearest(lat: np.ndarray, lon: np.ndarray, scores: np.ndarray) -> Aggregate:
    winner = int(np.argmax(scores))
    members = np.zeros(len(lat), dtype=bool)
    members[winner] = True
    return Aggregate(float(lat[winner]), float(lon[winner]), members)


def aggregate(name: str, lat: np.ndarray, lon: np.ndarray, scores: np.ndarray, **params: float) -> Aggregate:
    """Estimate from K ≥ 1 neighbours with aggregation `name`."""
    function = AGGREGATIONS.get(name)
    lat, lon, scores = (np.asarray(a, dtype=np.float64) for a in (lat, lon, scores))
    if len(lat) == 0:
        raise ValueError("aggregation needs at least one neighbour")
    return function(lat, lon, scores, **params)
