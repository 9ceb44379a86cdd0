import io

import msgpack
import numpy as np
import pytest
from PIL import Image

from locator.datasets import DatasetError
from locator.shards import index_shards, iter_shard_records, read_shard_record, shard_records, write_shard


def _jpeg(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (shade, 120, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


def _metadata(path, rows):
    path.write_text("IMG_ID,AUTHOR,LAT,LON\n" + "".join(f"{i},{o},{lat},{lon}\n" for i, o, lat, lon in rows))
    return path


def test_shard_records_join_the_metadata_and_count_the_rest(tmp_path):
    shard = tmp_path / "shard_0.msg"
    write_shard(shard, [("a/1.jpg", _jpeg(1)), ("b/2.jpg", _jpeg(2)), ("c/unknown.jpg", _jpeg(3))])
    meta = _metadata(tmp_path / "mp16.csv", [("a/1.jpg", "u1", 1, 2), ("b/2.jpg", "u2", -3, 4)])
    records, places, missing = shard_records([shard], meta)
    assert [(r.photo_id, r.owner, r.lat, r.lon, r.source) for r in records] == [
        ("a/1.jpg", "u1", 1.0, 2.0, "mp16"), ("b/2.jpg", "u2", -3.0, 4.0, "mp16")]
    assert records[0].image == places[0].location == f"{shard}#a/1.jpg"
    assert places[1].read() == _jpeg(2) and missing == 1


def test_the_index_matches_a_streamed_read_of_every_shard(tmp_path):
    rng = np.random.default_rng(0)
    shards, rows, streamed = [], [], []
    for s in range(3):
        records = [(f"s{s}/{k}.jpg", _jpeg(int(rng.integers(0, 255)))) for k in range(int(rng.integers(0, 6)))]
        shards.append(tmp_path / f"shard{s}.msg")
        write_shard(shards[-1], records)
        rows += [(i, f"o{k % 2}", float(k), float(-k)) for k, (i, _) in enumerate(records) if k % 3 != 1]
    for path in shards:  # the oracle: msgpack's streaming reader over each whole shard
        streamed += [(str(path), i, data) for i, data in iter_shard_records(path)]
    located = {r[0] for r in rows}
    index = index_shards(shards, _metadata(tmp_path / "meta.csv", rows))
    expected = [(p, i, data) for p, i, data in streamed if i in located]
    assert len(index) == len(expected) and index.missing == len(streamed) - len(expected)
    for k, (path, photo_id, data) in enumerate(expected):
        place = index.place(k)
        assert (place.path, place.photo_id) == (path, photo_id)
        assert read_shard_record(place.path, place.offset, place.length) == (photo_id, data)
        assert (index.lat[k], index.lon[k]) == next((lat, lon) for i, _, lat, lon in rows if i == photo_id)


def test_no_shards_give_an_empty_index(tmp_path):
    index = index_shards([], _metadata(tmp_path / "meta.csv", [("a", "o", 1, 2)]))
    assert len(index) == 0 and index.missing == 0


def test_a_corrupt_shard_is_a_clear_error(tmp_path):
    shard = tmp_path / "bad.msg"
    shard.write_bytes(msgpack.packb([1, 2, 3]))
    with pytest.raises(DatasetError, match="bad.msg: record 0"):
        shard_records([shard], _metadata(tmp_path / "mp16.csv", []))


def test_records_without_valid_coordinates_are_left_out_and_counted(tmp_path):
    shard = tmp_path / "s.msg"
    write_shard(shard, [("a.jpg", _jpeg(1)), ("b.jpg", _jpeg(2)), ("c.jpg", _jpeg(3))])
    meta = tmp_path / "meta.csv"
    meta.write_text("IMG_ID,AUTHOR,LAT,LON\na.jpg,u,91,0\nb.jpg,u,10,20\nc.jpg,u,,20\n")
    records, _, missing = shard_records([shard], meta)
    assert [r.photo_id for r in records] == ["b.jpg"] and missing == 2


def test_metadata_that_is_not_numbers_is_one_clear_error(tmp_path):
    meta = tmp_path / "meta.csv"
    meta.write_text("IMG_ID,AUTHOR,LAT,LON\na.jpg,u,north,20\n")
    with pytest.raises(DatasetError, match="meta.csv: column LAT holds values that are not numbers"):
        index_shards([], meta)


def test_metadata_ids_and_owners_are_trimmed(tmp_path):
    shard = tmp_path / "s.msg"
    write_shard(shard, [("a.jpg", _jpeg(1))])
    records, _, _ = shard_records([shard], _metadata(tmp_path / "meta.csv", [(" a.jpg ", " u1 ", 1, 2)]))
    assert [(r.photo_id, r.owner) for r in records] == [("a.jpg", "u1")]
