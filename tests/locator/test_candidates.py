"""The fused method's candidates and evidence, batched: against independent oracles (sklearn's DBSCAN, brute-force
sums, the per-photo aggregation) and, photo by photo, the same alone as in any batch."""

import math

import numpy as np
import pytest
from sklearn.cluster import DBSCAN

from locator.aggregation import aggregate
from locator.bundle import Bundle
from locator.candidates import (FEATURES, MASS_RADII_KM, Pools, baselines, candidate_features, gather_evidence,
                                make_candidates, paper_estimates)
from locator.geo import EARTH_RADIUS_KM, haversine_km, latlon_to_xyz, spherical_mean
from locator.store import Hits
from tests.locator.located_world import build


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build(tmp_path_factory.mktemp("candidates"))


@pytest.fixture(scope="module")
def fine(world):
    return Bundle.load(world["bundle_dir"]).partitions[-1]


def _searches(rng, photos, k=10, places=4):
    """Three searches' hits per photo, around a few places each (so that clusters form), some rows short."""
    out = []
    centres = rng.uniform([-60, -180], [60, 180], (photos, places, 2))
    where = centres[:, np.arange(40) % places] + rng.normal(0, 0.003, (photos, 40, 2))  # of each reference id
    for _ in range(3):
        ids = rng.integers(0, 40, (photos, k))
        at = where[np.arange(photos)[:, None], ids]
        lat, lon = at[..., 0], at[..., 1]
        scores = -np.sort(-rng.uniform(0, 1, (photos, k)), axis=1)
        short = np.arange(k)[None, :] >= rng.integers(0, k + 1, (photos, 1))
        ids = np.where(short, -1, ids)
        out.append(Hits(ids, np.where(short, np.nan, scores), np.where(short, np.nan, lat),
                        np.where(short, np.nan, lon)))
    return out


def test_a_pool_keeps_each_reference_once_with_its_best_score():
    a = Hits(np.array([[5, 7, -1]]), np.array([[0.9, 0.5, np.nan]]), np.array([[1.0, 2.0, np.nan]]),
             np.array([[1.0, 2.0, np.nan]]))
    b = Hits(np.array([[7, 9]]), np.array([[0.8, 0.1]]), np.array([[2.0, 3.0]]), np.array([[2.0, 3.0]]))
    pools = Pools.merge([a, b])
    assert pools.ids.shape == (1, 5)
    assert pools.ids[0].tolist() == [5, 7, 9, -1, -1] and pools.scores[0, :3].tolist() == [0.9, 0.8, 0.1]
    assert [r.tolist() for r in pools.row(0)[:2]] == [[5, 7, 9], [0.9, 0.8, 0.1]]


def test_candidates_are_the_clusters_means_then_the_classifiers_estimate():
    rng = np.random.default_rng(0)
    pools = Pools.merge(_searches(rng, 8))
    centre_lat, centre_lon = rng.uniform(-50, 50, 8), rng.uniform(-100, 100, 8)
    with_centre = np.arange(8) % 2 == 0
    candidates = make_candidates(pools, centre_lat, centre_lon, 1.0, with_centre)
    for j in range(8):
        _, scores, lat, lon = pools.row(j)
        labels = DBSCAN(eps=1 / EARTH_RADIUS_KM, min_samples=1, metric="haversine").fit(
            np.radians(np.c_[lat, lon])).labels_ if len(lat) else np.zeros(0, int)
        clusters = labels.max() + 1 if len(labels) else 0
        for c in range(clusters):
            inside = np.flatnonzero(labels == c)
            assert candidates.members(j, c).tolist() == inside.tolist()
            assert (candidates.lat[j, c], candidates.lon[j, c]) == spherical_mean(lat[inside], lon[inside])
        has_centre = with_centre[j] or clusters == 0
        assert candidates.valid[j].sum() == clusters + has_centre
        if has_centre:
            assert (candidates.lat[j, clusters], candidates.lon[j, clusters]) == (centre_lat[j], centre_lon[j])
            assert candidates.is_centre[j, clusters] and candidates.size[j, clusters] == 0


def test_the_papers_estimates_are_the_per_photo_dbscan_aggregation():
    rng = np.random.default_rng(2)
    hits = _searches(rng, 30)[0]
    for row, n in zip(hits.scores, (hits.ids >= 0).sum(axis=1)):
        row[:n] = rng.permutation(row[:n])  # the tie goes to the most similar, wherever it is
    fallback = rng.uniform(-50, 50, (30, 2))
    got = paper_estimates(hits, fallback[:, 0], fallback[:, 1])
    for j in range(30):
        valid = hits.ids[j] >= 0
        if not valid.any():
            assert got[j].tolist() == fallback[j].tolist()
            continue
        oracle = aggregate("dbscan", hits.lat[j][valid], hits.lon[j][valid], hits.scores[j][valid], eps_km=1.0)
        assert got[j].tolist() == [oracle.lat, oracle.lon]


def test_features_match_brute_force_sums(fine):
    rng = np.random.default_rng(1)
    searches = _searches(rng, 5)
    pools = Pools.merge(searches)
    centre_lat, centre_lon = np.zeros(5), np.zeros(5)
    candidates = make_candidates(pools, centre_lat, centre_lon)
    probabilities = rng.dirichlet(np.ones(len(fine)), 5)
    estimates = baselines(searches[0], searches[2], centre_lat, centre_lon)
    x = candidate_features(candidates, pools, probabilities, fine, estimates)
    outside = []
    for j in range(5):
        _, scores, p_lat, p_lon = pools.row(j)
        for c in np.flatnonzero(candidates.valid[j]):
            lat, lon, row = candidates.lat[j, c], candidates.lon[j, c], x[j, c]
            to_cells = haversine_km(lat, lon, fine.lat, fine.lon)
            to_pool = haversine_km(lat, lon, p_lat, p_lon)
            for r in MASS_RADII_KM:
                assert row[FEATURES.index(f"cell_mass_{r:g}km")] == pytest.approx(
                    sum(p for p, d in zip(probabilities[j], to_cells) if d < r), abs=1e-9)
                assert row[FEATURES.index(f"neighbour_share_{r:g}km")] == pytest.approx(
                    sum(s for s, d in zip(scores, to_pool) if d < r) / scores.sum(), abs=1e-9)
            members = candidates.members(j, c)
            assert row[FEATURES.index("max_sim")] == (scores[members].max() if len(members) else 0.0)
            assert row[FEATURES.index("mean_sim")] == pytest.approx(scores[members].mean() if len(members) else 0.0,
                                                                     rel=1e-14)
            assert row[FEATURES.index("log_size")] == math.log1p(len(members))
            assert row[FEATURES.index("pool_max_sim")] == scores.max()
            for b, name in enumerate(("swc", "retrieval", "classifier")):
                assert row[FEATURES.index(f"log_km_to_{name}")] == pytest.approx(
                    math.log1p(haversine_km(lat, lon, *estimates[j, b])))
            cell = fine.lookup(np.array([lat]), np.array([lon]))[0]
            # Outside every cell: flagged, and as probable as the least probable cell (no far-off sentinel value).
            assert row[FEATURES.index("outside_cells")] == float(cell < 0)
            expected_p = probabilities[j, cell] if cell >= 0 else probabilities[j].min()
            assert row[FEATURES.index("log_cell_p")] == pytest.approx(math.log(max(expected_p, 1e-6)))
            assert row[FEATURES.index("top_cell_p")] == probabilities[j].max()
            outside.append(cell < 0)
        assert (x[j][~candidates.valid[j]] == 0).all()
    assert any(outside) and not all(outside)


@pytest.mark.parametrize("k", [10, 50])  # pools of 150 are clustered by scipy, row by row
def test_a_photo_gets_the_same_evidence_bit_for_bit_alone_or_in_any_batch(fine, k):
    rng = np.random.default_rng(6)
    photos = 40
    searches = _searches(rng, photos, k)
    centre_lat, centre_lon = rng.uniform(-50, 50, photos), rng.uniform(-100, 100, photos)
    probabilities = rng.dirichlet(np.ones(len(fine)), photos)
    together = gather_evidence(*searches, centre_lat, centre_lon, probabilities, fine)
    for j in (0, 7, 39):
        one = slice(j, j + 1)
        alone = gather_evidence(*(Hits(s.ids[one], s.scores[one], s.lat[one], s.lon[one]) for s in searches),
                                centre_lat[one], centre_lon[one], probabilities[one], fine)
        assert np.array_equal(alone.features[0], together.features[j])
        assert np.array_equal(alone.estimates[0], together.estimates[j])
        assert np.array_equal(alone.candidates.lat[0], together.candidates.lat[j])
    shuffled = rng.permutation(photos)
    again = gather_evidence(*(Hits(s.ids[shuffled], s.scores[shuffled], s.lat[shuffled], s.lon[shuffled])
                              for s in searches), centre_lat[shuffled], centre_lon[shuffled], probabilities[shuffled],
                            fine)
    assert np.array_equal(again.features, together.features[shuffled])
    assert together.features.shape == (photos, 3 * k + 1, len(FEATURES))


def test_a_batch_of_no_photos_has_no_evidence(fine):
    none = Hits(*(np.zeros((0, 10)) for _ in range(4)))
    found = gather_evidence(none, none, none, np.zeros(0), np.zeros(0), np.zeros((0, len(fine))), fine)
    assert found.features.shape == (0, 31, len(FEATURES)) and found.estimates.shape == (0, 3, 2)


@pytest.mark.parametrize("candidates", [1, 2, 3, 31])
def test_mass_features_see_the_whole_matrix_bit_for_bit_at_mp16_size(candidates):
    # 16,500 cells, as many as MP16's finer partitions: the cosines are computed in chunks of rows, and every
    # chunk's values must be those of the whole computation (so that a photo's features do not depend on it).
    from locator.candidates import _cosine_chunks, _mass_within
    rng = np.random.default_rng(candidates)
    cells = latlon_to_xyz(rng.uniform(-60, 70, 16_500), rng.uniform(-180, 180, 16_500))
    points = latlon_to_xyz(rng.uniform(-60, 70, candidates), rng.uniform(-180, 180, candidates))
    weights = rng.dirichlet(np.ones(16_500), 2)
    photo = np.arange(candidates) % 2
    whole = sum(points[:, None, k] * cells[None, :, k] for k in range(3))  # the same sums, unchunked
    assert np.array_equal(np.concatenate([c for _, c in _cosine_chunks(points, cells)]), whole)
    assert np.allclose(whole, points @ cells.T, rtol=0, atol=1e-15)
    for r, got in zip(MASS_RADII_KM, _mass_within(points, cells, weights, photo)):
        assert np.array_equal(got, ((whole > math.cos(r / EARTH_RADIUS_KM)) * weights[photo]).sum(axis=1))
