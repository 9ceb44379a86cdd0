"""The MP16 shard datasource yields exactly the records of the shards, joined with their metadata."""

import os

import numpy as np
import pytest
import ray

from ingest.rows import REMOVED, STORED, KnownIds
from ingest.shards import MP16ShardDatasource
from locator.shards import iter_shard_records, read_metadata, write_shard
from locator.store import point_id


@pytest.fixture(scope="module")
def ray_local():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, object_store_memory=256 * 2**20, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_shard_records_round_trip(tmp_path):
    records = [(f"id{k}", os.urandom(k * 7 + 1)) for k in range(50)]
    assert write_shard(tmp_path / "s.msg", records) == 50
    assert list(iter_shard_records(tmp_path / "s.msg")) == records


def test_datasource_yields_exactly_the_records_with_their_metadata(tmp_path, ray_local):
    rng = np.random.default_rng(0)
    written = {}
    paths = []
    for s in range(3):
        records = [(f"{s}/{k}.jpg", rng.bytes(int(rng.integers(10, 500)))) for k in range(int(rng.integers(100, 400)))]
        written.update(records)
        paths.append(tmp_path / f"shard{s}.msg")
        write_shard(paths[-1], records)
    ids = sorted(written)
    missing, invalid, stored, removed = ids[0], ids[1], ids[2], ids[3]
    lines = ["IMG_ID,AUTHOR,LAT,LON"] + [f"{i},owner{k % 7},{95.0 if i == invalid else (k % 170) - 85},{k % 360 - 180}"
                                         for k, i in enumerate(ids) if i != missing]
    (tmp_path / "meta.csv").write_text("\n".join(lines) + "\n")
    lookup = ray.put(read_metadata(str(tmp_path / "meta.csv")))
    known = ray.put(KnownIds(np.array([point_id("mp16", stored)], dtype=np.int64),
                             np.array(sorted([point_id("mp16", removed), point_id("mp16", stored)]), dtype=np.int64)))
    rows = ray.data.read_datasource(MP16ShardDatasource([str(p) for p in paths], lookup, known)).take_all()
    assert sorted(r["photo_id"] for r in rows) == ids and len(rows) == len(written)
    by_id = {r["photo_id"]: r for r in rows}
    assert by_id[missing]["status"].startswith("no metadata") and by_id[invalid]["status"].startswith("invalid")
    assert by_id[stored]["status"] == STORED and by_id[stored]["data"] == b""  # removed once, but added again since
    assert by_id[removed]["status"] == REMOVED and by_id[removed]["data"] == b""
    for k, i in enumerate(ids):
        if i in (missing, invalid, stored, removed):
            continue
        row = by_id[i]
        assert row["status"] == "" and row["data"] == written[i] and row["owner"] == f"owner{k % 7}"
        assert (row["lat"], row["lon"]) == ((k % 170) - 85, k % 360 - 180) and row["image"].endswith(f".msg#{i}")
