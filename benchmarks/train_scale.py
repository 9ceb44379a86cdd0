"""Benchmark: head and RRM training at MP16 scale from a streamed feature cache.

Builds (once, in chunks) a synthetic MP16-shaped cache: 4,723,695 rows × 1,792 float16 features (16.9 GB), with
coordinates resampled from `shared/meta/mp16_coordinates_100k.csv` and features that carry a location signal (a
random direction per fine cell plus noise), so that the losses fall. The partitions are the real MP16 ones,
`shared/meta/cells_50_{5000,2000,1000}.csv` (3,298 / 7,202 / 12,893 cells). Then one epoch of ce, hc and mvmf
(capped in time: the rate is what is reported) and a fixed number of RRM steps, each stage in its own process,
which reports its peak resident memory. Runs on CUDA when present (the GPU is named), else on the CPUs.

    python benchmarks/train_scale.py [--rows 4723695] [--seconds 120] [--rrm-steps 40] [--work runs/train_scale] \
        [--batch-size 256] [--stages ce hc mvmf rrm]

Writes benchmarks/results/train_scale.json (fields `rows`, `cells`, and per stage `samples_per_second`,
`peak_rss_mb`; for a head also `feed_samples_per_second`, the rate of its batches alone, read and moved to the
device without training) and train_scale.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from locator.cells import Partition

RESULTS = Path(__file__).parent / "results"
DIM = 1792
CHUNK = 100_000
STAGES = ("ce", "hc", "mvmf", "rrm")
STAGE = """
import json, sys, time
import numpy as np
import torch
from locator.backbone import describe_device
from locator.cells import Partition
from locator.feature_cache import FeatureCache
from training.batches import TrainingRows
from training.heads import train_head
from training.rrm import train_rrm
from training.settings import HeadSettings, RRMSettings


def feed_rate(data, batch, seconds=3.0):
    # rows/s of the batches alone (read, moved to the device, shuffled there), without training
    from training.batches import batches
    from training.heads import resolve_device
    device, n, start = resolve_device(None), 0, time.perf_counter()
    for rows, _ in batches(data, data.usable, batch, np.random.default_rng(1), device):
        n += len(rows)
        if time.perf_counter() - start > seconds:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


kind, work, seconds, steps, batch = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
partitions = [Partition.read_csv(p) for p in sys.argv[6:]]
data = TrainingRows.from_cache(FeatureCache.open(work))
start = time.perf_counter()
if kind == "rrm":
    cells = partitions[-1].lookup(data.lat, data.lon)
    _, log = train_rrm(data, cells, RRMSettings(steps=steps, eval_every=steps, space="rrm"), progress=False)
    result = {"samples_per_second": 2 * log.pairs_per_second, "samples_seen": 2 * 128 * log.steps,
              "precision_at_10": log.to_json()["precision_at_10"]}
else:
    init = None
    settings = HeadSettings(epochs=1, min_epochs=1, max_seconds=seconds, batch_size=batch)
    _, log = train_head(kind, data, partitions, settings, progress=False)
    result = {"samples_per_second": log.samples_per_second, "samples_seen": log.samples_seen,
              "train_rows": log.train_rows, "epochs": len(log.epochs), "batch_size": batch,
              "first_loss": log.epochs[0].loss, "validation": log.to_json()["best"],
              "feed_samples_per_second": feed_rate(data, batch)}
status = open("/proc/self/status").read()
result["peak_rss_mb"] = int(status.split("VmHWM:")[1].split()[0]) / 1024
result["seconds"] = time.perf_counter() - start
result["device"] = describe_device()
print("RESULT", json.dumps(result))
"""


def shared_meta() -> Path:
    return Path(os.environ.get("GEOLOC_SHARED", "../shared")) / "meta"


def build_cache(work: Path, rows: int, partitions: list[Partition]) -> bool:
    """Write the synthetic cache into `work`; False when a previous run's cache is there (it is reused)."""
    from training.features import create_array_cache
    if (work / "meta.json").is_file():
        return False
    sample = np.loadtxt(shared_meta() / "mp16_coordinates_100k.csv", delimiter=",", skiprows=1)
    rng = np.random.default_rng(0)
    picked = sample[rng.integers(0, len(sample), rows)]
    lat = np.clip(picked[:, 0] + rng.normal(0, 0.01, rows), -90, 90)
    lon = (picked[:, 1] + rng.normal(0, 0.01, rows) + 180) % 360 - 180
    fine = partitions[-1]
    directions = rng.normal(size=(len(fine) + 1, DIM)).astype(np.float32)

    def chunks():
        for s in range(0, rows, CHUNK):
            cells = fine.lookup(lat[s:s + CHUNK], lon[s:s + CHUNK])
            noise = rng.normal(size=(len(cells), DIM)).astype(np.float32)
            yield (2.0 * directions[cells] + noise).astype(np.float16)

    def chunks_on_gpu():  # the same distribution; numpy's generator alone would take minutes on the GPU machine
        import torch
        generator, table = torch.Generator("cuda").manual_seed(0), torch.from_numpy(directions).cuda()
        for s in range(0, rows, CHUNK):
            cells = torch.from_numpy(fine.lookup(lat[s:s + CHUNK], lon[s:s + CHUNK])).cuda()
            noise = torch.randn(len(cells), DIM, device="cuda", generator=generator)
            yield (2.0 * table[cells] + noise).half().cpu().numpy()

    create_array_cache(work, chunks_on_gpu() if _cuda() else chunks(), rows, DIM, lat, lon, rng.integers(0, rows // 10, rows),
                       {"backbone": "synthetic MP16-shaped features"})
    return True


def _cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def run_stage(kind: str, work: Path, seconds: float, steps: int, batch: int, partition_files: list[Path]) -> dict:
    result = subprocess.run([sys.executable, "-c", STAGE, kind, str(work), str(seconds), str(steps), str(batch),
                             *map(str, partition_files)], capture_output=True, text=True)
    if result.returncode:  # recorded, and the other stages still run
        print(f"stage {kind} failed:\n{result.stderr[-3000:]}", file=sys.stderr, flush=True)
        return {"failed": result.stderr[-2000:]}
    return json.loads(result.stdout.split("RESULT", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_723_695)
    parser.add_argument("--seconds", type=float, default=120.0, help="time cap of each head's epoch")
    parser.add_argument("--rrm-steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=256, help="photos per head step (the heads' default)")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--work", type=Path, default=Path("runs/train_scale"))
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON and markdown go")
    args = parser.parse_args()
    partition_files = [shared_meta() / f"cells_50_{t}.csv" for t in (5000, 2000, 1000)]
    partitions = [Partition.read_csv(p) for p in partition_files]
    start = time.perf_counter()
    built = build_cache(args.work / "cache", args.rows, partitions)
    build_seconds = round(time.perf_counter() - start, 1) if built else None  # None: a previous run's cache
    size_gb = (args.work / "cache" / "features.npy").stat().st_size / 1e9
    stages = {}
    report = {"rows": args.rows, "cells": [len(p) for p in partitions], "dim": DIM, "cache_gb": round(size_gb, 1),
              "cache_build_seconds": build_seconds,
              "cache_noise_drawn_on": "cuda (torch)" if _cuda() else "cpu (numpy)", "cpu_count": os.cpu_count(),
              "time_cap_seconds": args.seconds, "rrm_steps": args.rrm_steps, "batch_size": args.batch_size,
              "stages": stages}
    for kind in args.stages:
        stages[kind] = run_stage(kind, args.work / "cache", args.seconds, args.rrm_steps, args.batch_size,
                                 partition_files)
        print(kind, json.dumps(stages[kind]), flush=True)
        write_report(args, report, size_gb)  # after every stage: a run cut short keeps what it measured


def write_report(args: argparse.Namespace, report: dict, size_gb: float) -> None:
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "train_scale.json").write_text(json.dumps(report, indent=2) + "\n")
    stages = report["stages"]
    device = next((s["device"] for s in stages.values() if "device" in s), "?")
    lines = ["# Training at MP16 scale\n",
             f"{args.rows:,} rows × {DIM} float16 features ({size_gb:.1f} GB on disk, synthetic with a location "
             f"signal), the real MP16 partitions ({' / '.join(f'{c:,}' for c in report['cells'])} cells), on "
             f"{device}. Each head: batches of {args.batch_size}, one epoch capped at "
             f"{args.seconds:.0f} s; the RRM: "
             f"{args.rrm_steps} steps of 128 pairs. Each stage in its own process.\n",
             "| stage | samples/s | batches alone, rows/s | samples seen | peak RSS (MB) | seconds |",
             "|---|---|---|---|---|---|"]
    feed = {kind: f"{s['feed_samples_per_second']:,.0f}" if "feed_samples_per_second" in s else ""
            for kind, s in stages.items()}
    lines += [f"| {kind} | {s['samples_per_second']:,.0f} | {feed[kind]} | "
              f"{s['samples_seen']:,} | {s['peak_rss_mb']:,.0f} | {s['seconds']:.0f} |"
              if "failed" not in s else f"| {kind} | failed | | | | |"
              for kind, s in stages.items()]
    (args.results / "train_scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
