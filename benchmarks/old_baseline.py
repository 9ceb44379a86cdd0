"""Benchmark: the code as it was when issue #9 was filed (commit bf8eed5), timed on this machine.

Issue #9's CPU targets are "no slower than today": 41 photos/s for the feature cache and 30.7 ms a photo for
locate at batch 1, measured on that day's machine. Machines differ (a CPU with native bfloat16 runs the current
code about twice as fast as one without), so this times the old code here, for a like-for-like comparison with
`features.py` and `locate.py`:
- the old feature cache over the im2gps2k photos (exact aspect, equal shapes batched, 2 decode threads);
- the old per-photo path at batch 1 on the first 128 held-out photos: decode, then the backbone.
The old code runs on this environment's torch (2.14.1 here), not on whatever it was first measured with.

    git worktree add /tmp/geoloc-bf8eed5 bf8eed5
    python benchmarks/old_baseline.py --old /tmp/geoloc-bf8eed5 --val runs/im2gps2k/split/val.csv \
        --results benchmarks/results/cpu/<machine>

Writes old_baseline.json and old_baseline.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

# Runs inside the old checkout (its own locator and training packages), on the same interpreter.
OLD = """
import json, sys, tempfile, time
import torch
from locator.backbone import create_backbone, extract_features
from locator.datasets import read_dataset
from locator.images import load_image
from training.features import build_feature_cache
manifest, val = sys.argv[1], sys.argv[2]
backbone = create_backbone("tf_efficientnet_lite0", size=300)
records = read_dataset(manifest)
start = time.perf_counter()
build_feature_cache(records, backbone, tempfile.mkdtemp(), "old", dtype="float32", progress=False)
cache_rate = len(records) / (time.perf_counter() - start)
photos = read_dataset(val)[:128]
for r in photos[:8]:
    extract_features(backbone, [backbone.preprocessing.to_tensor(load_image(r.image))])
decode = network = 0.0
for r in photos:
    t0 = time.perf_counter()
    x = backbone.preprocessing.to_tensor(load_image(r.image))
    t1 = time.perf_counter()
    extract_features(backbone, [x], batch_size=1)
    decode, network = decode + t1 - t0, network + time.perf_counter() - t1
print("RESULT", json.dumps({"feature_cache_photos": len(records), "feature_cache_photos_per_second": round(cache_rate, 1),
                            "batch1_photos": len(photos), "batch1_decode_ms": round(1000 * decode / len(photos), 1),
                            "batch1_backbone_ms": round(1000 * network / len(photos), 1),
                            "torch_threads": torch.get_num_threads()}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(os.environ.get("GEOLOC_SHARED", "../shared"))
    parser.add_argument("--old", type=Path, required=True, help="a checkout of commit bf8eed5")
    parser.add_argument("--manifest", type=Path, default=shared / "datasets" / "im2gps2k" / "manifest.csv")
    parser.add_argument("--val", type=Path, default=Path("runs/im2gps2k/split/val.csv"),
                        help="the held-out photos that locate.py times")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    from locator.backbone import describe_device
    commit = subprocess.run(["git", "-C", str(args.old), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    run = subprocess.run([sys.executable, "-c", OLD, str(args.manifest.resolve()), str(args.val.resolve())],
                         cwd=args.old, env={**os.environ, "PYTHONPATH": str(args.old.resolve())}, capture_output=True,
                         text=True)
    if run.returncode:
        raise SystemExit(f"the old code failed:\n{run.stderr[-3000:]}")
    out = run.stdout
    report = {"commit": commit, "device": describe_device(),
              **json.loads(next(line for line in out.splitlines() if line.startswith("RESULT"))[len("RESULT "):])}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "old_baseline.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# The code of commit {commit} (issue #9's \"today\"), on {report['device']}\n",
             f"- Feature cache, {report['feature_cache_photos']:,} im2gps2k photos (exact aspect, float32): "
             f"**{report['feature_cache_photos_per_second']} photos/s**.",
             f"- One photo at a time, the first {report['batch1_photos']} held-out photos: decode "
             f"{report['batch1_decode_ms']} ms + backbone {report['batch1_backbone_ms']} ms = "
             f"**{report['batch1_decode_ms'] + report['batch1_backbone_ms']:.1f} ms a photo** before any search.",
             "", "Compare `features.md` and `locate.md` beside this file: the current code on the same machine."]
    (args.results / "old_baseline.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
