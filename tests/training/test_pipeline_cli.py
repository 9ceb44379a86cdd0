"""The training commands end to end on a tiny synthetic photo world."""

import csv

import numpy as np
import pytest

from locator.bundle import Bundle
from tests.photo_world import make_photo_world
from training.cli import main as geoloc_train


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    manifest = make_photo_world(root, photos_per_place=8)
    with manifest.open() as handle:
        rows = list(csv.DictReader(handle))
    coords = root / "coords.csv"
    coords.write_text("lat,lon\n" + "".join(f"{r['lat']},{r['lon']}\n" for r in rows))
    return root, manifest, coords


def test_bundle_features_heads_rrm_placeable(world, capsys):
    root, manifest, coords = world
    partitions = []
    for level, tau in enumerate((40, 16, 6)):
        partitions.append(str(root / f"cells{level}.csv"))
        assert geoloc_train(["partition", "--coords", str(coords), "--tau-max", str(tau), "--tau-min", "2",
                             "--out", partitions[-1]]) == 0
    bundle_dir, cache = root / "bundle", root / "cache"
    assert geoloc_train(["bundle", "--out", str(bundle_dir), "--partitions", *partitions, "--size", "64"]) == 0
    assert geoloc_train(["features", "--bundle", str(bundle_dir), "--data", str(manifest), "--out", str(cache)]) == 0
    for kind in ("ce", "hc", "mvmf"):
        assert geoloc_train(["head", "--bundle", str(bundle_dir), "--features", str(cache), "--kind", kind,
                             "--epochs", "60", "--lr", "0.01"]) == 0
    assert geoloc_train(["rrm", "--bundle", str(bundle_dir), "--features", str(cache), "--steps", "20",
                         "--hidden-dim", "64", "--eval-every", "10"]) == 0
    out = root / "placeable.csv"
    assert geoloc_train(["placeable", "--bundle", str(bundle_dir), "--features", str(cache), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "head hc:" in printed and "rrm (infonce):" in printed and "placeable:" in printed
    bundle = Bundle.load(bundle_dir)
    assert set(bundle.heads) == {"ce", "hc", "mvmf"} and bundle.rrm is not None
    assert bundle.config["training"]["placeable"]["of"] == 48
    with out.open() as handle:
        placed = list(csv.DictReader(handle))
    assert 0 < len(placed) <= 48
    lat = np.array([float(p["lat"]) for p in placed])
    lon = np.array([float(p["lon"]) for p in placed])
    assert np.array_equal(bundle.partitions[-1].lookup(lat, lon), np.array([int(p["cell"]) for p in placed]))
    assert (bundle_dir / "logs" / "head_mvmf.csv").read_text().startswith(
        "epoch,loss,val_loss,val_cell_accuracy,val_acc_25km,val_acc_750km\n1,")
    assert "rrm: the collection embeds" in printed and bundle.retrieval_space in ("rrm", "raw")
    assert bundle.config["rrm"]["training"]["precision_at_10"]["raw"] >= 0


def test_features_from_another_backbone_are_refused(world, tmp_path, capsys):
    root, manifest, coords = world
    cells = tmp_path / "cells.csv"
    geoloc_train(["partition", "--coords", str(coords), "--tau-max", "10", "--out", str(cells)])
    geoloc_train(["bundle", "--out", str(tmp_path / "a"), "--partitions", str(cells), "--size", "64"])
    geoloc_train(["bundle", "--out", str(tmp_path / "b"), "--partitions", str(cells), "--size", "80", "--full-decode"])
    assert Bundle.load(tmp_path / "a").backbone.preprocessing.draft_to is not None
    assert Bundle.load(tmp_path / "b").backbone.preprocessing.draft_to is None
    geoloc_train(["features", "--bundle", str(tmp_path / "a"), "--data", str(manifest), "--out", str(tmp_path / "fa")])
    capsys.readouterr()
    assert geoloc_train(["head", "--bundle", str(tmp_path / "b"), "--features", str(tmp_path / "fa"), "--kind", "ce"]) == 2
    assert "features were made with another backbone" in capsys.readouterr().err


def test_backbone_smoke_finetune_changes_weights(world, tmp_path):
    root, manifest, coords = world
    cells = tmp_path / "cells.csv"
    geoloc_train(["partition", "--coords", str(coords), "--tau-max", "10", "--tau-min", "2", "--out", str(cells)])
    geoloc_train(["bundle", "--out", str(tmp_path / "b"), "--partitions", str(cells), "--size", "64"])
    before = Bundle.load(tmp_path / "b").config["files"]["backbone.safetensors"]
    assert geoloc_train(["backbone", "--bundle", str(tmp_path / "b"), "--data", str(manifest), "--max-steps", "2",
                         "--batch-size", "8", "--image-size", "64", "--workers", "0"]) == 0
    bundle = Bundle.load(tmp_path / "b")
    assert bundle.config["files"]["backbone.safetensors"] != before
    assert bundle.config["backbone"]["weights_source"] == "fine-tuned from imagenet"
    assert "ce" in bundle.heads
    losses = (tmp_path / "b" / "logs" / "backbone.csv").read_text().splitlines()[1:]
    assert len(losses) == 1 and np.isfinite(float(losses[0].split(",")[1]))


def test_features_from_mp16_shards_equal_those_from_the_files(world, tmp_path, capsys):
    """The same photos as shard records (with one record the metadata lacks and one that is not an image) give
    the same cached features as from their files."""
    root, manifest, coords = world
    from locator.datasets import read_manifest
    from locator.feature_cache import FeatureCache
    from locator.shards import write_shard
    records = read_manifest(manifest)
    geoloc_train(["partition", "--coords", str(coords), "--tau-max", "10", "--out", str(tmp_path / "cells.csv")])
    geoloc_train(["bundle", "--out", str(tmp_path / "b"), "--partitions", str(tmp_path / "cells.csv"), "--size", "64"])
    shards = [tmp_path / "a.msg", tmp_path / "b.msg"]
    write_shard(shards[0], [(r.photo_id, open(r.image, "rb").read()) for r in records[:20]] + [("orphan", b"x")])
    write_shard(shards[1], [(r.photo_id, open(r.image, "rb").read()) for r in records[20:]] + [("broken", b"nope")])
    metadata = tmp_path / "mp16.csv"
    metadata.write_text("IMG_ID,AUTHOR,LAT,LON\n" + "".join(f"{r.photo_id},{r.owner},{r.lat},{r.lon}\n" for r in records)
                        + "broken,someone,10.0,20.0\n")
    common = ["features", "--bundle", str(tmp_path / "b"), "--dtype", "float32"]
    assert geoloc_train([*common, "--data", str(manifest), "--out", str(tmp_path / "files")]) == 0
    assert geoloc_train([*common, "--mp16-shards", *map(str, shards), "--mp16-metadata", str(metadata),
                         "--out", str(tmp_path / "shards")]) == 0
    assert "1 shard records are not in" in capsys.readouterr().out
    files, sharded = FeatureCache.open(tmp_path / "files"), FeatureCache.open(tmp_path / "shards")
    by_id = {r.photo_id: k for k, r in enumerate(files.records)}
    rows = [k for k, r in enumerate(sharded.records) if r.photo_id != "broken"]
    assert len(rows) == len(records) and sharded.records[rows[0]].image == f"{shards[0]}#{records[0].photo_id}"
    assert not sharded.done[[k for k, r in enumerate(sharded.records) if r.photo_id == "broken"]].any()
    assert sharded.done[rows].all()
    expected = files.as_float32(np.array([by_id[sharded.records[k].photo_id] for k in rows]))
    np.testing.assert_allclose(sharded.as_float32(np.array(rows)), expected, atol=1e-5)
    assert geoloc_train([*common, "--mp16-shards", str(shards[0]), "--out", str(tmp_path / "x")]) == 2
    assert "--mp16-metadata" in capsys.readouterr().err
