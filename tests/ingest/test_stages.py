"""The pipeline's stages called directly (no Ray): decode, embed with placeability, write with rejects."""

import csv
from collections import Counter

import numpy as np
import pytest

from ingest.decode import decode_batch
from ingest.embedder import Embedder
from ingest.sources import list_rows
from ingest.writer import StoreWriter
from locator.bundle import Bundle
from locator.encoder import PhotoEncoder
from locator.images import load_image
from locator.store import open_store
from tests.photo_world import make_photo_world
from training.cli import main as geoloc_train


def _columns(rows):
    return {k: np.array([r[k] for r in rows], dtype=object if isinstance(rows[0][k], str) else None) for k in rows[0]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    manifest = make_photo_world(root, photos_per_place=6, bad_files=True)
    coords = root / "coords.csv"
    coords.write_text("lat,lon\n" + "".join(f"{r['lat']},{r['lon']}\n" for r in list_rows(manifest)))
    geoloc_train(["partition", "--coords", str(coords), "--tau-max", "8", "--tau-min", "2", "--out", str(root / "c.csv")])
    geoloc_train(["bundle", "--out", str(root / "bundle"), "--partitions", str(root / "c.csv"), "--size", "64"])
    geoloc_train(["features", "--bundle", str(root / "bundle"), "--data", str(manifest), "--out", str(root / "f")])
    geoloc_train(["head", "--bundle", str(root / "bundle"), "--features", str(root / "f"), "--kind", "ce", "--epochs", "3"])
    return root, manifest


def test_stages_embed_like_the_encoder_and_write_rejects(trained, tmp_path):
    root, manifest = trained
    rows = list_rows(manifest)
    bundle = Bundle.load(root / "bundle")
    decoded = decode_batch(_columns(rows), bundle.backbone.preprocessing.to_json())
    assert sum(1 for e in decoded["status"] if e) == 2
    embedded = Embedder(str(root / "bundle"), placeable_head="ce")(decoded)
    threaded = Embedder(str(root / "bundle"), placeable_head="ce", normalise_threads=2)(decoded)
    assert threaded["vector"].any() and np.array_equal(threaded["vector"], embedded["vector"])
    encoder = PhotoEncoder(bundle, device="cpu")
    direct = encoder.encode([encoder.preprocess(load_image(rows[0]["image"]))], classify=True)
    assert np.max(np.abs(embedded["vector"][0] - direct.embeddings[0])) <= 1e-5
    assert embedded["placeable"][0] == (direct.prediction.cell[0] == embedded["cells"][0, 0])
    expected_cells = bundle.partitions[0].lookup([r["lat"] for r in rows], [r["lon"] for r in rows])
    ok = np.array([not e for e in decoded["status"]])
    assert np.array_equal(embedded["cells"][ok, 0], expected_cells[ok])

    rejects = tmp_path / "rejects.csv"
    with open_store(f"edge:{tmp_path / 'store'}", bundle.collection_spec()) as store:
        writer = StoreWriter(store, bundle.partitions, rejects, placeable_only=True)
        writer.write(embedded)
        writer.close()
        placeable = int(embedded["placeable"].sum())
        assert store.count() == writer.written == placeable
        kept = ok & embedded["placeable"].astype(bool)
        assert writer.written_sources == Counter(str(r["source"]) for r, k in zip(rows, kept) if k)
        assert writer.rejected == {"unreadable": 2, "not placeable": int(ok.sum()) - placeable}
        payload = next(iter(store.payloads(store.all_ids()[:1]).values()))
    assert set(payload) >= {"cell_0", "s2_0", "lat", "lon", "photo_id", "owner", "source", "image", "ingest_time"}
    assert payload["s2_0"] == bundle.partitions[0].tokens[payload["cell_0"]]
    with rejects.open() as handle:
        reasons = [r["reason"] for r in csv.DictReader(handle)]
    assert len(reasons) == 2 + int(ok.sum()) - placeable and any("empty file" in r for r in reasons)


def test_default_rejects_path():
    from pathlib import Path

    from ingest.pipeline import default_rejects_path
    assert default_rejects_path("edge:runs/demo/store/") == Path("runs/demo/store.rejects.csv")
    assert default_rejects_path("http://localhost:6333/geoloc") == Path("geoloc-ingest.rejects.csv")


def test_manifest_rows_mark_stored_and_invalid_photos():
    import pyarrow as pa

    from ingest.rows import REMOVED, STORED, KnownIds, manifest_rows
    from locator.store import point_id
    batch = pa.table({"image": ["a.jpg", "b.jpg", "", "c.jpg", "d.jpg"], "lat": ["10", "95", "1", "3", "4"],
                      "lon": ["20", "0", "2", "5", "6"]})
    known = KnownIds(np.array(sorted([point_id("src", "a")]), dtype=np.int64),
                     np.array(sorted([point_id("src", "c"), point_id("src", "a")]), dtype=np.int64))
    rows = manifest_rows(batch, "/root", "src", {"image": "image", "lat": "lat", "lon": "lon"}, known)
    assert rows.column("status").to_pylist() == [STORED, "invalid coordinates: lat=95.0, lon=0.0", "empty image path",
                                                 REMOVED, ""]
    assert rows.column("image").to_pylist()[0] == "/root/a.jpg" and rows.column("photo_id").to_pylist()[:2] == ["a", "b"]
