import numpy as np
import pytest
import s2sphere

from locator import s2


def _random_points(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    lon = rng.uniform(-180, 180, n)
    edges = np.array([[90, 0], [-90, 0], [0, 180], [0, -180], [45, 45], [0, 0], [35.26439, 45], [-0.0, 90]])
    return np.concatenate([edges[:, 0], lat]), np.concatenate([edges[:, 1], lon])


def _s2sphere_leaf(lat: float, lon: float) -> s2sphere.CellId:
    return s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(lat, lon))


@pytest.fixture(scope="module")
def points_and_oracle():
    lat, lon = _random_points(100_000)
    oracle = [_s2sphere_leaf(a, b) for a, b in zip(lat, lon)]
    return lat, lon, oracle


def test_leaf_ids_match_s2sphere_on_100k_points(points_and_oracle):
    lat, lon, oracle = points_and_oracle
    ours = s2.leaf_ids(lat, lon)
    assert ours.dtype == np.uint64
    assert np.array_equal(ours, np.array([c.id() for c in oracle], dtype=np.uint64))


@pytest.mark.parametrize("level", [0, 1, 4, 9, 13, 17, 23, 30])
def test_parents_match_s2sphere(points_and_oracle, level):
    lat, lon, oracle = points_and_oracle
    ours = s2.parents(s2.leaf_ids(lat, lon), level)
    expected = np.array([c.parent(level).id() for c in oracle], dtype=np.uint64)
    assert np.array_equal(ours, expected)
    assert np.all(s2.levels(ours) == level)


def test_ranges_children_tokens_faces_match_s2sphere(points_and_oracle):
    _, _, oracle = points_and_oracle
    for cell in (oracle[k].parent(level) for k, level in zip(range(0, 2000, 97), range(0, 30, 1))):
        cid = cell.id()
        assert int(s2.range_min([cid])[0]) == cell.range_min().id()
        assert int(s2.range_max([cid])[0]) == cell.range_max().id()
        assert s2.children(cid) == [c.id() for c in cell.children()]
        assert s2.id_to_token(cid) == cell.to_token()
        assert s2.token_to_id(cell.to_token()) == cid
    assert s2.face_ids() == [s2sphere.CellId.from_face_pos_level(f, 0, 0).id() for f in range(6)]


@pytest.mark.parametrize("token", ["", "X", "0", "zz", "c1", "12345678901234567"])
def test_bad_tokens_are_rejected(token):
    with pytest.raises(ValueError, match="S2 cell token"):
        s2.token_to_id(token)


def test_leaf_has_no_children():
    leaf = int(s2.leaf_ids([10.0], [20.0])[0])
    with pytest.raises(ValueError, match="leaf"):
        s2.children(leaf)
