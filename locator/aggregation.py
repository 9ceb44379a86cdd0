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


def cluster_labels(lat: np.ndarray, lon: np.ndarray, eps_km: float = 1.0) -> np.ndarray:
    """DBSCAN labels 0..n_clusters-1 (haversine, `eps_km`, min_samples 1: every point belongs to a cluster).

    With min_samples 1, DBSCAN's clusters are the connected components of the graph of points closer than eps,
    numbered in order of their first point: computed so directly (sklearn's DBSCAN costs ~1 ms a call in set-up
    alone, and tests compare against it). For the K of a query, squaring the reachability matrix until it stops
    growing takes a few microseconds; larger sets go to scipy."""
    near = haversine_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :]) <= eps_km
    if len(lat) > 128:
        from scipy.sparse.csgraph import connected_components
        return connected_components(near, directed=False)[1]
    reach = near.astype(np.float32)
    while True:
        grown = (reach @ reach > 0).astype(np.float32)
        if np.array_equal(grown, reach):
            break
        reach = grown
    first_member = reach.argmax(axis=1)
    return np.unique(first_member, return_inverse=True)[1].reshape(-1)


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
