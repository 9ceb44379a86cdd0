"""The fused method: its pieces against independent oracles, and its choices in constructed cases."""

import dataclasses
import math
import shutil

import numpy as np
import pytest
from sklearn.cluster import DBSCAN

from locator.api import Locator
from locator.bundle import Bundle
from locator.datasets import read_manifest
from locator.encoder import PhotoEncoder
from locator.fusion import (FEATURES, MASS_RADII_KM, FusionModel, Pool, Ranker, baselines, candidate_features,
                            make_candidates, select)
from locator.geo import haversine_km
from locator.store import PhotoPoint, cell_field, open_store, point_id, token_field
from tests.locator.located_world import build
from tests.photo_world import make_photo_world
from training.batches import TrainingRows
from training.fusion import collection_set, fit_fusion
from training.settings import FusionSettings


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build(tmp_path_factory.mktemp("fusion"))


def test_pool_keeps_each_reference_once_with_its_best_score():
    a = (np.array([5, 7, -1]), np.array([0.9, 0.5, np.nan]), np.array([1.0, 2.0, np.nan]), np.array([1.0, 2.0, np.nan]))
    b = (np.array([7, 9]), np.array([0.8, 0.1]), np.array([2.0, 3.0]), np.array([2.0, 3.0]))
    pool = Pool.merge(a, b)
    assert pool.ids.tolist() == [5, 7, 9] and pool.scores.tolist() == [0.9, 0.8, 0.1]


def test_candidates_are_dbscan_clusters_plus_the_classifier_estimate():
    rng = np.random.default_rng(0)
    centres = np.array([[48.85, 2.35], [48.86, 2.36], [40.7, -74.0]])
    pick = rng.integers(0, 3, 25)
    lat, lon = centres[pick, 0] + rng.normal(0, 0.002, 25), centres[pick, 1] + rng.normal(0, 0.002, 25)
    pool = Pool(np.arange(25), np.sort(rng.uniform(0, 1, 25))[::-1], lat, lon)
    candidates = make_candidates(pool, 10.0, 20.0)
    labels = DBSCAN(eps=1 / 6371.0, min_samples=1, metric="haversine").fit(np.radians(np.c_[lat, lon])).labels_
    ours = sorted(tuple(sorted(m.tolist())) for m in candidates.members[:-1])
    theirs = sorted(tuple(np.flatnonzero(labels == label).tolist()) for label in set(labels))
    assert ours == theirs
    assert (candidates.lat[-1], candidates.lon[-1]) == (10.0, 20.0) and candidates.is_centre.tolist()[-1]


def test_features_match_brute_force_sums(world):
    fine = Bundle.load(world["bundle_dir"]).partitions[-1]
    rng = np.random.default_rng(1)
    pool = Pool(np.arange(8), np.sort(rng.uniform(0.1, 0.9, 8))[::-1], rng.uniform(-60, 60, 8), rng.uniform(-170, 170, 8))
    candidates = make_candidates(pool, 0.0, 0.0)
    probabilities = rng.dirichlet(np.ones(len(fine)))
    estimates = baselines((pool.ids, pool.scores, pool.lat, pool.lon), (pool.ids, pool.scores, pool.lat, pool.lon),
                          (0.0, 0.0))
    x = candidate_features(candidates, pool, probabilities, fine, estimates)
    for c in range(len(candidates)):
        to_cells = [haversine_km(candidates.lat[c], candidates.lon[c], fine.lat[i], fine.lon[i]) for i in range(len(fine))]
        to_pool = [haversine_km(candidates.lat[c], candidates.lon[c], pool.lat[i], pool.lon[i]) for i in range(8)]
        for r in MASS_RADII_KM:
            mass = sum(p for p, d in zip(probabilities, to_cells) if d < r)
            share = sum(s for s, d in zip(pool.scores, to_pool) if d < r) / pool.scores.sum()
            assert x[c, FEATURES.index(f"cell_mass_{r:g}km")] == pytest.approx(mass, abs=1e-9)
            assert x[c, FEATURES.index(f"neighbour_share_{r:g}km")] == pytest.approx(share, abs=1e-9)
        members = candidates.members[c]
        assert x[c, FEATURES.index("max_sim")] == (pool.scores[members].max() if len(members) else 0.0)
        expected_gap = math.log1p(haversine_km(candidates.lat[c], candidates.lon[c], 0.0, 0.0))
        assert x[c, FEATURES.index("log_km_to_classifier")] == pytest.approx(expected_gap)
        cell = fine.lookup(np.array([candidates.lat[c]]), np.array([candidates.lon[c]]))[0]
        # Outside every cell: flagged, and as probable as the least probable cell (no far-off sentinel value).
        assert x[c, FEATURES.index("outside_cells")] == float(cell < 0)
        expected_p = probabilities[cell] if cell >= 0 else probabilities.min()
        assert x[c, FEATURES.index("log_cell_p")] == pytest.approx(math.log(max(expected_p, 1e-6)))
    assert (x[:, FEATURES.index("outside_cells")] == 1).any() and (x[:, FEATURES.index("outside_cells")] == 0).any()


def test_the_choice_takes_the_region_then_the_most_precise_place_in_it():
    lat, lon = np.array([0.0, 0.0, 30.0]), np.array([0.0, 1.0, 0.0])  # 0 and 1 are 111 km apart; 2 is far
    probabilities = {25.0: np.array([0.05, 0.30, 0.0]), 750.0: np.array([0.9, 0.2, 0.95])}
    # Σ P: candidate 0 (0.95), 1 (0.5), 2 (0.95): the region of 0 (first best); within 750 km, 1 is finer.
    assert select(probabilities, lat, lon, 750.0) == 1
    assert select(probabilities, lat, lon, 50.0) == 0


def test_the_choice_refines_scale_by_scale():
    # 0 and 1 lie 164 km apart, 2 is 4 km from 1. The 200-km scorer favours 1, which wins the 750-km stage; within
    # 200 km of it the 1- and 25-km scorers favour 0; within 25 km of 0 nothing else is left.
    lat, lon = np.array([45.0, 45.0, 45.0]), np.array([15.0, 17.09, 17.14])
    probabilities = {1.0: np.array([0.16, 0.07, 0.10]), 25.0: np.array([0.18, 0.17, 0.10]),
                     200.0: np.array([0.75, 0.86, 0.80]), 750.0: np.array([0.93, 0.96, 0.90])}
    assert haversine_km(lat[0], lon[0], lat[1], lon[1]) == pytest.approx(164, abs=1)
    assert select(probabilities, lat, lon, 750.0) == 0
    assert select(probabilities, lat, lon, 200.0) == 0
    # Refining only from 25 km leaves the region's best (1) and its 4-km neighbour 2, chosen by P(1 km).
    assert select(probabilities, lat, lon, 25.0) == 2


def test_the_place_within_the_region_is_chosen_by_the_rankers_shares():
    lat, lon = np.array([0.0, 0.0, 30.0]), np.array([0.0, 1.0, 0.0])
    probabilities = {25.0: np.array([0.05, 0.30, 0.0]), 750.0: np.array([0.9, 0.2, 0.95])}
    assert select(probabilities, lat, lon, 750.0) == 1
    # The region still comes from the scorers (0's), the place within it from the shares.
    assert select(probabilities, lat, lon, 750.0, {25.0: np.array([0.6, 0.1, 0.3])}) == 0
    assert select(probabilities, lat, lon, 750.0, {25.0: np.array([0.1, 0.2, 0.7])}) == 1


def test_shares_ignore_evidence_that_all_candidates_share():
    rng = np.random.default_rng(4)
    ranker = Ranker(rng.normal(size=4), rng.uniform(0.5, 2, 4), rng.normal(size=4))
    x = rng.normal(size=(5, 4))
    shares = ranker(x)
    assert shares.sum() == pytest.approx(1.0) and (shares > 0).all()
    shifted = x + np.array([0.0, 3.0, -7.0, 0.0])  # the same for every candidate of the photo
    np.testing.assert_allclose(ranker(shifted), shares, rtol=1e-12)
    naive = np.exp(((x - ranker.mean) / ranker.scale) @ ranker.coef)
    np.testing.assert_allclose(shares, naive / naive.sum(), rtol=1e-12)


def test_model_survives_its_json(world):
    model = Bundle.load(world["bundle_dir"]).fusion
    again = FusionModel.from_json(model.to_json())
    x = np.random.default_rng(2).normal(size=(6, len(FEATURES)))
    lat, lon = np.linspace(-50, 50, 6), np.linspace(-100, 100, 6)
    assert model.choose(x, lat, lon) == again.choose(x, lat, lon)


def _constructed_store(world, tmp_path, points):
    """An Edge store for the world's bundle holding `points`: (embedding, lat, lon) triples."""
    bundle = Bundle.load(world["bundle_dir"])
    fine = bundle.partitions[-1]
    store = open_store(f"edge:{tmp_path / 'store'}", bundle.collection_spec())
    ids, vectors, payloads = [], [], []
    for k, (vector, lat, lon) in enumerate(points):
        cell = int(fine.lookup([lat], [lon])[0])
        ids.append(point_id("constructed", str(k)))
        vectors.append(vector / np.linalg.norm(vector))
        payloads.append({cell_field(0): cell, token_field(0): fine.tokens[cell] if cell >= 0 else "", "lat": lat,
                         "lon": lon, "photo_id": str(k), "owner": "o", "source": "constructed", "image": "",
                         "ingest_time": "test"})
    store.upsert(ids, np.array(vectors), payloads)
    return bundle, store


def _query(world):
    with Locator.load(world["bundle_dir"], device="cpu") as locator:
        encoded = locator.encode([world["queries"][0].image])
        _, probabilities = locator.encoder.classify(encoded.features)
    return encoded.embeddings[0], probabilities[0]


def _point_in_cell(fine, cell, km):
    """A point `km` north of the cell's centre, still inside the cell (closer if needed)."""
    for distance in (km, km / 2, km / 4, km / 8):
        lat = float(fine.lat[cell]) + distance / 111.2
        if fine.lookup([lat], [float(fine.lon[cell])])[0] == cell:
            return lat, float(fine.lon[cell])
    raise AssertionError("cell too small")


def _near(embedding, rng, noise=0.01):
    return embedding + rng.normal(0, noise / np.sqrt(len(embedding)), len(embedding))


def test_fused_equals_swc_when_retrieval_finds_nothing_better(world, tmp_path):
    embedding, probabilities = _query(world)
    rng = np.random.default_rng(3)
    fine = Bundle.load(world["bundle_dir"]).partitions[-1]
    best = int(np.argmax(probabilities))
    x_lat, x_lon = _point_in_cell(fine, best, 3.0)
    elsewhere = [(rng.normal(size=len(embedding)), float(fine.lat[c]), float(fine.lon[c]))
                 for c in range(len(fine)) if c != best]
    bundle, store = _constructed_store(world, tmp_path, [(_near(embedding, rng), x_lat, x_lon)] * 6 + elsewhere)
    locator = Locator(bundle, store, device="cpu")
    swc, fused = (locator.locate([world["queries"][0].image], method=m)[0] for m in ("swc", "fused"))
    locator.close()
    assert haversine_km(swc.lat, swc.lon, x_lat, x_lon) < 0.01
    assert haversine_km(fused.lat, fused.lon, swc.lat, swc.lon) * 1000 < 1.0
    assert 0.0 <= fused.confidence <= 1.0 and fused.radius_km > 0


def test_refit_on_a_grown_collection_follows_near_duplicates_outside_the_predicted_cell(world, tmp_path):
    """References of places the classifier never saw are added; once the fused model is refitted on the grown
    collection, a new photo of such a place goes to its near-duplicates, not to the classifier's cell."""
    new_places = [(-1.29, 36.82), (64.14, -21.94), (-41.29, 174.78)]  # Nairobi, Reykjavík, Wellington
    added = read_manifest(make_photo_world(tmp_path / "added", photos_per_place=6, seed=11, places=new_places))
    added = [dataclasses.replace(r, source="added", owner=f"place{r.photo_id[1]}") for r in added]
    queries, references = added[::6], [r for k, r in enumerate(added) if k % 6]
    bundle = Bundle.load(world["bundle_dir"])
    shutil.copytree(world["root"] / "store", tmp_path / "store")
    store = open_store(f"edge:{tmp_path / 'store'}", bundle.collection_spec())
    encoded = PhotoEncoder(bundle, "cpu").encode_photos([r.image for r in references])
    store.add([PhotoPoint.placed(r.photo_id, r.source, r.lat, r.lon, bundle.partitions, owner=r.owner, image=r.image)
               for r in references], encoded.embeddings)
    data = TrainingRows.from_arrays(world["features"], [r.lat for r in world["background"]],
                                    [r.lon for r in world["background"]], [r.group for r in world["background"]])
    collection = collection_set(bundle, store, {"world"}, FusionSettings(folds=3), progress=False)
    refit, report = fit_fusion(bundle, data, FusionSettings(folds=3), progress=False, collection=collection)
    assert report["collection_queries"] == len(references)
    added_report = report["added_references"]
    assert added_report["all"]["photos"] == added_report["added"]["photos"] == len(references)
    assert set(added_report) == {"all", "added"}
    bundle.fusion = refit
    locator = Locator(bundle, store, device="cpu")
    fine, outside = bundle.partitions[-1], 0
    for query in queries:
        fused = locator.locate([query.image], method="fused")[0]
        if fine.lookup([query.lat], [query.lon])[0] == fine.tokens.index(fused.cell_token):
            continue  # the classifier's cell holds this place: not the case under test
        outside += 1
        assert haversine_km(fused.lat, fused.lon, query.lat, query.lon) < 25
        assert fused.note == "a retrieved cluster outside the classifier's most probable cell"
    locator.close()
    assert outside >= 2


def test_a_reference_that_is_the_same_photo_decides(world):
    model = Bundle.load(world["bundle_dir"]).fusion
    rng = np.random.default_rng(5)
    x = np.tile(model.scorers[25.0].mean, (3, 1)) + rng.normal(size=(3, len(FEATURES))) * 0.1
    column = FEATURES.index("max_sim")
    x[:, column] = [0.80, 0.95, 0.70]
    lat, lon = np.array([10.0, 40.0, -20.0]), np.array([0.0, 50.0, 100.0])
    unforced = model.choose(x, lat, lon)
    assert not unforced.duplicate
    x[2, column] = model.duplicate_sim  # candidate 2 now holds a copy of the photo
    forced = model.choose(x, lat, lon)
    assert forced.index == 2 and forced.duplicate
    assert FusionModel.from_json(model.to_json()).duplicate_sim == model.duplicate_sim == 0.99


def test_a_stored_photo_is_located_where_it_was_stored(world):
    """Located as itself, a reference comes back at its own place (the rule above), whatever else is near."""
    stored = world["background"][:12]
    with Locator.load(world["bundle_dir"], store=world["store"], device="cpu") as locator:
        predictions = locator.locate([r.image for r in stored], method="fused")
    for r, p in zip(stored, predictions):
        assert p.ok and p.note.startswith("the same photo as a reference")
        assert haversine_km(p.lat, p.lon, r.lat, r.lon) < 1.0


def test_candidates_equal_per_cluster_means_and_similarities_bit_for_bit(world):
    from locator.aggregation import cluster_labels
    from locator.geo import spherical_mean
    fine = Bundle.load(world["bundle_dir"]).partitions[-1]
    rng = np.random.default_rng(5)
    for _ in range(300):
        n = int(rng.integers(1, 31))
        places = rng.uniform([-60, -180], [60, 180], (int(rng.integers(1, 5)), 2))
        at = places[rng.integers(0, len(places), n)]  # a few places, so that clusters of up to 30 photos form
        lat, lon = at[:, 0] + rng.normal(0, 0.003, n), at[:, 1] + rng.normal(0, 0.003, n)
        pool = Pool(np.arange(n), np.sort(rng.uniform(0, 1, n))[::-1], lat, lon)
        candidates = make_candidates(pool, 0.0, 0.0)
        x = candidate_features(candidates, pool, rng.dirichlet(np.ones(len(fine))), fine, np.zeros((3, 2)))
        labels = cluster_labels(lat, lon, 1.0)
        for label in range(labels.max() + 1):  # the per-cluster loops these replaced, as the oracle
            inside = np.flatnonzero(labels == label)
            assert (candidates.lat[label], candidates.lon[label]) == spherical_mean(lat[inside], lon[inside])
            assert x[label, FEATURES.index("max_sim")] == pool.scores[inside].max()
            assert x[label, FEATURES.index("mean_sim")] == pool.scores[inside].mean()


@pytest.mark.parametrize("candidates", [1, 2, 3, 31])
def test_mass_features_see_the_whole_matrix_bit_for_bit_at_mp16_size(candidates):
    # 16,500 cells, as many as MP16's finer partitions: the cosines are computed in chunks of rows, and every
    # chunk's values must be those of the whole computation (so that a photo's features do not depend on it).
    from locator.fusion import _cosine_chunks, _mass_within
    from locator.geo import EARTH_RADIUS_KM, latlon_to_xyz
    rng = np.random.default_rng(candidates)
    cells = latlon_to_xyz(rng.uniform(-60, 70, 16_500), rng.uniform(-180, 180, 16_500))
    points = latlon_to_xyz(rng.uniform(-60, 70, candidates), rng.uniform(-180, 180, candidates))
    weights = rng.dirichlet(np.ones(16_500))
    whole = sum(points[:, None, k] * cells[None, :, k] for k in range(3))  # the same sums, unchunked
    assert np.array_equal(np.concatenate(list(_cosine_chunks(points, cells))), whole)
    assert np.allclose(whole, points @ cells.T, rtol=0, atol=1e-15)
    for r, got in zip(MASS_RADII_KM, _mass_within(points, cells, weights)):
        assert np.array_equal(got, ((whole > math.cos(r / EARTH_RADIUS_KM)) * weights[None, :]).sum(axis=1))
