"""Benchmark: adaptive partitioning of 4.7 M photo coordinates on this machine.

The coordinates are resampled (with ~1 km jitter) from the real 100 K MP16 sample in
$GEOLOC_SHARED (default ../shared)/meta/mp16_coordinates_100k.csv, or from a synthetic world when shared data is absent.
Writes benchmarks/results/partition.json and partition.md.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from locator import s2
from training.coordinates import read_coordinates_csv, synthetic_coordinates
from training.partition import PartitionSettings, adaptive_partition

N_PHOTOS = 4_723_695
RESULTS = Path(__file__).parent / "results"


def coordinates(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    sample = Path(os.environ.get("GEOLOC_SHARED", "../shared")) / "meta" / "mp16_coordinates_100k.csv"
    if sample.is_file():
        lat, lon = read_coordinates_csv(sample)
        source = "MP16 100K sample resampled with 0.01° jitter"
    else:
        lat, lon = synthetic_coordinates(100_000)
        source = "SYNTHETIC world (shared data absent) resampled with 0.01° jitter"
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(lat), n)
    lat = np.clip(lat[pick] + rng.normal(0, 0.01, n), -90, 90)
    lon = (lon[pick] + rng.normal(0, 0.01, n) + 180) % 360 - 180
    return lat, lon, source


def main() -> None:
    lat, lon, source = coordinates(N_PHOTOS)
    runs = []
    for tau_max in (5000, 2000, 1000):
        start = time.perf_counter()
        result = adaptive_partition(lat, lon, PartitionSettings(tau_max=tau_max, tau_min=50))
        runs.append({"tau_max": tau_max, "tau_min": 50, "seconds": round(time.perf_counter() - start, 2),
                     "cells": len(result.partition), "summary": result.summary()})
        print(f"tau_max={tau_max}: {runs[-1]['seconds']} s, {result.summary()}")
    start = time.perf_counter()
    s2.leaf_ids(lat, lon)
    leaf_seconds = time.perf_counter() - start
    report = {"photos": N_PHOTOS, "source": source, "cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
              "leaf_ids_seconds": round(leaf_seconds, 2), "runs": runs}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "partition.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Partition benchmark\n", f"{N_PHOTOS:,} coordinates ({source}), {os.cpu_count()} CPU cores.\n",
             f"S2 leaf ids (numpy): {leaf_seconds:.2f} s.\n", "| τmax | τmin | seconds | cells |", "|---|---|---|---|"]
    lines += [f"| {r['tau_max']} | {r['tau_min']} | {r['seconds']} | {r['cells']:,} |" for r in runs]
    (RESULTS / "partition.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
