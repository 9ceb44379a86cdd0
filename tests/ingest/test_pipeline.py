"""Ray ingest end to end: kill -9 at a random moment and resume, then grow the collection with another source."""

import csv
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from locator.bundle import Bundle
from locator.cli import main as geoloc
from locator.store import open_store, point_id
from tests.photo_world import make_photo_world, write_shard_world
from training.cli import main as geoloc_train


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("ingest")
    manifest = make_photo_world(root / "a", photos_per_place=12, bad_files=True)
    other = make_photo_world(root / "b", photos_per_place=4, seed=7)
    with manifest.open() as handle:
        rows = [r for r in csv.DictReader(handle)]
    coords = root / "coords.csv"
    coords.write_text("lat,lon\n" + "".join(f"{r['lat']},{r['lon']}\n" for r in rows))
    cells = root / "cells.csv"
    assert geoloc_train(["partition", "--coords", str(coords), "--tau-max", "20", "--tau-min", "2", "--out", str(cells)]) == 0
    assert geoloc_train(["bundle", "--out", str(root / "bundle"), "--partitions", str(cells), "--size", "64"]) == 0
    return root, manifest, other


def _ingest(root, store, manifest=None, extra=()):
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    data = ["--data", str(manifest)] if manifest else []
    return subprocess.Popen([sys.executable, "-m", "ingest.cli", "--bundle", str(root / "bundle"), "--store",
                             f"edge:{store}", *data, "--batch-size", "4", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)


def _contents(root, store):
    bundle = Bundle.load(root / "bundle")
    with open_store(f"edge:{store}", bundle.collection_spec()) as s:
        ids = s.all_ids()
        return ids, s.vectors(ids), s.payloads(ids)


@pytest.mark.parametrize("input_kind", ["manifest", "shards"])
def test_kill_minus_nine_then_resume_gives_exactly_the_clean_result(world, input_kind):
    root, manifest, _ = world
    if input_kind == "shards":
        shards, metadata = write_shard_world(manifest, root / "shards")
        args = {"manifest": None, "extra": ["--mp16-shards", *map(str, shards), "--mp16-metadata", str(metadata)]}
    else:
        args = {"manifest": manifest}
    clean = _ingest(root, root / f"clean-{input_kind}", **args)
    out = clean.communicate(timeout=300)[0]
    assert clean.returncode == 0, out
    assert "74 listed, 0 already stored, 74 read, 72 embedded, 72 written, rejected: 2 unreadable" in out
    assert "(indexed in" in out  # the closing index for global search

    killed = _ingest(root, root / f"resumed-{input_kind}", **args)
    time.sleep(random.Random(os.getpid()).uniform(4.0, 14.0))
    os.killpg(killed.pid, signal.SIGKILL)  # the whole job: driver, Ray and its workers
    killed.wait(timeout=60)
    resumed = _ingest(root, root / f"resumed-{input_kind}", **args)
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out

    clean_ids, clean_vectors, clean_payloads = _contents(root, root / f"clean-{input_kind}")
    ids, vectors, payloads = _contents(root, root / f"resumed-{input_kind}")
    assert len(ids) == len(set(ids.tolist())) == 72
    assert set(ids.tolist()) == set(clean_ids.tolist())
    assert len({p["photo_id"] for p in payloads.values()}) == 72
    for pid in ids:
        assert np.max(np.abs(vectors[int(pid)] - clean_vectors[int(pid)])) <= 1e-6
        assert payloads[int(pid)]["cell_0"] == clean_payloads[int(pid)]["cell_0"]


def test_growing_with_another_source(world):
    root, manifest, other = world
    store = root / "grow"
    assert _ingest(root, store, manifest).wait(timeout=300) == 0
    first_ids, _, _ = _contents(root, store)
    grown = _ingest(root, store, other, extra=["--no-index"])
    out = grown.communicate(timeout=300)[0]
    assert grown.returncode == 0, out
    assert "24 written" in out and "indexed" not in out
    ids, vectors, payloads = _contents(root, store)
    assert len(ids) == len(first_ids) + 24
    assert {p["source"] for p in payloads.values()} == {"a", "b"}
    # A within-cell query sees both sources.
    bundle = Bundle.load(root / "bundle")
    some_b = next(pid for pid, p in payloads.items() if p["source"] == "b" and p["cell_0"] >= 0)
    cell = payloads[some_b]["cell_0"]
    with open_store(f"edge:{store}", bundle.collection_spec()) as s:
        hits = s.search(vectors[some_b][None], [cell], k=100)
    found = {payloads[int(i)]["source"] for i in hits.ids[0] if i >= 0}
    assert found == {"a", "b"}
    assert point_id("b", payloads[some_b]["photo_id"]) == some_b

    # Photos removed since (misattributed, say) stay out when their manifest is ingested again, unless asked.
    gone = sorted(p["photo_id"] for p in payloads.values() if p["source"] == "b")[:2]
    assert geoloc(["remove", "--bundle", str(root / "bundle"), "--store", f"edge:{store}", "--source", "b",
                   "--photo-id", *gone]) == 0
    again = _ingest(root, store, other, extra=["--no-index"])
    out = again.communicate(timeout=300)[0]
    assert again.returncode == 0, out
    assert "22 already stored" in out and "0 written" in out and "2 removed from the collection" in out, out
    assert len(_contents(root, store)[0]) == len(ids) - 2
    with (root / "grow.rejects.csv").open() as handle:
        assert sorted(r["photo_id"] for r in csv.DictReader(handle) if r["reason"].startswith("removed")) == gone
    back = _ingest(root, store, other, extra=["--no-index", "--include-removed"])
    out = back.communicate(timeout=300)[0]
    assert back.returncode == 0 and "2 written" in out, out
    assert len(_contents(root, store)[0]) == len(ids)
