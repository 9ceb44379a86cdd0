import numpy as np
import pytest
from sklearn.metrics.pairwise import haversine_distances

from locator.geo import (CoordinateError, haversine_km, latlon_to_xyz, spherical_mean, validate_latlon,
                         xyz_to_latlon)


def _special_points(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    lon = rng.uniform(-180, 180, n)
    special = np.array([[90, 0], [-90, 0], [90, 123], [-90, -45], [0, 180], [0, -180], [12.5, 179.999],
                        [-12.5, -179.999], [0, 0], [45, 90], [-45, -90]])
    return np.concatenate([special[:, 0], lat]), np.concatenate([special[:, 1], lon])


def test_haversine_matches_sklearn_including_poles_antipodes_and_dateline():
    rng = np.random.default_rng(1)
    lat, lon = _special_points(rng, 300)
    # Antipodes of every point, so each pair set includes exact antipodal pairs.
    anti_lat, anti_lon = -lat, np.where(lon > 0, lon - 180, lon + 180)
    all_lat, all_lon = np.concatenate([lat, anti_lat]), np.concatenate([lon, anti_lon])
    oracle = haversine_distances(np.radians(np.stack([all_lat, all_lon], 1))) * 6371.0
    ours = haversine_km(all_lat[:, None], all_lon[:, None], all_lat[None, :], all_lon[None, :])
    assert np.max(np.abs(ours - oracle)) <= 1e-9


def test_haversine_known_values():
    assert haversine_km(0, 0, 0, 180) == pytest.approx(np.pi * 6371.0)
    assert haversine_km(90, 0, -90, 0) == pytest.approx(np.pi * 6371.0)
    assert haversine_km(0, 179.5, 0, -179.5) == pytest.approx(np.radians(1.0) * 6371.0)
    assert haversine_km(10, 20, 10, 20) == 0.0


def test_xyz_round_trip():
    rng = np.random.default_rng(2)
    lat, lon = _special_points(rng, 1000)
    xyz = latlon_to_xyz(lat, lon)
    assert np.allclose(np.linalg.norm(xyz, axis=-1), 1.0)
    back_lat, back_lon = xyz_to_latlon(xyz)
    assert np.allclose(back_lat, lat, atol=1e-9)
    not_pole = np.abs(lat) < 89.999
    assert np.allclose(haversine_km(lat, lon, back_lat, back_lon), 0, atol=1e-6)
    same_lon = np.isclose(np.abs(back_lon[not_pole]), 180) | np.isclose(back_lon[not_pole], lon[not_pole])
    assert same_lon.all()


def test_spherical_mean_across_the_dateline_and_weights():
    lat, lon = spherical_mean([10, 10], [179, -179])
    assert lat == pytest.approx(10.0, abs=0.01) and abs(lon) == pytest.approx(180.0)
    assert spherical_mean([0, 0], [0, 90], weights=[1, 0]) == pytest.approx((0.0, 0.0))
    # Mean of a ring of points around the north pole is the pole.
    assert spherical_mean([80] * 4, [0, 90, 180, -90])[0] == pytest.approx(90.0)


def test_spherical_mean_matches_brute_force_minimiser_of_chordal_distance():
    # The normalised vector mean minimises the sum of squared chord lengths; check against a grid search.
    rng = np.random.default_rng(3)
    lat, lon = rng.normal(40, 3, 30), rng.normal(-100, 3, 30)
    m_lat, m_lon = spherical_mean(lat, lon)
    grid_lat, grid_lon = np.meshgrid(np.linspace(30, 50, 401), np.linspace(-110, -90, 401), indexing="ij")
    pts = latlon_to_xyz(lat, lon)
    grid = latlon_to_xyz(grid_lat.ravel(), grid_lon.ravel())
    cost = ((grid[:, None, :] - pts[None, :, :]) ** 2).sum(axis=(1, 2))
    best = np.argmin(cost)
    assert haversine_km(m_lat, m_lon, grid_lat.ravel()[best], grid_lon.ravel()[best]) < 5.0


def test_spherical_mean_of_antipodes_is_an_error():
    with pytest.raises(ValueError, match="balance out"):
        spherical_mean([0, 0], [0, 180])
    with pytest.raises(ValueError, match="no points"):
        spherical_mean([], [])


@pytest.mark.parametrize("lat,lon", [(91, 0), (-90.5, 0), (0, 180.01), (np.nan, 0), (0, np.inf)])
def test_validate_rejects_bad_coordinates_with_their_source(lat, lon):
    with pytest.raises(CoordinateError, match="my photos.csv: 1 invalid coordinate.*index 1"):
        validate_latlon([0, lat], [0, lon], "my photos.csv")


def test_validate_names_the_bad_values_as_plain_numbers():
    with pytest.raises(CoordinateError, match=r"lat=95\.0, lon=173\.1 \("):
        validate_latlon(np.array([95.0]), np.array([173.1]), "form")


def test_validate_accepts_the_edges():
    lat, lon = validate_latlon([90, -90, 0], [180, -180, 0])
    assert lat.dtype == np.float64 and lon.shape == (3,)


def test_valid_latlon_marks_exactly_the_pairs_on_the_globe():
    from locator.geo import valid_latlon
    lat = [0.0, 90.0, -90.0, 90.5, float("nan"), 10.0, 10.0, float("inf")]
    lon = [0.0, 180.0, -180.0, 0.0, 0.0, 180.01, float("nan"), 0.0]
    expected = [abs(a) <= 90 and abs(b) <= 180 for a, b in zip(lat, lon)]  # NaN and inf compare False
    assert valid_latlon(lat, lon).tolist() == expected
