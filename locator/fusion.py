"""Fusing classification and retrieval (beyond the paper): candidates from both, scored from their evidence.

For one photo, the neighbours found within the classifier's best cell, within its `cells` most probable cells
and in the whole collection are pooled (each reference once) and clustered with DBSCAN (1 km), as SwC clusters
its neighbours. Every cluster is a candidate location; when the search within the best cell found nothing, so is
the classifier's own estimate (its best cell's centre, or the MvMF mean), as in SwC's fallback. Each candidate is
described by its evidence (`FEATURES`): how many neighbours support it and how similar they are, how much of the
classifier's probability lies near it, how much of the pooled neighbours' similarity lies near it.

A `FusionModel`, fitted by `geoloc-train fusion` on training photos held out by owner (never on an evaluation
set), holds two models per distance threshold t:

- a logistic scorer, P(error < t km | evidence), comparable across photos;
- a ranker (a conditional logit), P(this candidate is the one within t km | the photo's candidates), fitted on the
  differences between candidates of the same photo only, so that what all of a photo's candidates share (say, a
  place the classifier never saw, where cell probabilities mean little) cannot bias the choice between them.

The choice goes from coarse to fine: the region is that of the candidate with the highest expected number of
thresholds met, Σ_t P(error < t); then, for each threshold T from `refine_km` down, among the candidates within T
km of the current choice, the one with the highest Σ of the rankers' shares over the thresholds t below T wins
(each scale's evidence decides the place at that scale: P(error < 200 km) cannot tell apart two places 150 km
apart, P(error < 25 km) can). Its `confidence` is the scorer's P(error < 25 km), recalibrated on out-of-fold
choices (isotonic), and its `radius_km` a median error predicted by a linear quantile regression. Everything is
stored as JSON arrays and evaluated with numpy: no pickles.

One rule comes first: a reference at least `duplicate_sim` (0.99) similar to the photo is taken to be the same
photo, and the candidate holding the most similar one is chosen. The held-out photos the model is fitted on are
never in the collection, so it has not learnt what a copy looks like: located as itself, a stored im2gps2k photo
came back within 1 km of its place 61 % of the time without the rule, 99.7 % with it. Re-encoded or cropped copies
fall below 0.99 (medians 0.84-0.95: benchmarks/results/self_lookup.md) and are left to the model; no held-out
photo came within 0.95 of a reference.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from locator.aggregation import cluster_labels
from locator.cells import Partition
from locator.geo import EARTH_RADIUS_KM, group_means, haversine_km, latlon_to_xyz

THRESHOLDS_KM = (1.0, 25.0, 200.0, 750.0, 2500.0)
CONFIDENCE_KM = 25.0
MASS_RADII_KM = (25.0, 200.0, 750.0, 2500.0)
_MASS_CHUNK = 16_384  # cosines computed at a time, by _mass_within
BASELINES = ("swc", "retrieval", "classifier")
FEATURES = ("log_size", "max_sim", "mean_sim", "sim_gap", "in_top_cell", "log_cell_p", "outside_cells",
            *(f"cell_mass_{r:g}km" for r in MASS_RADII_KM), *(f"neighbour_share_{r:g}km" for r in MASS_RADII_KM),
            *(f"log_km_to_{name}" for name in BASELINES), "is_cell_centre", "top_cell_p", "pool_max_sim")
_MIN_P = 1e-6
FORMAT = 3
DUPLICATE_SIM = 0.99


@dataclass(frozen=True)
class Pool:
    """The distinct neighbours of one photo from every search, most similar first."""

    ids: np.ndarray
    scores: np.ndarray
    lat: np.ndarray
    lon: np.ndarray

    @classmethod
    def merge(cls, *rows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> Pool:
        """Pool (ids, scores, lat, lon) rows; ids < 0 are padding, a repeated id keeps its best score."""
        ids, scores, lat, lon = (np.concatenate([np.asarray(r[i]) for r in rows]) for i in range(4))
        valid = ids >= 0
        ids, scores = ids[valid], scores[valid].astype(float)
        lat, lon = lat[valid].astype(float), lon[valid].astype(float)
        order = np.lexsort((ids, -scores))
        _, first = np.unique(ids[order], return_index=True)
        keep = order[np.sort(first)]
        keep = keep[np.argsort(-scores[keep], kind="stable")]
        return cls(ids[keep], scores[keep], lat[keep], lon[keep])

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Candidates:
    """Candidate locations: one per cluster of the pool, then maybe the classifier's estimate (`members` empty)."""

    lat: np.ndarray
    lon: np.ndarray
    members: list[np.ndarray]  # indices into the pool

    def __len__(self) -> int:
        return len(self.lat)

    @property
    def is_centre(self) -> np.ndarray:
        return np.array([len(m) == 0 for m in self.members])


Row = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # one photo's ids, scores, lat, lon


def paper_estimate(row: Row, fallback: tuple[float, float], eps_km: float = 1.0) -> tuple[float, float]:
    """The paper's estimate from one search's neighbours: the mean of the largest DBSCAN cluster (`fallback`
    when the search found nothing)."""
    from locator.aggregation import aggregate
    valid = np.asarray(row[0]) >= 0
    if not valid.any():
        return fallback
    result = aggregate("dbscan", np.asarray(row[2])[valid], np.asarray(row[3])[valid], np.asarray(row[1])[valid],
                       eps_km=eps_km)
    return result.lat, result.lon


def baselines(within_best_cell: Row, global_row: Row, centre: tuple[float, float],
              eps_km: float = 1.0) -> np.ndarray:
    """(3, 2) lat, lon of the SwC, retrieval and classifier estimates (in BASELINES order)."""
    return np.array([paper_estimate(within_best_cell, centre, eps_km), paper_estimate(global_row, centre, eps_km),
                     centre], dtype=float)


def make_candidates(pool: Pool, centre_lat: float, centre_lon: float, eps_km: float = 1.0,
                    with_centre: bool = True) -> Candidates:
    """The pool's DBSCAN clusters, then (if `with_centre`, or when the pool is empty) the classifier's estimate."""
    lats, lons, members = np.zeros(0), np.zeros(0), []
    if len(pool):
        labels = cluster_labels(pool.lat, pool.lon, eps_km)
        lats, lons = group_means(pool.lat, pool.lon, labels)
        members = np.split(np.argsort(labels, kind="stable"), np.cumsum(np.bincount(labels))[:-1])
    if with_centre or not members:
        lats, lons = np.append(lats, float(centre_lat)), np.append(lons, float(centre_lon))
        members.append(np.zeros(0, dtype=np.int64))
    return Candidates(lats, lons, members)


def found(row: Row) -> bool:
    return bool((np.asarray(row[0]) >= 0).any())


def _cosine_chunks(a_xyz: np.ndarray, b_xyz: np.ndarray) -> Iterator[np.ndarray]:
    """The rows of the (a, b) dot products, in chunks of about 16 K values. Summed element by element rather than
    by BLAS, whose rounding depends on the chunk's shape and on its thread count: the same photo gets the same
    features in any batch, on any machine."""
    rows = max(1, _MASS_CHUNK // max(len(b_xyz), 1))
    x, y, z = np.ascontiguousarray(np.asarray(b_xyz, dtype=float).T)
    for lo in range(0, len(a_xyz), rows):
        a = a_xyz[lo:lo + rows]
        yield a[:, 0, None] * x + a[:, 1, None] * y + a[:, 2, None] * z


def _mass_within(a_xyz: np.ndarray, b_xyz: np.ndarray, weights: np.ndarray) -> list[np.ndarray]:
    """For each of MASS_RADII_KM, the sum of the `weights` of the points b within that great-circle distance of
    each point a. In chunks: with MP16's 12,893 fine cells, the (a, b) matrices of 30 candidates took megabytes
    each, and allocating them cost more than the arithmetic."""
    limits = [math.cos(r / EARTH_RADIUS_KM) for r in MASS_RADII_KM]
    sums: list[list[np.ndarray]] = [[] for _ in limits]
    for cosines in _cosine_chunks(a_xyz, b_xyz):
        for k, limit in enumerate(limits):
            sums[k].append(((cosines > limit) * weights[None, :]).sum(axis=1))
    return [np.concatenate(parts) if parts else np.zeros(0, np.result_type(weights, bool)) for parts in sums]


def candidate_features(candidates: Candidates, pool: Pool, probabilities: np.ndarray, fine: Partition,
                       estimates: np.ndarray, centres_xyz: np.ndarray | None = None,
                       cells: np.ndarray | None = None) -> np.ndarray:
    """(candidates, len(FEATURES)) evidence matrix for one photo (`probabilities` over the fine cells,
    `estimates` from `baselines`; `cells`, the candidates' fine cells, when a batch looked them up at once)."""
    n = len(candidates)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    centres_xyz = latlon_to_xyz(fine.lat, fine.lon) if centres_xyz is None else centres_xyz
    top = int(np.argmax(probabilities))
    cells = fine.lookup(candidates.lat, candidates.lon) if cells is None else cells
    # A candidate outside every cell counts as the least probable cell, flagged by `outside_cells`: a sentinel far
    # below the real values would let the linear scorers extrapolate (format 1 scored such candidates highly).
    cell_p = np.where(cells >= 0, probabilities[np.clip(cells, 0, None)], probabilities.min())
    pool_max = float(pool.scores.max()) if len(pool) else 0.0
    size = np.array([len(m) for m in candidates.members], dtype=float)
    max_sim, mean_sim = _member_similarity(candidates, pool.scores)
    xyz = latlon_to_xyz(candidates.lat, candidates.lon)
    mass = _mass_within(xyz, centres_xyz, probabilities)
    weights = np.clip(pool.scores, 0.0, None)
    if len(pool) and weights.sum() > 0:
        share = [m / weights.sum() for m in _mass_within(xyz, latlon_to_xyz(pool.lat, pool.lon), weights)]
    else:
        share = [np.zeros(n) for _ in MASS_RADII_KM]
    to_baselines = [np.log1p(haversine_km(candidates.lat, candidates.lon, b_lat, b_lon)) for b_lat, b_lon in estimates]
    columns = [np.log1p(size), max_sim, mean_sim, max_sim - pool_max, (cells == top).astype(float),
               np.log(np.maximum(cell_p, _MIN_P)), (cells < 0).astype(float), *mass, *share, *to_baselines,
               candidates.is_centre.astype(float), np.full(n, probabilities[top]), np.full(n, pool_max)]
    return np.stack(columns, axis=1)


def _member_similarity(candidates: Candidates, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each candidate's best and mean neighbour similarity (0 for the classifier's estimate, which has none)."""
    sizes = np.array([len(m) for m in candidates.members])
    best, mean = np.zeros(len(candidates)), np.zeros(len(candidates))
    held = sizes > 0
    if held.any():
        values = scores[np.concatenate(candidates.members)]
        starts = (np.cumsum(sizes) - sizes)[held]
        best[held] = np.maximum.reduceat(values, starts)
        # ndarray.mean sums pairwise from 8 values on; a sequential reduceat would differ in the last bit
        mean[held] = [values[a:a + n].mean() for a, n in zip(starts, sizes[held])]
    return best, mean


@dataclass(frozen=True)
class Logistic:
    """P(y = 1 | x) = σ(((x - mean) / scale) · coef + intercept)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = ((np.asarray(x, float) - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


@dataclass(frozen=True)
class Ranker:
    """Shares of one photo's candidates: softmax over its rows of ((x - mean) / scale) · coef."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = ((np.asarray(x, float) - self.mean) / self.scale) @ self.coef
        e = np.exp(z - z.max())
        return e / e.sum()


@dataclass(frozen=True)
class Monotone:
    """A non-decreasing piecewise-linear map (an isotonic regression's breakpoints), clipped at both ends."""

    x: np.ndarray
    y: np.ndarray

    def __call__(self, value: np.ndarray | float) -> np.ndarray:
        return np.interp(value, self.x, self.y)


@dataclass(frozen=True)
class LinearQuantile:
    """A linear model of a quantile of log(1 + error km), on standardised features."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, float) - self.mean) / self.scale) @ self.coef + self.intercept


@dataclass(frozen=True)
class Choice:
    index: int
    probabilities: dict[float, float]  # raw P(error < t km) of the chosen candidate
    confidence: float
    radius_km: float
    duplicate: bool = False  # chosen because it holds the same photo (see the module)


@dataclass(frozen=True)
class FusionModel:
    k: int
    cells: int
    eps_km: float
    refine_km: float
    scorers: dict[float, Logistic]
    rankers: dict[float, Ranker]
    confidence: Monotone
    radius: LinearQuantile
    info: dict[str, Any] = field(default_factory=dict)
    duplicate_sim: float = DUPLICATE_SIM

    def choose(self, features: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> Choice:
        """The chosen candidate (the same photo's, else two stages: see the module), its confidence and radius."""
        probabilities = {t: scorer(features) for t, scorer in self.scorers.items()}
        best, duplicate = choose_index(features, lat, lon, probabilities, self.rankers, self.refine_km,
                                       self.duplicate_sim)
        raw = {t: float(p[best]) for t, p in probabilities.items()}
        confidence = float(np.clip(self.confidence(raw[CONFIDENCE_KM]), 0.0, 1.0))
        radius = float(np.expm1(max(float(self.radius(radius_inputs(features[best:best + 1], confidence))[0]), 0.0)))
        return Choice(best, raw, confidence, max(radius, 0.1), duplicate)

    def to_json(self) -> dict:
        def arrays(obj: Any) -> dict:
            return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(obj).items()}
        return {"format": FORMAT, "features": list(FEATURES), "k": self.k, "cells": self.cells, "eps_km": self.eps_km,
                "refine_km": self.refine_km, "duplicate_sim": self.duplicate_sim,
                "scorers": [{"threshold_km": t, **arrays(s)} for t, s in self.scorers.items()],
                "rankers": [{"threshold_km": t, **arrays(r)} for t, r in self.rankers.items()],
                "confidence": arrays(self.confidence), "radius": arrays(self.radius), "info": self.info}

    @classmethod
    def from_json(cls, data: dict) -> FusionModel:
        if data.get("format") != FORMAT or data.get("features") != list(FEATURES):
            raise ValueError("fusion model of another format or feature set")

        def build(kind: type, entry: dict) -> Any:
            return kind(**{k: (np.asarray(v, float) if isinstance(v, list) else v) for k, v in entry.items()})
        def per_threshold(kind: type, entries: list[dict]) -> dict:
            return {float(e["threshold_km"]): build(kind, {k: v for k, v in e.items() if k != "threshold_km"})
                    for e in entries}
        return cls(int(data["k"]), int(data["cells"]), float(data["eps_km"]), float(data["refine_km"]),
                   per_threshold(Logistic, data["scorers"]), per_threshold(Ranker, data["rankers"]),
                   build(Monotone, data["confidence"]), build(LinearQuantile, data["radius"]), data.get("info", {}),
                   float(data.get("duplicate_sim", DUPLICATE_SIM)))

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, sort_keys=True)


def choose_index(features: np.ndarray, lat: np.ndarray, lon: np.ndarray, probabilities: dict[float, np.ndarray],
                 rankers: dict[float, Ranker], refine_km: float, duplicate_sim: float) -> tuple[int, bool]:
    """The chosen candidate, and whether it holds the same photo: the candidate holding the most similar reference
    when one is at least `duplicate_sim` similar, else `select` by the scorers' `probabilities` and the rankers'
    shares."""
    similarity = features[:, FEATURES.index("max_sim")]
    if (similarity >= duplicate_sim).any():
        return int(np.argmax(similarity)), True
    return select(probabilities, lat, lon, refine_km, {t: ranker(features) for t, ranker in rankers.items()}), False


def select(probabilities: dict[float, np.ndarray], lat: np.ndarray, lon: np.ndarray, refine_km: float,
           shares: dict[float, np.ndarray] | None = None) -> int:
    """Index of the chosen candidate, coarse to fine: the best region by Σ_t P_t; then, for each threshold T from
    `refine_km` down, the best place within T km of the current choice by the Σ of the `shares` (default: P_t) of
    the thresholds t below T."""
    shares = shares or probabilities
    chosen = int(np.argmax(np.sum(list(probabilities.values()), axis=0)))
    for scale in sorted((t for t in probabilities if t <= refine_km), reverse=True):
        finer = [p for t, p in shares.items() if t < scale]
        if not finer:
            break
        near = haversine_km(lat[chosen], lon[chosen], lat, lon) < scale
        chosen = int(np.argmax(np.where(near, np.sum(finer, axis=0), -np.inf)))
    return chosen


def radius_inputs(features: np.ndarray, confidence: np.ndarray | float) -> np.ndarray:
    """What the radius model sees: the chosen candidate's evidence and its calibrated confidence (as a logit)."""
    c = np.clip(np.broadcast_to(np.asarray(confidence, float), (len(features),)), 1e-4, 1 - 1e-4)
    return np.column_stack([features, np.log(c / (1 - c))])
