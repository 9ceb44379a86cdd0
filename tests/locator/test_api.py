import math

import numpy as np
import pytest
from PIL import Image
from sklearn.cluster import DBSCAN

from locator.api import Locator
from locator.errors import SettingsError
from locator.geo import haversine_km, latlon_to_xyz, xyz_to_latlon
from locator.images import load_image
from locator.swc import choose_cells
from tests.locator.located_world import build


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build(tmp_path_factory.mktemp("located"))


def brute_force_swc(world, query_embedding, cell, k):
    """Independent reference: numpy top-K among stored photos of the cell, sklearn DBSCAN, mean of unit vectors."""
    inside = np.flatnonzero(world["cells"] == cell)
    scores = world["embeddings"][inside] @ query_embedding
    top = inside[np.argsort(-scores, kind="stable")[:k]]
    lat = np.array([world["background"][i].lat for i in top])
    lon = np.array([world["background"][i].lon for i in top])
    labels = DBSCAN(eps=1 / 6371.0, min_samples=1, metric="haversine").fit(np.radians(np.c_[lat, lon])).labels_
    sizes = np.bincount(labels)
    tied = [i for i in range(len(top)) if sizes[labels[i]] == sizes.max()]
    members = labels == labels[tied[0]]  # `top` is sorted by similarity: the first tied is the most similar
    m_lat, m_lon = xyz_to_latlon(latlon_to_xyz(lat[members], lon[members]).sum(axis=0))
    return world["ids"][top], float(m_lat), float(m_lon)


def test_swc_equals_brute_force_reference(world):
    with Locator.load(world["bundle_dir"], store=world["store"], device="cpu") as locator:
        images = [r.image for r in world["queries"]]
        encoded = locator.encode(images)
        _, probabilities = locator.encoder.classify(encoded.features)
        for k in (1, 5, 10):
            predictions = locator.predict(encoded, k=k, method="swc")
            for q, p in enumerate(predictions):
                cell = int(np.argmax(probabilities[q]))
                ids, lat, lon = brute_force_swc(world, encoded.embeddings[q], cell, k)
                stored = {int(i): r for i, r in zip(world["ids"], world["background"])}
                assert [n.photo_id for n in p.neighbours] == [stored[int(i)].photo_id for i in ids]
                assert haversine_km(p.lat, p.lon, lat, lon) * 1000 < 1.0
                assert p.cell_token == locator.bundle.partitions[0].tokens[cell]


def test_every_method_and_input_kind(world):
    first = world["queries"][0]
    pil = Image.open(first.image)
    array = np.asarray(load_image(first.image))
    with Locator.load(world["bundle_dir"], store=world["store"], raw_features=None, device="cpu") as locator:
        from_path, from_pil, from_array = locator.locate([first.image, pil, array], method="swc")
        assert (from_path.lat, from_path.lon) == pytest.approx((from_pil.lat, from_pil.lon))
        assert (from_path.lat, from_path.lon) == pytest.approx((from_array.lat, from_array.lon), abs=1e-6)
        classifier = locator.locate([first.image], method="classifier")[0]
        fine = locator.bundle.partitions[0]
        centre = fine.tokens.index(classifier.cell_token)
        assert (classifier.lat, classifier.lon) == (pytest.approx(fine.lat[centre]), pytest.approx(fine.lon[centre]))
        retrieval = locator.locate([first.image], method="retrieval", k=5)[0]
        assert len(retrieval.neighbours) == 5 and retrieval.cells_searched == []
        similarities = [n.similarity for n in retrieval.neighbours]
        assert similarities == sorted(similarities, reverse=True)
        for p in (from_path, retrieval):
            assert p.ok and p.cluster_size >= 1 and p.radius_km > 0 and 0 <= p.confidence <= 1
        with pytest.raises(SettingsError, match="method .raw. needs a feature cache"):
            locator.locate([first.image], method="raw")


def test_unreadable_photos_fail_alone(world, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really")
    with Locator.load(world["bundle_dir"], store=world["store"], device="cpu") as locator:
        good, bad, missing = locator.locate([world["queries"][0].image, broken, tmp_path / "missing.jpg"])
    assert good.ok and not math.isnan(good.lat)
    assert not bad.ok and "broken.jpg" in bad.error and math.isnan(bad.lat)
    assert not missing.ok and "missing.jpg: cannot read file" in missing.error


def test_empty_cell_falls_back_to_the_cell_centre(world, tmp_path):
    from locator.bundle import Bundle
    from locator.store import open_store
    bundle = Bundle.load(world["bundle_dir"])
    empty = open_store(f"edge:{tmp_path / 'empty'}", bundle.collection_spec())
    locator = Locator(bundle, store=empty, device="cpu")
    p = locator.locate([world["queries"][0].image], method="swc")[0]
    centre = bundle.partitions[0].tokens.index(p.cell_token)
    assert (p.lat, p.lon) == (bundle.partitions[0].lat[centre], bundle.partitions[0].lon[centre])
    assert "cell's centre" in p.note and p.neighbours == []
    locator.close()


def test_choose_cells_multi_cell_rules():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]])
    assert choose_cells(probabilities) == [[0], [0]]
    assert choose_cells(probabilities, top_cells=2) == [[0, 1], [0, 1]]
    assert choose_cells(probabilities, top_cells=2, unsure_below=0.5) == [[0], [0, 1]]


def test_multi_cell_search_sees_more_photos(world):
    with Locator.load(world["bundle_dir"], store=world["store"], device="cpu") as locator:
        single = locator.locate([world["queries"][0].image], k=40, method="swc")[0]
        wide = locator.locate([world["queries"][0].image], k=40, top_cells=3, method="swc")[0]
    assert len(wide.cells_searched) == 3 and len(single.cells_searched) == 1
    assert len(wide.neighbours) >= len(single.neighbours)
