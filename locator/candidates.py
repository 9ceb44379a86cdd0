"""The fused method's candidate locations and their evidence, for a whole batch of photos at once (beyond the paper).

For each photo, the neighbours found within the classifier's best cell, within its `cells` most probable cells
and in the whole collection are pooled (each reference once, most similar first) and clustered with DBSCAN (1 km,
min_samples 1), as SwC clusters its neighbours. Every cluster is a candidate location; when the search within the
best cell found nothing, so is the classifier's own estimate (its best cell's centre, or the MvMF mean), as in
SwC's fallback. Each candidate is described by its evidence (`FEATURES`): how many neighbours support it and how
similar they are, how much of the classifier's probability lies near it, how much of the pooled neighbours'
similarity lies near it, and how far it lies from the paper's estimates (`BASELINES`).

Arrays are padded to widths that K alone fixes (a pool holds at most 3K references, a photo has at most 3K + 1
candidates), never the batch: every sum runs over the same values in the same order whichever photos share the
batch, so a photo gets the same evidence, bit for bit, alone or batched with any others (the service batches
concurrent requests). Computed photo by photo, the same work took 3-4 ms a photo on a 2-core CPU, mostly in numpy's
overhead per call; for a batch of 64, 1.2-1.6 ms with the store's queries.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
import numpy as np

from locator.aggregation import cluster_rows
from locator.cells import Partition
from locator.geo import EARTH_RADIUS_KM, haversine_km, latlon_to_xyz, xyz_to_latlon
from locator.store import Hits

MASS_RADII_KM = (25.0, 200.0, 750.0, 2500.0)
BASELINES = ("swc", "retrieval", "classifier")
FEATURES = ("log_size", "max_sim", "mean_sim", "sim_gap", "in_top_cell", "log_cell_p", "outside_cells",
            *(f"cell_mass_{r:g}km" for r in MASS_RADII_KM), *(f"neighbour_share_{r:g}km" for r in MASS_RADII_KM),
            *(f"log_km_to_{name}" for name in BASELINES), "is_cell_centre", "top_cell_p", "pool_max_sim")
_MIN_P = 1e-6
_MASS_CHUNK = 16_384  # cosines computed at a time, by _mass_within
_PAIRS_CHUNK = 1 << 21  # photos are processed in groups of at most this many (candidate, reference) pairs


@dataclass(frozen=True)
class Pools:
    """Per photo, its distinct neighbours from every search, most similar first (each reference once, with its
    best score); (photos, width) arrays padded with id -1 and zeros."""

    ids: np.ndarray
    scores: np.ndarray
    lat: np.ndarray
    lon: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        return self.ids >= 0

    @classmethod
    def merge(cls, searches: Sequence[Hits]) -> Pools:
        width = sum(s.ids.shape[1] for s in searches)
        rows = len(searches[0].ids)
        ids = np.full((rows, width), -1, np.int64)
        scores, lat, lon = (np.zeros((rows, width)) for _ in range(3))
        for j in range(rows):
            merged = merge_row(*((s.ids[j], s.scores[j], s.lat[j], s.lon[j]) for s in searches))
            n = len(merged[0])
            ids[j, :n], scores[j, :n], lat[j, :n], lon[j, :n] = merged
        return cls(ids, scores, lat, lon)

    def row(self, j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Photo j's ids, scores, lat, lon, unpadded."""
        n = int(self.valid[j].sum())
        return self.ids[j, :n], self.scores[j, :n], self.lat[j, :n], self.lon[j, :n]


def merge_row(*rows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, ...]:
    """One photo's pool from (ids, scores, lat, lon) rows: ids < 0 are padding, a repeated id keeps its best score;
    ordered by score, then id."""
    ids, scores, lat, lon = (np.concatenate([np.asarray(r[i]) for r in rows]) for i in range(4))
    valid = ids >= 0
    ids, scores = ids[valid], scores[valid].astype(float)
    lat, lon = lat[valid].astype(float), lon[valid].astype(float)
    order = np.lexsort((ids, -scores))
    _, first = np.unique(ids[order], return_index=True)
    keep = order[np.sort(first)]
    return ids[keep], scores[keep], lat[keep], lon[keep]


@dataclass(frozen=True)
class Clusters:
    """Each row's DBSCAN clusters: every point's label (-1 where padded), and per label its spherical mean and size
    ((rows, width) arrays; nan and 0 where a label is unused)."""

    labels: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    size: np.ndarray

    def rows(self, part: slice) -> Clusters:
        return Clusters(self.labels[part], self.lat[part], self.lon[part], self.size[part])


def clusters_of(lat: np.ndarray, lon: np.ndarray, valid: np.ndarray, eps_km: float, width: int) -> Clusters:
    """The clusters of each row's valid points, with `width` labels per row. Unit vectors are summed in index
    order, as `spherical_mean` sums them, so each mean is that function's, bit for bit."""
    labels = cluster_rows(lat, lon, valid, eps_km)
    held = labels >= 0
    slot = (np.arange(len(labels))[:, None] * width + labels)[held]
    totals = np.zeros((len(labels) * width, 3))
    np.add.at(totals, slot, latlon_to_xyz(lat[held], lon[held]))
    norms = np.sqrt((totals * totals).sum(axis=1))[:, None]
    with np.errstate(invalid="ignore"):
        mean_lat, mean_lon = xyz_to_latlon(totals / norms)
    size = np.bincount(slot, minlength=len(totals))
    return Clusters(labels, mean_lat.reshape(-1, width), mean_lon.reshape(-1, width), size.reshape(-1, width))


@dataclass(frozen=True)
class Candidates:
    """Per photo, one candidate per cluster of its pool (in order of their first reference), then maybe the
    classifier's estimate; (photos, width) arrays, `valid` marking the candidates. `labels` gives each pool entry's
    candidate (-1 for padding)."""

    lat: np.ndarray
    lon: np.ndarray
    size: np.ndarray  # references supporting each candidate: 0 for the classifier's estimate
    valid: np.ndarray
    labels: np.ndarray

    @property
    def is_centre(self) -> np.ndarray:
        return self.valid & (self.size == 0)

    def members(self, j: int, c: int) -> np.ndarray:
        """Pool indices of photo j's candidate c, in pool order."""
        return np.flatnonzero(self.labels[j] == c)


def make_candidates(pools: Pools, centre_lat: np.ndarray, centre_lon: np.ndarray, eps_km: float = 1.0,
                    with_centre: np.ndarray | bool = True, found: Clusters | None = None) -> Candidates:
    """Each pool's DBSCAN clusters (`found`, when already computed), then the classifier's estimate where
    `with_centre` (or where a pool is empty)."""
    rows, width = len(pools.ids), pools.ids.shape[1] + 1
    found = found or clusters_of(pools.lat, pools.lon, pools.valid, eps_km, width)
    labels, lat, lon, size = found.labels, found.lat.copy(), found.lon.copy(), found.size
    clusters = labels.max(axis=1, initial=-1) + 1
    valid = np.arange(width)[None, :] < clusters[:, None]
    centred = np.flatnonzero(np.broadcast_to(with_centre, (rows,)) | (clusters == 0))
    at = clusters[centred]
    lat[centred, at] = np.asarray(centre_lat, float)[centred]
    lon[centred, at] = np.asarray(centre_lon, float)[centred]
    valid[centred, at] = True
    return Candidates(np.where(valid, lat, 0.0), np.where(valid, lon, 0.0), size, valid, labels)


def paper_estimates(neighbours: Hits, fallback_lat: np.ndarray, fallback_lon: np.ndarray,
                    eps_km: float = 1.0, found: Clusters | None = None) -> np.ndarray:
    """(photos, 2) lat, lon of the paper's estimate from one search's neighbours: the spherical mean of the largest
    DBSCAN cluster, a tie going to the cluster holding the most similar neighbour (`locator.aggregation.dbscan`);
    the fallback where the search found nothing. `found`: the neighbours' clusters, when already computed."""
    valid = neighbours.ids >= 0
    found = found or clusters_of(*_places(neighbours), valid, eps_km, valid.shape[1])
    labels, mean_lat, mean_lon, size = found.labels[:, :valid.shape[1]], found.lat, found.lon, found.size
    tied = size == size.max(axis=1, keepdims=True)
    in_tied = valid & np.take_along_axis(tied, np.clip(labels, 0, None), axis=1)
    best = np.argmax(np.where(in_tied, np.asarray(neighbours.scores, float), -np.inf), axis=1)
    winner = labels[np.arange(len(labels)), best]
    searched = valid.any(axis=1)
    pick = np.clip(winner, 0, None)[:, None]
    out_lat = np.where(searched, np.take_along_axis(mean_lat, pick, axis=1)[:, 0], fallback_lat)
    out_lon = np.where(searched, np.take_along_axis(mean_lon, pick, axis=1)[:, 0], fallback_lon)
    return np.stack([out_lat, out_lon], axis=1)


def _places(neighbours: Hits) -> tuple[np.ndarray, np.ndarray]:
    valid = neighbours.ids >= 0
    return tuple(np.where(valid, np.asarray(a, float), 0.0) for a in (neighbours.lat, neighbours.lon))


def baselines(within_best_cell: Hits, everywhere: Hits, centre_lat: np.ndarray, centre_lon: np.ndarray,
              eps_km: float = 1.0, found: tuple[Clusters, Clusters] | None = None) -> np.ndarray:
    """(photos, 3, 2) lat, lon of the SwC, retrieval and classifier estimates (in BASELINES order)."""
    centre = np.stack([np.asarray(centre_lat, float), np.asarray(centre_lon, float)], axis=1)
    found = found or (None, None)
    return np.stack([paper_estimates(within_best_cell, centre[:, 0], centre[:, 1], eps_km, found[0]),
                     paper_estimates(everywhere, centre[:, 0], centre[:, 1], eps_km, found[1]), centre], axis=1)


def _cosine_chunks(a_xyz: np.ndarray, b_xyz: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
    """Row slices of a and their (rows, b) dot products, in chunks of about 16 K values. Summed element by element
    rather than by BLAS, whose rounding depends on the chunk's shape and on its thread count: the same photo gets
    the same features in any batch, on any machine."""
    rows = max(1, _MASS_CHUNK // max(len(b_xyz), 1))
    x, y, z = np.ascontiguousarray(np.asarray(b_xyz, dtype=float).T)
    for lo in range(0, len(a_xyz), rows):
        a = a_xyz[lo:lo + rows]
        yield slice(lo, lo + len(a)), a[:, 0, None] * x + a[:, 1, None] * y + a[:, 2, None] * z


def _mass_within(a_xyz: np.ndarray, b_xyz: np.ndarray, weights: np.ndarray, rows: np.ndarray) -> list[np.ndarray]:
    """For each of MASS_RADII_KM, the sum of the weights of the points b within that great-circle distance of each
    point a, point a taking `weights[rows[a]]`. In chunks: with MP16's 12,893 fine cells, the (a, b) matrices of a
    batch's candidates would take gigabytes."""
    limits = [math.cos(r / EARTH_RADIUS_KM) for r in MASS_RADII_KM]
    sums = [np.zeros(len(a_xyz)) for _ in limits]
    for part, cosines in _cosine_chunks(a_xyz, b_xyz):
        w = weights[rows[part]]
        for total, limit in zip(sums, limits):
            total[part] = ((cosines > limit) * w).sum(axis=1)
    return sums


def _member_similarity(candidates: Candidates, pools: Pools) -> tuple[np.ndarray, np.ndarray]:
    """(photos, width) best and mean neighbour similarity of each candidate (0 for the classifier's estimate)."""
    rows, width = candidates.lat.shape
    held = candidates.labels >= 0
    slot = (np.arange(rows)[:, None] * width + candidates.labels)[held]
    best, total = np.full(rows * width, -np.inf), np.zeros(rows * width)
    np.maximum.at(best, slot, pools.scores[held])
    np.add.at(total, slot, pools.scores[held])
    size = candidates.size.reshape(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(size > 0, total / size, 0.0)
    return np.where(size > 0, best, 0.0).reshape(rows, width), mean.reshape(rows, width)


def _neighbour_share(xyz: np.ndarray, photo: np.ndarray, pools: Pools) -> list[np.ndarray]:
    """For each of MASS_RADII_KM, the share of its photo's pooled similarity (scores clipped at 0) that lies within
    that distance of each candidate; summed over the pool's whole padded width, so that no batch changes it."""
    weights = np.where(pools.valid, np.clip(pools.scores, 0.0, None), 0.0)
    total = weights.sum(axis=1)
    pool_xyz = latlon_to_xyz(pools.lat, pools.lon)
    cosines = sum(xyz[:, k, None] * pool_xyz[:, :, k][photo] for k in range(3))  # gathered a component at a time
    w, norm = weights[photo], total[photo]
    shares = []
    for r in MASS_RADII_KM:
        near = ((cosines > math.cos(r / EARTH_RADIUS_KM)) * w).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            shares.append(np.where(norm > 0, near / norm, 0.0))
    return shares


def candidate_features(candidates: Candidates, pools: Pools, probabilities: np.ndarray, fine: Partition,
                       estimates: np.ndarray) -> np.ndarray:
    """(photos, width, len(FEATURES)) evidence of each candidate (zeros where padded), from `probabilities` over the
    fine cells (photos, cells) and the `baselines` estimates."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    photo, slot = np.nonzero(candidates.valid)
    lat, lon = candidates.lat[photo, slot], candidates.lon[photo, slot]
    top = np.argmax(probabilities, axis=1)[photo]
    cells = fine.lookup(lat, lon)
    # A candidate outside every cell counts as the least probable cell, flagged by `outside_cells`: a sentinel far
    # below the real values would let the linear scorers extrapolate (format 1 scored such candidates highly).
    cell_p = np.where(cells >= 0, probabilities[photo, np.clip(cells, 0, None)], probabilities.min(axis=1)[photo])
    pool_max = np.where(pools.valid, pools.scores, -np.inf).max(axis=1, initial=-np.inf)
    pool_max = np.where(np.isfinite(pool_max), pool_max, 0.0)[photo]
    max_sim, mean_sim = (a[photo, slot] for a in _member_similarity(candidates, pools))
    xyz = latlon_to_xyz(lat, lon)
    mass = _mass_within(xyz, fine.centres_xyz, probabilities, photo)
    share = _neighbour_share(xyz, photo, pools)
    to_baselines = [np.log1p(haversine_km(lat, lon, estimates[photo, b, 0], estimates[photo, b, 1]))
                    for b in range(len(BASELINES))]
    columns = [np.log1p(candidates.size[photo, slot].astype(float)), max_sim, mean_sim, max_sim - pool_max,
               (cells == top).astype(float), np.log(np.maximum(cell_p, _MIN_P)), (cells < 0).astype(float), *mass,
               *share, *to_baselines, candidates.is_centre[photo, slot].astype(float),
               probabilities[photo, top], pool_max]
    out = np.zeros((*candidates.valid.shape, len(FEATURES)))
    out[photo, slot] = np.stack(columns, axis=1)
    return out


@dataclass(frozen=True)
class Evidence:
    """A batch's pools, candidates, the candidates' evidence and the paper's estimates (photos, 3, 2)."""

    pools: Pools
    candidates: Candidates
    features: np.ndarray
    estimates: np.ndarray


def gather_evidence(within_best_cell: Hits, within_cells: Hits, everywhere: Hits,
                    centre_lat: np.ndarray, centre_lon: np.ndarray, probabilities: np.ndarray, fine: Partition,
                    eps_km: float = 1.0) -> Evidence:
    """Everything the fusion model needs about a batch, from its three searches and the classifier's estimates
    (`centre_lat`, `centre_lon`) and cell `probabilities`; photos in groups that bound the memory taken."""
    searches = (within_best_cell, within_cells, everywhere)
    width = sum(s.ids.shape[1] for s in searches)
    step = max(1, _PAIRS_CHUNK // (width * (width + 1)))
    parts = []
    for lo in range(0, max(len(centre_lat), 1), step):  # no photo: one empty part, of the right widths
        part = slice(lo, lo + step)
        searched = [Hits(*(np.asarray(a)[part] for a in (s.ids, s.scores, s.lat, s.lon))) for s in searches]
        pools = Pools.merge(searched)
        found = _clusters_together(pools, searched[0], searched[2], eps_km=eps_km)
        candidates = make_candidates(pools, centre_lat[part], centre_lon[part], eps_km,
                                     ~(searched[0].ids >= 0).any(axis=1), found[0])
        estimates = baselines(searched[0], searched[2], centre_lat[part], centre_lon[part], eps_km, found[1:])
        features = candidate_features(candidates, pools, probabilities[part], fine, estimates)
        parts.append(Evidence(pools, candidates, features, estimates))
    return parts[0] if len(parts) == 1 else _concatenate(parts)


def _clusters_together(pools: Pools, *searches: Hits, eps_km: float = 1.0) -> list[Clusters]:
    """The clusters of the pools and of each search, computed in one go (a photo's rows are independent: padding
    them to the pools' width changes no label, mean or size)."""
    width = pools.ids.shape[1]
    lat, lon, valid = [pools.lat], [pools.lon], [pools.valid]
    for s in searches:
        pad = ((0, 0), (0, width - s.ids.shape[1]))
        s_lat, s_lon = _places(s)
        lat.append(np.pad(s_lat, pad))
        lon.append(np.pad(s_lon, pad))
        valid.append(np.pad(s.ids >= 0, pad))
    together = clusters_of(np.concatenate(lat), np.concatenate(lon), np.concatenate(valid), eps_km, width + 1)
    rows = len(pools.ids)
    return [together.rows(slice(i * rows, (i + 1) * rows)) for i in range(1 + len(searches))]


def _concatenate(parts: list[Evidence]) -> Evidence:
    def join(get) -> np.ndarray:
        return np.concatenate([get(p) for p in parts])
    pools = Pools(*(join(lambda p, n=n: getattr(p.pools, n)) for n in ("ids", "scores", "lat", "lon")))
    candidates = Candidates(*(join(lambda p, n=n: getattr(p.candidates, n))
                              for n in ("lat", "lon", "size", "valid", "labels")))
    return Evidence(pools, candidates, join(lambda p: p.features), join(lambda p: p.estimates))
