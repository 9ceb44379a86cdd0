"""Streamed head training: the same batches and losses as in memory, and memory that does not grow with rows."""

import json
import subprocess
import sys

import numpy as np
import pytest

from training.batches import TrainingRows
from training.features import create_array_cache
from training.heads import train_head
from training.partition import PartitionSettings, adaptive_partition
from training.settings import HeadSettings

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def _world(n=600, dim=32, seed=0):
    """Features that carry their photo's place, so that the losses fall."""
    rng = np.random.default_rng(seed)
    places = rng.uniform([-50, -150], [60, 150], size=(12, 2))
    which = rng.integers(0, 12, n)
    lat, lon = places[which, 0] + rng.normal(0, 0.5, n), places[which, 1] + rng.normal(0, 0.5, n)
    features = (rng.normal(size=(12, dim))[which] + rng.normal(0, 0.5, (n, dim))).astype(np.float16)
    return features, lat, lon, rng.integers(0, 80, n)


def _partitions(lat, lon):
    return [adaptive_partition(lat, lon, PartitionSettings(tau_max=t, tau_min=2)).partition for t in (300, 120, 50)]


@pytest.mark.parametrize("kind", ["ce", "hc", "mvmf"])
def test_streamed_training_equals_in_memory_training(tmp_path, kind):
    features, lat, lon, groups = _world()
    cache = create_array_cache(tmp_path / "cache", [features[:250], features[250:]], len(features), features.shape[1],
                               lat, lon, groups, {"backbone": "test"})
    streamed, in_memory = TrainingRows.from_cache(cache), TrainingRows.from_arrays(features, lat, lon, groups)
    streamed.block_rows = in_memory.block_rows = 128
    settings = HeadSettings(epochs=6, batch_size=64, lr=0.01, min_epochs=6)
    partitions = _partitions(lat, lon)
    _, a = train_head(kind, streamed, partitions, settings, device="cpu", progress=False)
    _, b = train_head(kind, in_memory, partitions, settings, device="cpu", progress=False)
    assert np.allclose(a.losses, b.losses, rtol=0, atol=1e-5)
    assert a.losses[-1] < a.losses[0] and a.best().val_cell_accuracy > 0.3
    assert a.samples_seen == 6 * a.train_rows and a.train_rows + a.validation_rows <= len(features)


def test_validation_picks_the_best_epoch_and_stops_early(tmp_path):
    features, lat, lon, groups = _world()
    data = TrainingRows.from_arrays(features, lat, lon, groups)
    _, log = train_head("ce", data, _partitions(lat, lon), HeadSettings(epochs=200, lr=0.05, min_epochs=5, patience=3),
                        device="cpu", progress=False)
    assert len(log.epochs) < 200
    scores = [e.val_cell_accuracy + e.val_acc_25km + e.val_acc_750km for e in log.epochs]
    assert scores[log.best_epoch - 1] == max(scores) and log.validation_rows > 0


_MEMORY_SCRIPT = """
import json, sys
import numpy as np
from locator.cells import Partition
from locator.feature_cache import FeatureCache
from training.batches import TrainingRows
from training.heads import train_head
from training.settings import HeadSettings
cache = FeatureCache.open(sys.argv[1])
data = TrainingRows.from_cache(cache)
partition = Partition.read_csv(sys.argv[2])
def peak_mb():
    status = open("/proc/self/status").read()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024
import torch; torch.set_num_threads(2)
open("/proc/self/clear_refs", "w").write("5")  # start the peak afresh (the fork inherited the parent's)
before = peak_mb()
_, log = train_head("ce", data, [partition], HeadSettings(epochs=1, batch_size=4096, validation=0.01, min_epochs=1),
                    device="cpu", progress=False)
print(json.dumps({"before_mb": before, "after_mb": peak_mb(), "rows": log.train_rows}))
"""


def test_training_memory_stays_within_budget_on_a_cache_several_times_larger(tmp_path):
    # Labels cost about 100 bytes a row (coordinates, classes, row lists); the features never sit in memory.
    rows, dim, budget_mb = 2_400_000, 320, 400
    rng = np.random.default_rng(0)
    lat, lon = rng.uniform(-60, 70, rows), rng.uniform(-180, 180, rows)
    chunks = (rng.normal(size=(200_000, dim)).astype(np.float16) for _ in range(rows // 200_000))
    cache = create_array_cache(tmp_path / "big", chunks, rows, dim, lat, lon, rng.integers(0, 10**6, rows),
                               {"backbone": "test"})
    size_mb = (tmp_path / "big" / "features.npy").stat().st_size / 2**20
    partition = adaptive_partition(lat[:20_000], lon[:20_000], PartitionSettings(tau_max=2000, tau_min=10)).partition
    partition.write_csv(tmp_path / "cells.csv")
    del chunks, cache
    result = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(tmp_path / "big"), str(tmp_path / "cells.csv")],
                            capture_output=True, text=True, cwd=ROOT, check=True)
    report = json.loads(result.stdout)
    assert size_mb > 3 * budget_mb and report["rows"] > 2_300_000
    assert report["after_mb"] - report["before_mb"] < budget_mb, report
