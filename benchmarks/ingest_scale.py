"""Benchmark: Ray ingest of MP16-shaped msgpack shards at scale, measuring the pipeline rather than the model.

Generates N small synthetic JPEGs (64×48, coloured blocks) into msgpack shards of 10,000 records with a metadata
CSV (IMG_ID,AUTHOR,LAT,LON; coordinates resampled from the MP16 sample in shared/meta when present), and a bundle
with a tiny random-initialised timm model (`test_efficientnet`). Each size is ingested into a fresh Qdrant Edge
store by `geoloc-ingest` in its own process, which reports its own peak resident memory: the driver's.

    python benchmarks/ingest_scale.py [--sizes 50000 200000]

Writes benchmarks/results/ingest_scale.json (fields `photos`, `photos_per_second`, `driver_peak_rss_mb` per
size) and ingest_scale.md.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from locator.backbone import create_backbone
from locator.bundle import Bundle
from locator.shards import write_shard
from training.partition import PartitionSettings, adaptive_partition

RESULTS = Path(__file__).parent / "results"
SHARD_RECORDS = 10_000
RUNNER = """
import sys
from ingest.cli import main
code = main(sys.argv[1:])
status = open("/proc/self/status").read()
print("DRIVER_PEAK_RSS_KB", int(status.split("VmHWM:")[1].split()[0]))
sys.exit(code)
"""


def coordinates(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    shared = Path(os.environ.get("GEOLOC_SHARED", "../shared")) / "meta" / "mp16_coordinates_100k.csv"
    rng = np.random.default_rng(seed)
    if shared.is_file():
        sample = np.loadtxt(shared, delimiter=",", skiprows=1)
        picked = sample[rng.integers(0, len(sample), n)]
        return picked[:, 0], picked[:, 1]
    return np.degrees(np.arcsin(rng.uniform(-1, 1, n))), rng.uniform(-180, 180, n)


def photo(rng: np.random.Generator) -> bytes:
    pixels = np.repeat(np.repeat(rng.integers(0, 255, (3, 4, 3), dtype=np.uint8), 16, axis=0), 16, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def generate(work: Path, n: int) -> tuple[list[Path], Path, np.ndarray, np.ndarray]:
    shards_dir = work / "shards"
    shards_dir.mkdir(parents=True, exist_ok=True)
    lat, lon = coordinates(n)
    rng = np.random.default_rng(1)
    shards = []
    for s in range(0, n, SHARD_RECORDS):
        path = shards_dir / f"shard{s // SHARD_RECORDS:04d}.msg"
        if not path.exists():
            write_shard(path, ((f"{k:07d}.jpg", photo(rng)) for k in range(s, min(s + SHARD_RECORDS, n))))
        shards.append(path)
    metadata = work / "metadata.csv"
    with metadata.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["IMG_ID", "AUTHOR", "LAT", "LON"])
        writer.writerows((f"{k:07d}.jpg", f"owner{k % 5000}", f"{lat[k]:.6f}", f"{lon[k]:.6f}") for k in range(n))
    return shards, metadata, lat, lon


def make_bundle(work: Path, lat: np.ndarray, lon: np.ndarray) -> Path:
    partition = adaptive_partition(lat[:100_000], lon[:100_000], PartitionSettings(tau_max=2000, tau_min=20)).partition
    backbone = create_backbone("test_efficientnet", weights=None, size=64)
    Bundle.create(work / "bundle", backbone, [partition], weights_source="random (benchmark)")
    return work / "bundle"


def ingest(bundle: Path, store: Path, shards: list[Path], metadata: Path) -> dict:
    args = ["--bundle", str(bundle), "--store", f"edge:{store}", "--mp16-metadata", str(metadata),
            "--mp16-shards", *map(str, shards)]
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", RUNNER, *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"ingest failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    peak = int(result.stdout.split("DRIVER_PEAK_RSS_KB")[1].split()[0]) / 1024
    summary = next(line for line in result.stdout.splitlines() if line.startswith("ingest:"))
    written = int(summary.split(" written")[0].rsplit(", ", 1)[1].replace(",", ""))
    indexed = summary.split("(indexed in ")[1].split(" s)")[0] if "(indexed in " in summary else "0"
    return {"written": written, "seconds": round(seconds, 1), "photos_per_second": round(written / seconds, 1),
            "index_seconds": float(indexed), "driver_peak_rss_mb": round(peak, 1), "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--work", type=Path, default=Path("runs/ingest_scale"))
    args = parser.parse_args()
    start = time.perf_counter()
    shards, metadata, lat, lon = generate(args.work, max(args.sizes))
    generation = time.perf_counter() - start
    bundle = make_bundle(args.work, lat, lon)
    runs = []
    for n in args.sizes:
        store = args.work / f"store_{n}"
        if store.exists():
            import shutil
            shutil.rmtree(store)
        used = shards[: -(-n // SHARD_RECORDS)]
        run = {"photos": n, "shards": len(used), **ingest(bundle, store, used, metadata)}
        runs.append(run)
        print(json.dumps(run), flush=True)
    report = {"cpu_count": os.cpu_count(), "model": "test_efficientnet (random init), 64 px",
              "photo": "64×48 JPEG", "generation_seconds": round(generation, 1), "runs": runs}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingest_scale.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Ingest at scale (MP16-shaped shards)\n",
             f"{os.cpu_count()} CPU cores, no GPU; {report['model']}; {report['photo']} photos in msgpack shards of "
             f"{SHARD_RECORDS:,}; one `geoloc-ingest` process per size into a fresh Edge store.\n",
             "Seconds and photos/s are the whole process's, the closing index for global search included.\n",
             "| photos | shards | seconds | photos/s | of which indexing (s) | driver peak RSS (MB) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['photos']:,} | {r['shards']} | {r['seconds']} | {r['photos_per_second']} | "
              f"{r['index_seconds']:.0f} | {r['driver_peak_rss_mb']} |" for r in runs]
    (RESULTS / "ingest_scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
