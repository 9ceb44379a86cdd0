import pytest

from ingest.sources import list_rows
from locator.errors import SettingsError
from locator.shards import write_shard


def test_list_rows_reads_shard_photos_with_their_metadata(tmp_path):
    shard = tmp_path / "s.msg"
    write_shard(shard, [("a.jpg", b"\xff\xd8one"), ("lost.jpg", b"\xff\xd8two"), ("b.jpg", b"\xff\xd8three")])
    meta = tmp_path / "meta.csv"
    meta.write_text("IMG_ID,AUTHOR,LAT,LON\na.jpg,u1,10,20\nb.jpg,u2,-30,40\n")
    rows = list_rows(mp16_shards=[shard], mp16_metadata=meta)
    assert [(r["photo_id"], r["owner"], r["lat"], r["lon"], r["data"]) for r in rows] == [
        ("a.jpg", "u1", 10.0, 20.0, b"\xff\xd8one"), ("b.jpg", "u2", -30.0, 40.0, b"\xff\xd8three")]
    assert rows[0]["image"] == f"{shard}#a.jpg" and all(r["status"] == "" for r in rows)
    with pytest.raises(SettingsError, match="metadata"):
        list_rows(mp16_shards=[shard])
