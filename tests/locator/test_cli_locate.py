import csv
import json

import pytest

from locator.api import Locator
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
    assert "unit &lt;test&gt;" in page and '"truth": [' in page and "estimate-marker" in page
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
    assert "geoloc locate: 1 of 2 photo(s) located" in capsys.readouterr().err


def test_evaluate_a_bundle_gives_every_row(world, tmp_path, capsys):
    queries = _query_manifest(world, tmp_path / "queries.csv")
    md = tmp_path / "eval.md"
    assert geoloc(["evaluate", "--bundle", str(world["bundle_dir"]), "--store", world["store"], "--benchmark",
                   str(queries), "--markdown", str(md), "--title", "# test"]) == 0
    text = md.read_text()
    for name in ("fused: SwC + retrieval", "ce head alone", "mvmf head alone", "retrieval alone, stored RRM",
                 "SwC, ce head (K=10, dbscan)",
                 "SwC, mvmf head (K=10, dbscan)", "K=10, average", "K=10, kde", "K=1, dbscan", "K=20, dbscan",
                 "top-3 cells"):
        assert name in text, name
    assert "1 could not be read" in text
    body = json.loads(md.with_suffix(".json").read_text())
    rows = body["rows"]
    assert all(r["failed"] == 1 and r["images"] == len(world["queries"]) + 1 for r in rows)
    accuracy = {r["name"].split(" (")[0].split(":")[0]: r["accuracy"] for r in rows}
    for d in body["fused_vs_best_rival"]:  # the observed differences are those of the rows above
        label = f"{d['threshold_km']:g} km"
        rivals = {"swc": accuracy["SwC, ce head"][label],
                  "retrieval": accuracy["retrieval alone, stored RRM embeddings"][label]}
        assert d["observed"] == pytest.approx(accuracy["fused"][label] - max(rivals.values()))
        assert d["low"] <= d["observed"] <= d["high"] and rivals[d["best_rival"]] == max(rivals.values())
    assert "Fused against the better of the methods `swc` and `retrieval`" in text


def test_locate_without_store_is_a_clear_error(world, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GEOLOC_STORE", raising=False)
    monkeypatch.setattr(Locator, "load", _no_work)
    assert geoloc(["locate", world["queries"][0].image, "--bundle", str(world["bundle_dir"]),
                   "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert "--method fused searches the reference collection: give --store" in err and "GEOLOC_STORE" in err
    assert "store='edge" not in err and "batch" not in err
    monkeypatch.undo()
    assert geoloc(["locate", world["queries"][0].image, "--bundle", str(tmp_path / "nothing"), "--method",
                   "classifier", "--out", str(tmp_path / "p.csv")]) == 2
    assert "not a model bundle" in capsys.readouterr().err
    assert geoloc(["locate", world["queries"][0].image, "--bundle", str(world["bundle_dir"]), "--store",
                   f"edge:{tmp_path / 'typo'}", "--out", str(tmp_path / "p.csv")]) == 2
    assert "holds no collection" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()


def _no_work(*args, **kwargs):
    raise AssertionError("the bundle was loaded before the options were checked")


def _locate(world, *extra):
    return geoloc(["locate", *extra, "--bundle", str(world["bundle_dir"]), "--store", world["store"]])


def test_no_photo_located_exits_non_zero_with_the_reasons(world, tmp_path, capsys):
    assert _locate(world, str(tmp_path / "nosuch.jpg"), "--out", str(tmp_path / "p.csv")) == 1
    err = capsys.readouterr().err
    assert "1 of 1 photo(s) could not be located" in err and "nosuch.jpg: cannot read file" in err
    assert "0 of 1 photo(s) located" in err


def test_some_failures_show_the_first_reasons_and_a_count(world, tmp_path, capsys):
    missing = [str(tmp_path / f"gone{k}.jpg") for k in range(7)]
    assert _locate(world, world["queries"][0].image, *missing, "--out", str(tmp_path / "p.csv")) == 0
    err = capsys.readouterr().err
    assert "7 of 8 photo(s) could not be located" in err
    assert sum(f"gone{k}.jpg: cannot read file" in err for k in range(7)) == 5
    assert "… and 2 more" in err


def test_without_out_the_results_go_to_stdout_and_no_file_is_written(world, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _locate(world, world["queries"][0].image, "--map", "map.html") == 0
    captured = capsys.readouterr()
    rows = list(csv.DictReader(captured.out.splitlines()))
    assert len(rows) == 1 and rows[0]["ok"] == "1" and rows[0]["image"] == world["queries"][0].image
    assert "-> stdout, map map.html" in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.html"]


def test_a_photos_exif_gps_claim_is_reported_beside_its_estimate(world, tmp_path, capsys):
    from PIL import Image

    from tests.photo_world import with_gps_exif
    tagged = tmp_path / "tagged.jpg"
    tagged.write_bytes(with_gps_exif(Image.open(world["queries"][0].image), 64.1466, -21.9426))
    assert _locate(world, str(tagged), world["queries"][0].image) == 0
    claimed, plain = csv.DictReader(capsys.readouterr().out.splitlines())
    assert (float(claimed["exif_lat"]), float(claimed["exif_lon"])) == pytest.approx((64.1466, -21.9426), abs=1e-6)
    assert float(claimed["exif_distance_km"]) > 0 and plain["exif_lat"] == plain["exif_distance_km"] == ""


@pytest.mark.parametrize("option, value, message", [
    ("--out", "x.txt", "--out x.txt: unknown file type '.txt'; use .csv or .geojson or .json"),
    ("--out", "noext", "--out noext: unknown file type '(no suffix)'"),
    ("--map", "m.png", "--map m.png: unknown file type '.png'"),
])
def test_unknown_output_suffixes_are_refused_before_any_work(world, tmp_path, capsys, monkeypatch, option, value,
                                                              message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Locator, "load", _no_work)
    assert _locate(world, world["queries"][0].image, option, value) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / value).exists()


def test_a_folder_without_images_is_named(world, tmp_path, capsys, monkeypatch):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no photos here")
    monkeypatch.setattr(Locator, "load", _no_work)
    assert _locate(world, str(tmp_path / "empty"), "--out", str(tmp_path / "p.csv")) == 2
    assert f"{tmp_path / 'empty'}: the folder holds no images" in capsys.readouterr().err


def test_only_geoloc_errors_become_messages(world, tmp_path, monkeypatch):
    def bug(*args, **kwargs):
        raise ValueError("an internal bug")
    monkeypatch.setattr(Locator, "locate", bug)
    with pytest.raises(ValueError, match="an internal bug"):
        _locate(world, world["queries"][0].image, "--out", str(tmp_path / "p.csv"))


def test_bad_option_values_are_one_line_errors(world, tmp_path, capsys):
    assert _locate(world, world["queries"][0].image, "--k", "0", "--out", str(tmp_path / "p.csv")) == 2
    assert "k must be at least 1, got 0" in capsys.readouterr().err


def test_the_cli_takes_the_store_from_the_environment_and_the_api_does_not(world, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOLOC_STORE", world["store"])
    out = tmp_path / "p.csv"
    assert geoloc(["locate", world["queries"][0].image, "--bundle", str(world["bundle_dir"]), "--out", str(out)]) == 0
    assert next(csv.DictReader(out.open()))["ok"] == "1"
    with Locator.load(world["bundle_dir"]) as locator:
        assert locator.store is None


def test_remove_takes_named_photos_out_all_or_nothing(world, tmp_path, capsys):
    import shutil

    from locator.bundle import Bundle
    from locator.store import open_store, point_id
    shutil.copytree(world["root"] / "store", tmp_path / "store")
    store = f"edge:{tmp_path / 'store'}"
    spec = Bundle.load(world["bundle_dir"]).collection_spec()
    first, second = world["background"][:2]
    common = ["remove", "--bundle", str(world["bundle_dir"]), "--store", store, "--source", first.source]
    assert geoloc([*common, "--photo-id", first.photo_id, "no-such-photo"]) == 2
    assert "no photo 'no-such-photo'" in capsys.readouterr().err
    with open_store(store, spec, create=False) as opened:
        assert opened.count() == len(world["background"])  # nothing removed
    assert geoloc(common) == 2 and "--photo-id, or give --all-of-source" in capsys.readouterr().err
    assert geoloc([*common, "--photo-id", first.photo_id, second.photo_id]) == 0
    assert f"removed 2 photo(s) of source {first.source!r}" in capsys.readouterr().out
    with open_store(store, spec, create=False) as opened:
        assert opened.count() == len(world["background"]) - 2
        assert not opened.payloads([point_id(first.source, first.photo_id), point_id(second.source, second.photo_id)])
    assert geoloc([*common, "--all-of-source"]) == 0
    with open_store(store, spec, create=False) as opened:
        assert opened.count() == sum(r.source != first.source for r in world["background"])
    assert geoloc([*common, "--all-of-source"]) == 2 and "holds no photos of source" in capsys.readouterr().err
