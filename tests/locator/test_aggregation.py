import numpy as np
import pytest
from sklearn.cluster import DBSCAN

from locator.aggregation import aggregate, cluster_labels, cluster_rows
from locator.errors import SettingsError
from locator.geo import haversine_km, latlon_to_xyz, xyz_to_latlon


def _neighbours(seed: int):
    rng = np.random.default_rng(seed)
    centres = [(48.85, 2.35), (48.86, 2.36), (40.7, -74.0), (-33.9, 151.2)]
    pick = rng.integers(0, 4, 10)
    lat = np.array([centres[p][0] for p in pick]) + rng.normal(0, 0.003, 10)
    lon = np.array([centres[p][1] for p in pick]) + rng.normal(0, 0.003, 10)
    return lat, lon, np.sort(rng.uniform(0.2, 0.9, 10))[::-1]


@pytest.mark.parametrize("seed", range(12))
def test_dbscan_equals_direct_sklearn_dbscan(seed):
    lat, lon, scores = _neighbours(seed)
    result = aggregate("dbscan", lat, lon, scores)
    labels = DBSCAN(eps=1.0 / 6371.0, min_samples=1, metric="haversine").fit(np.radians(np.c_[lat, lon])).labels_
    sizes = {label: int((labels == label).sum()) for label in set(labels)}
    largest = max(sizes.values())
    # Tie: the cluster of the most similar photo among the tied clusters.
    candidates = [k for k in np.argsort(-scores) if sizes[labels[k]] == largest]
    members = labels == labels[candidates[0]]
    mean = latlon_to_xyz(lat[members], lon[members]).sum(axis=0)
    expected_lat, expected_lon = xyz_to_latlon(mean)
    assert np.array_equal(result.members, members)
    assert haversine_km(result.lat, result.lon, expected_lat, expected_lon) < 1e-6


@pytest.mark.parametrize("n", [1, 7, 60, 300])
def test_cluster_labels_equal_sklearn_dbscan_labels_with_chains(n):
    rng = np.random.default_rng(n)
    # Chains of points 0.6 km apart along a parallel (clusters only by transitivity), plus scattered points.
    chain = np.arange(n // 3) * 0.6 / 111.2
    lat = np.r_[np.full(len(chain), 10.0), rng.uniform(-60, 60, n - len(chain))]
    lon = np.r_[chain, rng.uniform(-180, 180, n - len(chain))]
    order = rng.permutation(n)
    lat, lon = lat[order], lon[order]
    expected = DBSCAN(eps=1.0 / 6371.0, min_samples=1, metric="haversine").fit(np.radians(np.c_[lat, lon])).labels_
    assert np.array_equal(cluster_labels(lat, lon), expected)


@pytest.mark.parametrize("points", [25, 200])  # squared reachability matrices; scipy beyond 128 points
def test_clusters_are_sklearns_dbscan_row_by_row(points):
    rng = np.random.default_rng(points)
    photos = 6
    centres = rng.uniform([-60, -180], [60, 180], (photos, 3, 2))
    pick = rng.integers(0, 3, (photos, points))
    at = centres[np.arange(photos)[:, None], pick]
    lat, lon = at[..., 0] + rng.normal(0, 0.004, pick.shape), at[..., 1] + rng.normal(0, 0.004, pick.shape)
    lat[:, 0], lon[:, 0] = 10.0, 179.9995  # a cluster across the dateline
    lat[:, 1], lon[:, 1] = 10.0, -179.9995
    valid = np.arange(points)[None, :] < rng.integers(1, points + 1, (photos, 1))
    labels = cluster_rows(lat, lon, valid, 1.0)
    for j in range(photos):
        n = int(valid[j].sum())
        theirs = DBSCAN(eps=1 / 6371.0, min_samples=1, metric="haversine").fit(
            np.radians(np.c_[lat[j, :n], lon[j, :n]])).labels_
        assert labels[j, :n].tolist() == theirs.tolist()  # sklearn numbers clusters by their first point too
        assert (labels[j, n:] == -1).all()


def test_dbscan_tie_goes_to_the_most_similar_photo():
    lat = np.array([10.0, 10.0001, 20.0, 20.0001, 30.0])
    lon = np.zeros(5)
    scores = np.array([0.5, 0.4, 0.9, 0.1, 0.95])
    result = aggregate("dbscan", lat, lon, scores)
    assert result.members.tolist() == [False, False, True, True, False]


def test_average_nn_and_kde():
    lat = np.array([0.0, 0.0, 0.0, 50.0])
    lon = np.array([0.0, 0.1, 0.2, 50.0])
    scores = np.array([0.3, 0.2, 0.1, 0.9])
    assert aggregate("nn", lat, lon, scores).lat == 50.0
    avg = aggregate("average", lat, lon, scores)
    assert avg.size == 4 and 0 < avg.lat < 50
    density = aggregate("kde", lat, lon, scores, bandwidth_km=20.0)
    assert (density.lat, density.lon) == (0.0, 0.1)  # the middle of the three close photos has the highest density
    assert density.members.tolist() == [True, True, True, False]


def test_unknown_aggregation_and_empty_input():
    with pytest.raises(SettingsError, match="unknown aggregation 'median'"):
        aggregate("median", [0], [0], [1])
    with pytest.raises(ValueError, match="at least one neighbour"):
        aggregate("dbscan", [], [], [])
