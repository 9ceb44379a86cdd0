"""`geoloc-train fusion --store`: the refit on a grown collection, through the CLI."""

import csv
import dataclasses
import shutil

from locator.bundle import Bundle
from locator.datasets import read_manifest
from locator.encoder import PhotoEncoder
from locator.store import PhotoPoint, open_store
from tests.locator.located_world import build
from tests.photo_world import make_photo_world
from training.cli import main as geoloc_train


def _write_manifest(path, records):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "photo_id", "owner", "source", "lat", "lon"])
        writer.writerows([r.image, r.photo_id, r.owner, r.source, r.lat, r.lon] for r in records)
    return path


def test_a_refit_records_every_source_the_collection_holds_located_or_not(tmp_path, capsys):
    world = build(tmp_path / "world")
    shutil.copytree(world["bundle_dir"], tmp_path / "bundle")
    shutil.copytree(world["root"] / "store", tmp_path / "store")
    cache = tmp_path / "features"
    assert geoloc_train(["features", "--bundle", str(tmp_path / "bundle"), "--data",
                         str(_write_manifest(tmp_path / "train.csv", world["background"])), "--out", str(cache)]) == 0
    added = read_manifest(make_photo_world(tmp_path / "added", photos_per_place=8, seed=5,
                                           places=[(-1.29, 36.82), (64.14, -21.94), (-41.29, 174.78)]))
    bundle = Bundle.load(tmp_path / "bundle")
    encoded = PhotoEncoder(bundle, "cpu").encode_photos([r.image for r in added])
    # One photo of a source of its own, whose file has gone since it was stored: it cannot be located, so the
    # refit never samples it, yet the collection holds it.
    added = [dataclasses.replace(r, source="street", owner=f"o{k % 6}") for k, r in enumerate(added)]
    added[0] = dataclasses.replace(added[0], source="rare", image=str(tmp_path / "gone.jpg"))
    with open_store(f"edge:{tmp_path / 'store'}", bundle.collection_spec()) as store:
        store.add([PhotoPoint.placed(r.photo_id, r.source, r.lat, r.lon, bundle.partitions, owner=r.owner,
                                     image=r.image) for r in added], encoded.embeddings)
    assert geoloc_train(["fusion", "--bundle", str(tmp_path / "bundle"), "--features", str(cache), "--store",
                         f"edge:{tmp_path / 'store'}", "--folds", "3", "--max-queries", "20"]) == 0
    assert "added references" in capsys.readouterr().out
    sources = {r.source for r in world["background"]} | {"rare", "street"}
    assert Bundle.load(tmp_path / "bundle").config["fusion"]["info"]["fitted_sources"] == sorted(sources)
