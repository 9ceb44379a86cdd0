"""One contract for every store backend: Qdrant Edge, the server API double, and a real server if QDRANT_URL is set."""

import os
import uuid

import numpy as np
import pytest

from locator.store import CollectionSpec, StoreError, open_store, point_id

DIM, LEVELS, CELLS = 32, 2, 24


def _locations(tmp_path):
    yield "edge", f"edge:{tmp_path / 'store'}"
    yield "memory", "memory"
    if os.environ.get("QDRANT_URL"):
        yield "server", f"{os.environ['QDRANT_URL'].rstrip('/')}/test_{uuid.uuid4().hex[:8]}"


BACKENDS = ["edge", "memory", "server"]


@pytest.fixture(params=BACKENDS)
def location(request, tmp_path):
    found = dict(_locations(tmp_path))
    if request.param not in found:
        pytest.skip("QDRANT_URL is not set: no Qdrant server to test against")
    yield found[request.param]
    if request.param == "server":
        from qdrant_client import QdrantClient
        url = found["server"]
        client = QdrantClient(url=url.rsplit("/", 1)[0])
        for name in (url.rsplit("/", 1)[1], url.rsplit("/", 1)[1] + "-removed"):  # the collection and its ledger
            client.delete_collection(name)


SPEC = CollectionSpec(vector_size=DIM, levels=LEVELS, fingerprint="f" * 64)


def clustered_points(n: int = 1500, seed: int = 0):
    """Unit vectors clustered by fine cell (so within-cell ranking is non-trivial); coarse cell = fine // 4."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CELLS, DIM))
    fine = rng.integers(0, CELLS, n)
    vectors = centres[fine] + 0.8 * rng.normal(size=(n, DIM))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [point_id("test", f"photo{k}") for k in range(n)]
    payloads = [{"cell_0": int(f // 4), "cell_1": int(f), "s2_0": "89c", "s2_1": "89c4", "lat": float(rng.uniform(-60, 60)),
                 "lon": float(rng.uniform(-180, 180)), "photo_id": f"photo{k}", "owner": "o", "source": "test",
                 "image": f"/img/{k}.jpg", "ingest_time": "2026-11-25T00:00:00Z"} for k, f in enumerate(fine)]
    return np.array(ids), vectors.astype(np.float32), payloads, fine, rng


def numpy_top_k(vectors, ids, allowed, query, k):
    """Exact reference: dot products over the allowed points, highest first."""
    candidates = np.flatnonzero(allowed)
    scores = vectors[candidates] @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return ids[candidates[order]]


def test_top_k_equals_numpy_reference_single_and_multi_cell(location):
    ids, vectors, payloads, fine, rng = clustered_points()
    with open_store(location, SPEC) as store:
        for start in range(0, len(ids), 500):
            store.upsert(ids[start:start + 500], vectors[start:start + 500], payloads[start:start + 500])
        assert store.count() == len(ids)
        queries = vectors[rng.integers(0, len(ids), 30)] + 0.3 * rng.normal(size=(30, DIM)).astype(np.float32)
        single = [int(c) for c in rng.integers(0, CELLS, 30)]
        multi = [[int(c) for c in rng.choice(CELLS, 3, replace=False)] for _ in range(30)]
        hits = store.search(queries, single, k=10)
        multi_hits = store.search(queries, multi, k=10)
        coarse_hits = store.search(queries, [c // 4 for c in single], k=7, level=0)
        for q in range(30):
            assert hits.ids[q].tolist() == numpy_top_k(vectors, ids, fine == single[q], queries[q], 10).tolist()
            assert multi_hits.ids[q].tolist() == numpy_top_k(vectors, ids, np.isin(fine, multi[q]), queries[q], 10).tolist()
            assert coarse_hits.ids[q].tolist() == numpy_top_k(vectors, ids, fine // 4 == single[q] // 4, queries[q], 7).tolist()
        by_id = {int(i): p for i, p in zip(ids, payloads)}
        assert all(by_id[int(i)]["lat"] == pytest.approx(lat) for i, lat in zip(hits.ids[0], hits.lat[0]))
        row_of = {int(i): r for r, i in enumerate(ids)}
        assert np.allclose(hits.scores[0], [vectors[row_of[int(i)]] @ queries[0] for i in hits.ids[0]], atol=1e-5)
        unfiltered = store.search(queries[:3], None, k=5, exact=True)
        for q in range(3):
            assert unfiltered.ids[q].tolist() == numpy_top_k(vectors, ids, np.ones(len(ids), bool), queries[q], 5).tolist()


def test_sparse_cells_pad_and_empty_cells_return_nothing(location):
    ids, vectors, payloads, fine, _ = clustered_points(200)
    with open_store(location, SPEC) as store:
        store.upsert(ids, vectors, payloads)
        few = int(np.argmin(np.bincount(fine, minlength=CELLS)))
        hits = store.search(vectors[:2], [few, 999], k=50)
        assert hits.counts().tolist() == [int((fine == few).sum()), 0]
        assert (hits.ids[1] == -1).all() and np.isnan(hits.lat[1]).all()


def test_reingest_overwrites_never_duplicates(location):
    ids, vectors, payloads, _, _ = clustered_points(100)
    with open_store(location, SPEC) as store:
        store.upsert(ids, vectors, payloads)
        moved = [dict(p, lat=1.5) for p in payloads[:10]]
        store.upsert(ids[:10], vectors[:10], moved)
        assert store.count() == 100
        assert len(set(store.all_ids().tolist())) == 100
        assert store.payloads([ids[0]])[int(ids[0])]["lat"] == 1.5
        stored = store.vectors(ids[:3])
        assert all(np.max(np.abs(stored[int(i)] - v)) <= 1e-6 for i, v in zip(ids[:3], vectors[:3]))


def test_removed_points_are_gone_from_search_counts_and_ids_and_stay_gone(location, monkeypatch):
    import locator.store.base
    monkeypatch.setattr(locator.store.base, "REMOVE_CHUNK", 3)  # several requests, and absent ids among them
    ids, vectors, payloads, fine, rng = clustered_points(300)
    for p in payloads[:40]:
        p["source"] = "analyst"
    with open_store(location, SPEC) as store:
        store.upsert(ids, vectors, payloads)
        gone = [int(i) for i in ids[5:15]]
        removed = store.remove([*gone, point_id("test", "never added")])
        assert sorted(removed) == sorted(gone)
        assert store.remove(gone) == []
        assert store.count() == 290
        assert set(store.all_ids().tolist()) == set(ids.tolist()) - set(gone)
        assert set(store.all_ids(source="analyst").tolist()) == set(ids[:40].tolist()) - set(gone)
        assert store.counts_by("source") == {"analyst": 30, "test": 260}
        kept = np.ones(len(ids), bool)
        kept[5:15] = False
        queries = vectors[5:15]
        cells = [int(f) for f in fine[5:15]]
        within, everywhere = store.search(queries, cells, k=5), store.search(queries, None, k=5, exact=True)
        for q in range(len(queries)):
            expected = numpy_top_k(vectors, ids, kept & (fine == cells[q]), queries[q], 5).tolist()
            assert within.ids[q].tolist() == expected + [-1] * (5 - len(expected))  # a cell may hold fewer than 5
            assert everywhere.ids[q].tolist() == numpy_top_k(vectors, ids, kept, queries[q], 5).tolist()
        assert len(store.remove(store.all_ids(source="analyst"))) == 30
        assert store.counts_by("source") == {"test": 260}  # not listed with a count of 0
    if location.startswith("edge:"):
        with open_store(location, SPEC, create=False) as store:
            assert store.count() == 260 and not store.payloads(gone)


def test_removals_are_kept_in_a_ledger_that_outlives_the_store_handle(location):
    ids, vectors, payloads, _, _ = clustered_points(50)
    with open_store(location, SPEC) as store:
        assert store.removals() == [] and store.removed_ids().tolist() == []
        store.upsert(ids, vectors, payloads)
        store.remove([int(ids[3]), int(ids[1]), point_id("test", "never added")])
        store.upsert(ids[1:2], vectors[1:2], payloads[1:2])  # added again: in the collection, and still in the ledger
        store.remove([int(ids[1])])
        ledger = store.removals()
        assert sorted({(r.id, r.source, r.photo_id) for r in ledger}) == sorted(
            {(int(ids[k]), "test", f"photo{k}") for k in (1, 3)})
        assert all(r.removed_at.endswith("+00:00") for r in ledger)
        assert store.removed_ids().tolist() == sorted([int(ids[1]), int(ids[3])])
        assert store.count() == 48
    if location.startswith("edge:"):  # the memory double lives no longer than its handle
        with open_store(location, SPEC, create=False) as store:
            assert store.removed_ids().tolist() == sorted([int(ids[1]), int(ids[3])])
            with (store.path / "removed.jsonl").open("a") as ledger:
                ledger.write('{"id": 5, "source": "te')  # a crash while recording: that removal never happened
            assert store.removed_ids().tolist() == sorted([int(ids[1]), int(ids[3])])
            store.remove([int(ids[5])])
            assert int(ids[5]) in store.removed_ids().tolist() and store.count() == 47


def test_payload_is_complete_for_the_dashboard(location):
    ids, vectors, payloads, _, _ = clustered_points(5)
    with open_store(location, SPEC) as store:
        store.upsert(ids, vectors, payloads)
        stored = store.payloads([ids[0]])[int(ids[0])]
        assert {k: v for k, v in stored.items() if k not in ("lat", "lon")} == \
            {k: v for k, v in payloads[0].items() if k not in ("lat", "lon")}
        assert (stored["lat"], stored["lon"]) == pytest.approx((payloads[0]["lat"], payloads[0]["lon"]), abs=1e-12)
        assert isinstance(stored["cell_1"], int)


def test_cell_ids_must_be_integers(location):
    ids, vectors, payloads, fine, _ = clustered_points(50)
    with open_store(location, SPEC) as store:
        store.upsert(ids, vectors, payloads)
        with pytest.raises(TypeError, match="cell ids must be integers.*silently match nothing"):
            store.search(vectors[:1], [str(int(fine[0]))], k=5)
        with pytest.raises(StoreError, match="cell_1 must be an integer, got '3'"):
            store.upsert(ids[:1], vectors[:1], [dict(payloads[0], cell_1="3")])
        assert store.search(vectors[:1], [np.int64(fine[0])], k=1).counts()[0] == 1


def test_bad_batches_are_refused_whole_and_lose_nothing(location):
    ids, vectors, payloads, _, _ = clustered_points(20)
    with open_store(location, SPEC) as store:
        store.upsert(ids[:10], vectors[:10], payloads[:10])
        bad_vectors = vectors[10:].copy()
        bad_vectors[5, 0] = np.nan
        with pytest.raises(StoreError, match="is not finite"):
            store.upsert(ids[10:], bad_vectors, payloads[10:])
        with pytest.raises(StoreError, match="norm"):
            store.upsert(ids[10:], vectors[10:] * 2, payloads[10:])
        with pytest.raises(StoreError, match="shape"):
            store.upsert(ids[10:], vectors[10:, :5], payloads[10:])
        with pytest.raises(StoreError, match="invalid coordinate"):
            store.upsert(ids[10:], vectors[10:], [dict(p, lat=123.0) for p in payloads[10:]])
        assert store.count() == 10


def test_another_bundle_cannot_open_the_collection(location):
    ids, vectors, payloads, _, _ = clustered_points(5)
    store = open_store(location, SPEC)
    store.upsert(ids, vectors, payloads)
    store.flush()
    if location == "memory":
        store.close()
        pytest.skip("the in-memory double does not outlive its client")
    store.close()
    with pytest.raises(StoreError, match="another bundle"):
        open_store(location, CollectionSpec(DIM, LEVELS, "e" * 64))
    with open_store(location, SPEC) as again:
        assert again.count() == 5


def test_point_ids_are_deterministic_and_distinct():
    assert point_id("im2gps2k", "123") == point_id("im2gps2k", "123")
    assert point_id("im2gps2k", "123") != point_id("extra", "123")
    assert 0 <= point_id("a", "b") < 2 ** 63


def test_edge_store_refuses_foreign_folders_and_concurrent_writers(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not empty and holds no geoloc collection"):
        open_store(f"edge:{tmp_path / 'other'}", SPEC)
    with open_store(f"edge:{tmp_path / 's'}", SPEC):
        with pytest.raises(StoreError, match="another process writing"):
            open_store(f"edge:{tmp_path / 's'}", SPEC)


def test_unknown_location_and_missing_setting(monkeypatch):
    with pytest.raises(StoreError, match="unknown store location 'ftp://x'"):
        open_store("ftp://x", SPEC)
    with pytest.raises(StoreError, match="'edge' names no folder"):
        open_store("edge", SPEC)
    with pytest.raises(StoreError, match="'http:x' names no server"):
        open_store("http:x", SPEC)
    monkeypatch.setenv("GEOLOC_STORE", "edge:/nowhere")  # only the CLIs read the environment
    with pytest.raises(StoreError, match="no store given"):
        open_store(None, SPEC)


def test_opening_without_create_requires_an_existing_collection(location):
    with pytest.raises(StoreError, match="no collection"):
        open_store(location, SPEC, create=False)
    ids, vectors, payloads, _, _ = clustered_points(3)
    with open_store(location, SPEC) as store:
        store.upsert(ids, vectors, payloads)
        if location == "memory":
            return  # the in-memory double lives only as long as its client
    with open_store(location, SPEC, create=False) as again:
        assert again.count() == 3


def test_locations_open_through_the_store_registry(tmp_path):
    from locator.store import STORES
    from locator.store.edge import EdgeStore
    assert set(STORES.names()) == {"edge", "memory", "http", "https"}
    with open_store("memory:mine", SPEC) as store:
        assert store.collection == "mine"
    with open_store(f"edge:{tmp_path / 'e'}", SPEC) as store:
        assert isinstance(store, EdgeStore)


def test_counts_by_source_and_cell_come_from_the_index(location):
    ids, vectors, payloads, fine, _ = clustered_points(300)
    payloads = [dict(p, source="street" if k % 3 else "flickr") for k, p in enumerate(payloads)]
    with open_store(location, SPEC) as store:
        store.upsert(ids, vectors, payloads)
        store.upsert(ids[:5], vectors[:5], payloads[:5])  # a repeated write counts once
        assert store.counts_by("source") == {"flickr": 100, "street": 200}
        assert store.counts_by("cell_1") == {int(c): int((fine == c).sum()) for c in np.unique(fine)}


def test_edge_global_search_through_its_graph_keeps_within_cell_search_exact(tmp_path):
    """Past Qdrant's full-scan threshold, optimize() builds the HNSW graph over int8 vectors that global queries
    use; within-cell queries still score the float vectors exactly, even in cells big enough for the graph."""
    dim, places, per_place = 512, 1200, 10  # 24 MB of vectors in 2 cells of 6,000: both past the 10 MB threshold
    rng = np.random.default_rng(3)
    place = np.repeat(np.arange(places), per_place)
    vectors = (rng.normal(size=(places, dim))[place] + 0.3 * rng.normal(size=(len(place), dim))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    n, cell = len(place), place % 2
    ids = np.array([point_id("graph", f"p{k}") for k in range(n)])
    payloads = [{"cell_0": int(c), "lat": 0.0, "lon": 0.0, "photo_id": f"p{k}", "source": "test"}
                for k, c in enumerate(cell)]
    with open_store(f"edge:{tmp_path / 'store'}", CollectionSpec(dim, 1, "g" * 64)) as store:
        for start in range(0, n, 1000):
            store.upsert(ids[start:start + 1000], vectors[start:start + 1000], payloads[start:start + 1000])
        store.optimize()
        assert store.shard.info().indexed_vectors_count == n
        picked = rng.integers(0, n, 40)
        queries = vectors[picked] + 0.01 * rng.normal(size=(40, dim)).astype(np.float32)
        approx = store.search(queries, None, k=per_place)
        far = rng.normal(size=(40, dim)).astype(np.float32)  # queries like no place: near ties an ANN would miss
        within = store.search(far, [int(c) for c in cell[picked]], k=10)
        everything = np.ones(n, bool)
        recall = np.mean([len(set(approx.ids[q]) & set(numpy_top_k(vectors, ids, everything, queries[q], per_place)))
                          / per_place for q in range(40)])
        assert recall >= 0.95  # a place's photos, as near-duplicates are: the graph finds them
        for q in range(40):
            assert within.ids[q].tolist() == numpy_top_k(vectors, ids, cell == cell[picked[q]], far[q], 10).tolist()


def test_a_new_server_collection_does_not_inherit_the_ledger_of_a_deleted_one():
    from qdrant_client import QdrantClient

    from locator.store.server import ServerStore
    ids, vectors, payloads, _, _ = clustered_points(20)
    client = QdrantClient(":memory:")
    store = ServerStore(client, "photos", SPEC, "memory:photos")
    store.upsert(ids, vectors, payloads)
    store.remove([int(ids[0])])
    assert ServerStore(client, "photos", SPEC, "memory:photos").removed_ids().tolist() == [int(ids[0])]  # reopened
    client.delete_collection("photos")  # say, to build it again for another bundle
    assert ServerStore(client, "photos", SPEC, "memory:photos").removed_ids().tolist() == []

