"""Benchmark: end-to-end photos/s of the Ray ingest pipeline against the backbone's own throughput in one process.

    python benchmarks/ingest_acceptance.py --bundle DIR [--photos 400]      # throughput ratio
    python benchmarks/ingest_acceptance.py --bundle DIR --acceptance        # + the issue's kill -9 / resume / grow run

Photos come from $GEOLOC_SHARED/datasets/im2gps2k. The acceptance run ingests all 1,944 photos into a fresh Edge
store, kills the whole job with SIGKILL at a random moment of a second run into another store, resumes it, checks
it against the clean run (count, duplicates, vectors ≤ 1e-6), then grows it with datasets/extra (799 photos).
Writes benchmarks/results/ingest.json and ingest.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# Run as a script, this file's folder comes first on sys.path and `ingest` would name this file, not the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from ingest.pipeline import run_ingest
from ingest.settings import IngestSettings
from ingest.sources import IngestSource, list_rows
from locator.bundle import Bundle
from locator.encoder import PhotoEncoder
from locator.store import open_store

RESULTS = Path(__file__).parent / "results"


def single_process_rate(bundle: Bundle, rows: list[dict]) -> float:
    """Read, decode, backbone (shape buckets) and embedding in this process: the encoder's own throughput."""
    encoder = PhotoEncoder(bundle)
    start = time.perf_counter()
    encoder.encode_photos([r["image"] for r in rows])
    return len(rows) / (time.perf_counter() - start)


def ingest_command(bundle_dir: Path, store: Path, data: Path) -> list[str]:
    return [sys.executable, "-m", "ingest.cli", "--bundle", str(bundle_dir), "--store", f"edge:{store}",
            "--data", str(data)]


def store_contents(bundle: Bundle, store: Path):
    with open_store(f"edge:{store}", bundle.collection_spec()) as s:
        ids = s.all_ids()
        return ids, s.vectors(ids), s.payloads(ids)


def acceptance(bundle_dir: Path, shared: Path, work: Path) -> dict:
    bundle = Bundle.load(bundle_dir)
    manifest = shared / "datasets" / "im2gps2k" / "manifest.csv"
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    clean, resumed = work / "clean", work / "resumed"
    start = time.perf_counter()
    subprocess.run(ingest_command(bundle_dir, clean, manifest), check=True, env=env)
    clean_seconds = time.perf_counter() - start
    delay = random.Random().uniform(10, clean_seconds * 0.8)
    job = subprocess.Popen(ingest_command(bundle_dir, resumed, manifest), env=env, start_new_session=True)
    time.sleep(delay)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    # The killed job's writer actor can outlive it by a few seconds: wait for the store to be free.
    with open_store(f"edge:{resumed}", bundle.collection_spec(), wait_s=60) as s:
        after_kill = s.count()
    subprocess.run(ingest_command(bundle_dir, resumed, manifest), check=True, env=env)
    clean_ids, clean_vectors, _ = store_contents(bundle, clean)
    ids, vectors, payloads = store_contents(bundle, resumed)
    max_diff = max(float(np.max(np.abs(vectors[int(i)] - clean_vectors[int(i)]))) for i in ids)
    subprocess.run(ingest_command(bundle_dir, resumed, shared / "datasets" / "extra" / "manifest.csv"), check=True, env=env)
    grown_ids, _, grown_payloads = store_contents(bundle, resumed)
    rejects = (resumed.with_suffix(".rejects.csv")).read_text().count("\n") - 1
    return {"clean_count": len(clean_ids), "killed_after_seconds": round(delay, 1), "points_when_killed": after_kill,
            "resumed_count": len(ids), "distinct_photo_ids": len({p["photo_id"] for p in payloads.values()}),
            "same_ids_as_clean": set(ids.tolist()) == set(clean_ids.tolist()), "max_vector_diff": max_diff,
            "after_growing_count": len(grown_ids), "extra_rejected": rejects,
            "sources_after_growing": sorted({p["source"] for p in grown_payloads.values()})}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--photos", type=int, default=400)
    parser.add_argument("--acceptance", action="store_true")
    parser.add_argument("--work", type=Path, default=Path("/tmp/geoloc_ingest_bench"))
    args = parser.parse_args()
    shared = Path(os.environ.get("GEOLOC_SHARED", "../shared"))
    rows = list_rows(shared / "datasets" / "im2gps2k" / "manifest.csv")[: args.photos]
    bundle = Bundle.load(args.bundle)
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    single = single_process_rate(bundle, rows)
    subset = args.work / "subset.csv"
    subset.write_text("image,photo_id,owner,source,lat,lon\n" + "".join(
        f"{r['image']},{r['photo_id']},{r['owner']},{r['source']},{r['lat']!r},{r['lon']!r}\n" for r in rows))
    summary = run_ingest(args.bundle, f"edge:{args.work / 'throughput'}", IngestSource(data=str(subset)),
                         IngestSettings(progress=False))
    report = {"photos": len(rows), "cpu_count": os.cpu_count(), "single_process_photos_per_second": round(single, 2),
              "ray_pipeline_photos_per_second": round(summary.read / summary.seconds, 2),
              "ray_pipeline_seconds": round(summary.seconds, 1),
              "ratio": round(summary.read / summary.seconds / single, 3), "written": summary.written}
    if args.acceptance:
        report["acceptance"] = acceptance(args.bundle, shared, args.work)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Ingest benchmark\n",
             f"{len(rows)} im2gps2k photos, bundle backbone {bundle.backbone.arch} at {bundle.backbone.preprocessing.size} px, "
             f"{os.cpu_count()} CPU cores.\n", "| measure | value |", "|---|---|",
             f"| one process (decode + backbone + RRM) | {report['single_process_photos_per_second']} photos/s |",
             f"| Ray pipeline end to end (Ray start included) | {report['ray_pipeline_photos_per_second']} photos/s "
             f"({report['ray_pipeline_seconds']} s) |",
             f"| ratio | {report['ratio']} |"]
    if args.acceptance:
        a = report["acceptance"]
        lines += ["", "## Kill -9, resume and grow (all 1,944 im2gps2k photos, then 799 extra)\n",
                  "| check | value |", "|---|---|",
                  *(f"| {k.replace('_', ' ')} | {v} |" for k, v in a.items())]
    (RESULTS / "ingest.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
