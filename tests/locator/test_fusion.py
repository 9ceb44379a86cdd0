"""The fused method's model: its choices in constructed cases (its candidates: test_candidates.py)."""

import dataclasses
import shutil

import numpy as np
import pytest

from locator.api import Locator
from locator.bundle import Bundle
from locator.candidates import FEATURES
from locator.datasets import read_manifest
from locator.encoder import PhotoEncoder
from locator.fusion import FusionModel, Ranker, select
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


def test_a_batch_of_photos_gets_each_photos_own_choice_bit_for_bit(world):
    model = Bundle.load(world["bundle_dir"]).fusion
    rng = np.random.default_rng(8)
    photos, width = 12, 9
    x = model.scorers[25.0].mean + rng.normal(size=(photos, width, len(FEATURES))) * model.scorers[25.0].scale
    x[3, 2, FEATURES.index("max_sim")] = 0.995  # photo 3 holds a copy of itself
    lat, lon = rng.uniform(40, 50, (photos, width)), rng.uniform(0, 10, (photos, width))
    count = rng.integers(1, width + 1, photos)
    valid = np.arange(width)[None, :] < count[:, None]
    together = model.choose_batch(np.where(valid[..., None], x, 0.0), lat, lon, valid)
    for j in range(photos):
        alone = model.choose(x[j, :count[j]], lat[j, :count[j]], lon[j, :count[j]])
        assert together[j].index == alone.index < count[j]
        assert (together[j].confidence, together[j].radius_km) == (alone.confidence, alone.radius_km)
    assert together[3].duplicate and together[3].index == 2
    assert len({c.index for c in together}) > 1


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
