"""Fine-tuning: two gloo ranks equal one process with the same global batch; a killed run resumes exactly."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from tests.photo_world import make_photo_world, write_shard_world
from training.cli import main as geoloc_train

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ["--epochs", "2", "--batch-size", "8", "--image-size", "64", "--workers", "0", "--batch-norm", "frozen",
         "--lr", "0.05"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    manifest = make_photo_world(root / "photos", photos_per_place=8)
    shards, metadata = write_shard_world(manifest, root / "shards")
    coords = root / "coords.csv"
    coords.write_text("lat,lon\n" + "".join(f"{r.split(',')[3]},{r.split(',')[4]}\n"
                                            for r in manifest.read_text().splitlines()[1:]))
    assert geoloc_train(["partition", "--coords", str(coords), "--tau-max", "10", "--tau-min", "2",
                         "--out", str(root / "cells.csv")]) == 0
    assert geoloc_train(["bundle", "--out", str(root / "bundle"), "--arch", "test_efficientnet", "--weights", "none",
                         "--size", "64", "--partitions", str(root / "cells.csv")]) == 0
    return root, [str(s) for s in shards], str(metadata)


def _copy_bundle(root, name):
    import shutil
    shutil.copytree(root / "bundle", root / name)
    return root / name


def _run(args, ranks=1, env=None, wait=True):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--master_port",
               str(29500 + os.getpid() % 1000), "-m", "training.cli", "backbone", *args] if ranks > 1 else \
        [sys.executable, "-m", "training.cli", "backbone", *args]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}, start_new_session=True)
    if not wait:
        return process
    out = process.communicate(timeout=600)[0]
    assert process.returncode == 0, out
    return out


def _weights(bundle):
    return load_file(str(bundle / "backbone.safetensors"))


def test_two_gloo_ranks_equal_one_process_with_the_same_global_batch(world):
    root, shards, metadata = world
    data = ["--mp16-shards", *shards, "--mp16-metadata", metadata, "--max-steps", "6"]
    one, two = _copy_bundle(root, "one"), _copy_bundle(root, "two")
    _run(["--bundle", str(one), *data, *TRAIN])
    out = _run(["--bundle", str(two), *data, *TRAIN], ranks=2)
    assert "over 2 rank(s)" in out
    a, b, start = _weights(one), _weights(two), _weights(root / "bundle")
    assert max(np.abs(a[k] - start[k]).max() for k in a) > 1e-4  # it did train
    for k in a:  # each tensor: the two runs differ by far less than either moved
        assert np.abs(a[k] - b[k]).max() <= 0.01 * np.abs(a[k] - start[k]).max() + 1e-6, k


def test_a_killed_run_resumes_exactly(world):
    root, shards, metadata = world
    data = ["--mp16-shards", *shards, "--mp16-metadata", metadata, "--max-steps", "12", "--checkpoint-every", "2"]
    clean, resumed = _copy_bundle(root, "clean"), _copy_bundle(root, "resumed")
    _run(["--bundle", str(clean), *data, *TRAIN, "--checkpoints", str(root / "ck-clean")])
    killed = _run(["--bundle", str(resumed), *data, *TRAIN, "--checkpoints", str(root / "ck")], wait=False)
    state = root / "ck" / "checkpoint.json"
    deadline = time.time() + 300
    while time.time() < deadline and not (state.is_file() and json.loads(state.read_text())["global_step"] >= 4):
        time.sleep(0.05)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(timeout=60)
    step = json.loads(state.read_text())["global_step"]
    assert 4 <= step < 12
    out = _run(["--bundle", str(resumed), *data, *TRAIN, "--checkpoints", str(root / "ck"), "--resume"])
    a, b = _weights(clean), _weights(resumed)
    assert max(np.abs(a[k] - b[k]).max() for k in a) < 1e-6, out
