import csv
import json

import pytest

from locator.cli import main as geoloc
from tests.locator.located_world import build


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build(tmp_path_factory.mktemp("cli"))


def _query_manifest(world, path):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "photo_id", "owner", "lat", "lon"])
        for r in world["queries"]:
            writer.writerow([r.image, r.photo_id, r.owner, r.lat, r.lon])
        writer.writerow([str(path.parent / "gone.jpg"), "gone", "x", 1.0, 1.0])
    return path


def test_locate_writes_csv_geojson_and_map(world, tmp_path, capsys):
    queries = _query_manifest(world, tmp_path / "queries.csv")
    out = tmp_path / "p.csv"
    assert geoloc(["locate", str(queries), "--bundle", str(world["bundle_dir"]), "--store", world["store"],
                   "--out", str(out), "--map", str(tmp_path / "map.html"), "--title", "unit <test>"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(world["queries"]) + 1
    assert rows[-1]["ok"] == "0" and "gone.jpg" in rows[-1]["error"] and rows[-1]["lat"] == ""
    assert all(r["ok"] == "1" and r["cell_token"] and r["nearest_photo_id"] for r in rows[:-1])
    page = (tmp_path / "map.html").read_text()
    assert "unit &lt;test&gt;" in page and '"truth": [' in page and "leaflet" in page and "<svg" in page
    assert geoloc(["evaluate", "--predictions", str(out), "--truth", str(queries), "--json", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())["rows"][0]
    assert metrics["images"] == len(world["queries"]) + 1 and metrics["failed"] == 1

    geo = tmp_path / "p.geojson"
    assert geoloc(["locate", world["queries"][0].image, "--bundle", str(world["bundle_dir"]), "--store", world["store"],
                   "--out", str(geo), "--method", "classifier"]) == 0
    feature = json.loads(geo.read_text())["features"][0]
    assert feature["geometry"]["type"] == "Point" and feature["properties"]["method"] == "classifier"
    # A photo that cannot be read still gets its feature (no geometry, nulls), and the file stays valid JSON.
    assert geoloc(["locate", world["queries"][0].image, str(tmp_path / "gone.jpg"), "--bundle", str(world["bundle_dir"]),
                   "--store", world["store"], "--out", str(geo)]) == 0
    good, failed = json.loads(geo.read_text())["features"]
    assert good["geometry"]["type"] == "Point" and good["properties"]["neighbours"]
    assert failed["geometry"] is None and failed["properties"]["ok"] is False
    assert failed["properties"]["cell_probability"] is None and "gone.jpg" in failed["properties"]["error"]
    assert "locate: 1 photos" in capsys.readouterr().out


def test_evaluate_a_bundle_gives_every_row(world, tmp_path, capsys):
    queries = _query_manifest(world, tmp_path / "queries.csv")
    md = tmp_path / "eval.md"
    assert geoloc(["evaluate", "--bundle", str(world["bundle_dir"]), "--store", world["store"], "--benchmark",
                   str(queries), "--markdown", str(md), "--title", "# test"]) == 0
    text = md.read_text()
    for name in ("ce head alone", "mvmf head alone", "retrieval alone, RRM", "SwC, ce head (K=10, dbscan)",
                 "SwC, mvmf head (K=10, dbscan)", "K=10, average", "K=10, kde", "K=1, dbscan", "K=20, dbscan",
                 "top-3 cells"):
        assert name in text, name
    assert "1 could not be read" in text
    rows = json.loads(md.with_suffix(".json").read_text())["rows"]
    assert all(r["failed"] == 1 and r["images"] == len(world["queries"]) + 1 for r in rows)


def test_locate_without_store_is_a_clear_error(world, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GEOLOC_STORE", raising=False)
    assert geoloc(["locate", world["queries"][0].image, "--bundle", str(world["bundle_dir"]),
                   "--out", str(tmp_path / "p.csv")]) == 2
    assert "needs a store" in capsys.readouterr().err
    assert geoloc(["locate", world["queries"][0].image, "--bundle", str(tmp_path / "nothing"),
                   "--out", str(tmp_path / "p.csv")]) == 2
    assert "not a model bundle" in capsys.readouterr().err
    assert geoloc(["locate", world["queries"][0].image, "--bundle", str(world["bundle_dir"]), "--store",
                   f"edge:{tmp_path / 'typo'}", "--out", str(tmp_path / "p.csv")]) == 2
    assert "holds no collection" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()
