import numpy as np

import locator.exact_index as exact_index
from locator.exact_index import ExactIndex
from locator.feature_cache import DONE
from training.features import create_array_cache


def _cache(tmp_path, n=2500, dim=12):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, dim)).astype(np.float16)
    lat, lon = rng.uniform(-80, 80, n), rng.uniform(-180, 180, n)
    create_array_cache(tmp_path / "cache", [x[:1000], x[1000:]], n, dim, lat, lon, np.arange(n), {"backbone": "test"})
    status = np.load(tmp_path / "cache" / "status.npy")
    status[::7] = DONE + 1  # some rows never finished: never found
    np.save(tmp_path / "cache" / "status.npy", status)
    return x, lat, lon, status == DONE


def test_streamed_search_equals_an_exhaustive_search_over_finished_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(exact_index, "SCORE_BYTES", 0)  # blocks of 1,024 rows
    x, lat, lon, done = _cache(tmp_path)
    queries = np.random.default_rng(1).normal(size=(6, x.shape[1]))
    hits = ExactIndex.from_feature_cache(tmp_path / "cache").search(queries, k=8)
    unit = x.astype(np.float32) / np.linalg.norm(x.astype(np.float32), axis=1, keepdims=True)
    scores = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    scores[:, ~done] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :8]
    np.testing.assert_array_equal(hits.ids, top)
    np.testing.assert_allclose(hits.scores, np.take_along_axis(scores, top, 1), rtol=1e-5)
    np.testing.assert_allclose(hits.lat, lat[top])
    np.testing.assert_allclose(hits.lon, lon[top])


def test_fewer_rows_than_k_are_padded_and_payloads_name_the_rows(tmp_path):
    x, lat, lon, done = _cache(tmp_path, n=10)
    index = ExactIndex.from_feature_cache(tmp_path / "cache")
    hits = index.search(x[:1].astype(np.float32), k=12)
    assert (hits.ids[0, :done.sum()] >= 0).all() and (hits.ids[0, done.sum():] == -1).all()
    assert np.isnan(hits.scores[0, done.sum():]).all()
    payload = index.payloads([int(hits.ids[0, 0])])[int(hits.ids[0, 0])]
    assert payload["photo_id"] == str(hits.ids[0, 0]) and payload["lat"] == lat[hits.ids[0, 0]]
