import numpy as np
import pytest

import locator.exact_index as exact_index
import training.reference_index as reference_index
from training.reference_index import ReferenceIndex


def _references(n: int = 3000, dim: int = 16, cells: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, rng.uniform(-60, 60, n), rng.uniform(-180, 180, n), rng.integers(0, cells, n)


def _build(x, lat, lon, cells) -> ReferenceIndex:
    rows = np.arange(len(x))
    return ReferenceIndex.build(lambda r: x[r], rows, x.shape[1], lat, lon, cells, chunk=700)


def _brute_force(x, lat, lon, cells, queries, allowed, k):
    """Every score computed, masked to the allowed cells, sorted: (scores, lat, lon) of the k best."""
    scores = queries @ x.astype(np.float16).astype(np.float32).T
    if allowed is not None:
        scores = np.where(np.stack([np.isin(cells, a) for a in allowed]), scores, -np.inf)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(scores, top, 1)
    return best, np.where(np.isfinite(best), lat[top], 0.0), np.where(np.isfinite(best), lon[top], 0.0)


@pytest.mark.parametrize("in_memory", [True, False])
def test_searches_equal_an_exhaustive_search(in_memory, monkeypatch):
    if not in_memory:
        monkeypatch.setattr(reference_index, "IN_MEMORY_BYTES", 0)
        monkeypatch.setattr(exact_index, "SCORE_BYTES", 0)  # blocks of 1,024 rows: several per global search
    x, lat, lon, cells = _references()
    queries = _references(n=5, seed=1)[0]
    allowed = [np.array([3]), np.array([0, 7, 39]), np.array([5, 5, 12]), np.array([1000]), np.arange(40)]
    with _build(x, lat, lon, cells) as index:
        assert (index.folder is None) == in_memory
        for cells_allowed in (allowed, None):
            ids, scores, got_lat, got_lon = index.search(queries, cells_allowed, k=10)
            best, want_lat, want_lon = _brute_force(x, lat, lon, cells, queries, cells_allowed, 10)
            np.testing.assert_allclose(scores, best, rtol=1e-5)
            np.testing.assert_allclose(got_lat, want_lat)
            np.testing.assert_allclose(got_lon, want_lon)
            assert ((ids >= 0) == np.isfinite(best)).all()
        folder = index.folder
    assert folder is None or not folder.exists()


def test_an_allowed_cell_with_fewer_references_than_k_is_padded():
    x, lat, lon, cells = _references(n=50, cells=20)
    with _build(x, lat, lon, cells) as index:
        ids, scores, _, _ = index.search(x[:1], [np.array([int(cells[0])])], k=10)
    inside = int((cells == cells[0]).sum())
    assert (ids[0, :inside] >= 0).all() and (ids[0, inside:] == -1).all()
    assert np.isneginf(scores[0, inside:]).all() and scores[0, 0] == pytest.approx(1.0, abs=1e-3)


def test_an_empty_index_finds_nothing():
    x, lat, lon, cells = _references(n=0)
    with _build(x, lat, lon, cells) as index:
        for allowed in ([np.array([1])], None):
            ids, scores, _, _ = index.search(np.ones((2, 16), np.float32), allowed, k=3)
            assert (ids == -1).all() and np.isneginf(scores).all()
