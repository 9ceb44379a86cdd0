"""Benchmark: the default store (Qdrant Edge) at the paper's scale.

Builds a collection shaped exactly by the per-cell background counts of the paper's 31,145 cells
($GEOLOC_SHARED/meta/icmr21_cells_31145.csv, 763,265 points) with synthetic clustered 1,792-d unit vectors
(EfficientNet-B4 size), then records upsert points/s, the optimisation that builds the global HNSW graph,
single-cell and 3-cell top-10 latency (p50/p95/p99 over queries drawn in proportion to cell size, lat/lon of the
hits included), global (unfiltered) top-10 latency through the graph and by an exact scan with the graph's
recall@10 against it, resident memory, disk size and reopen time.

    python benchmarks/store.py [--scale 1.0] [--dir /tmp/geoloc_store_bench]

Writes benchmarks/results/store.json and store.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import time
from pathlib import Path

import numpy as np

from locator.store import CollectionSpec, open_store

RESULTS = Path(__file__).parent / "results"
DIM = 1792
BATCH = 2048
FLUSH_EVERY = 10  # batches; like the ingest writer, flush periodically (it truncates Qdrant's WAL), time counted


def cell_counts(scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    shared = os.environ.get("GEOLOC_SHARED")
    if not shared:
        raise SystemExit("set GEOLOC_SHARED: the benchmark is shaped by meta/icmr21_cells_31145.csv")
    table = np.genfromtxt(Path(shared) / "meta" / "icmr21_cells_31145.csv", delimiter=",", names=True)
    counts = np.maximum(np.round(table["n_background_images"] * scale).astype(np.int64), 0)
    return counts, table["lat_mean"], table["lon_mean"]


def rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1024 ** 2


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of each cell's count (1.0 = 763,265 points)")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/geoloc_store_bench"))
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--global-queries", type=int, default=50, help="unfiltered (global) top-10 queries timed")
    args = parser.parse_args()
    counts, lat_c, lon_c = cell_counts(args.scale)
    total = int(counts.sum())
    rng = np.random.default_rng(0)
    cell_of_point = np.repeat(np.arange(len(counts)), counts)
    rng.shuffle(cell_of_point)
    centres = rng.normal(size=(len(counts), DIM)).astype(np.float32)
    shutil.rmtree(args.dir, ignore_errors=True)
    spec = CollectionSpec(DIM, 1, "benchmark")
    store = open_store(f"edge:{args.dir}", spec)
    upsert_seconds = 0.0
    for first in range(0, total, BATCH):
        cells = cell_of_point[first:first + BATCH]
        vectors = centres[cells] + rng.normal(size=(len(cells), DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        lat = np.clip(lat_c[cells] + rng.normal(0, 0.01, len(cells)), -90, 90)
        lon = np.clip(lon_c[cells] + rng.normal(0, 0.01, len(cells)), -180, 180)
        payloads = [{"cell_0": int(c), "s2_0": "", "lat": float(a), "lon": float(b), "photo_id": str(first + k),
                     "owner": "", "source": "bench", "image": "", "ingest_time": ""}
                    for k, (c, a, b) in enumerate(zip(cells, lat, lon))]
        start = time.perf_counter()  # time the store, not the generation of synthetic data
        store.upsert(list(range(first, first + len(cells))), vectors, payloads)
        if (first // BATCH) % FLUSH_EVERY == FLUSH_EVERY - 1:
            store.flush()
        upsert_seconds += time.perf_counter() - start
    start = time.perf_counter()
    store.flush()
    upsert_seconds += time.perf_counter() - start
    optimize_start = time.perf_counter()
    store.optimize()
    optimize_seconds = time.perf_counter() - optimize_start
    store.close()
    reopen_start = time.perf_counter()
    store = open_store(f"edge:{args.dir}", spec)
    reopen_seconds = time.perf_counter() - reopen_start
    assert store.count() == total

    weights = counts / counts.sum()
    query_cells = rng.choice(len(counts), size=args.queries, p=weights)
    queries = centres[query_cells] + rng.normal(size=(args.queries, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    def one_pass() -> tuple[list[float], list[float]]:
        single, triple = [], []
        for q in range(args.queries):
            t = time.perf_counter()
            hits = store.search(queries[q:q + 1], [int(query_cells[q])], k=10)
            single.append(time.perf_counter() - t)
            assert np.isfinite(hits.lat[0, : min(10, counts[query_cells[q]])]).all()
            t = time.perf_counter()
            store.search(queries[q:q + 1], [three_cells[q]], k=10)
            triple.append(time.perf_counter() - t)
        return single, triple

    three_cells = [[int(c)] + [int(x) for x in rng.choice(len(counts), size=2, p=weights)] for c in query_cells]
    cold_single, cold_triple = one_pass()  # first touch of each cell's pages after reopening
    single, triple = one_pass()
    batch_start = time.perf_counter()
    store.search(queries[:256], [[int(c)] for c in query_cells[:256]], k=10)
    batch_ms = (time.perf_counter() - batch_start) * 1000 / 256
    unfiltered, scanned, recall = [], [], []  # the global top-10 that retrieval and fused run for every photo
    for q in range(args.global_queries):
        t = time.perf_counter()
        found = store.search(queries[q:q + 1], None, k=10)
        unfiltered.append(time.perf_counter() - t)
        t = time.perf_counter()
        exact = store.search(queries[q:q + 1], None, k=10, exact=True)
        scanned.append(time.perf_counter() - t)
        recall.append(len(set(found.ids[0].tolist()) & set(exact.ids[0].tolist())) / 10)
    report = {
        "points": total, "dim": DIM, "cells": int((counts > 0).sum()), "backend": "qdrant-edge-py (Edge)",
        "cpu_count": os.cpu_count(),
        "upsert_points_per_second": round(total / upsert_seconds, 1), "upsert_seconds": round(upsert_seconds, 1),
        "optimize_seconds": round(optimize_seconds, 1), "reopen_seconds": round(reopen_seconds, 2),
        "single_cell_top10": percentiles(single), "three_cell_top10": percentiles(triple),
        "cold_single_cell_top10": percentiles(cold_single), "cold_three_cell_top10": percentiles(cold_triple),
        "batched_256_single_cell_ms_per_query": round(batch_ms, 3), "global_top10": percentiles(unfiltered),
        "global_top10_exact_scan": percentiles(scanned), "global_recall_at_10": round(float(np.mean(recall)), 4),
        "rss_mb": round(rss_mb(), 1), "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "disk_mb": round(disk_mb(args.dir), 1), "queries": args.queries,
    }
    store.close()
    RESULTS.mkdir(exist_ok=True)
    name = "store" if args.scale == 1.0 else f"store_scale{args.scale:g}"
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    s, t = report["single_cell_top10"], report["three_cell_top10"]
    cs, ct = report["cold_single_cell_top10"], report["cold_three_cell_top10"]
    g, ge = report["global_top10"], report["global_top10_exact_scan"]
    lines = ["# Store benchmark (Qdrant Edge)\n",
             f"{total:,} points × {DIM}-d in {report['cells']:,} cells shaped by icmr21_cells_31145.csv; "
             f"{args.queries:,} queries drawn in proportion to cell size, measured twice (the first pass touches each cell's "
             f"pages after reopening; the second is warm); lat/lon of hits included, through the store API. "
             f"{os.cpu_count()} CPU cores.\n",
             "| measure | value |", "|---|---|",
             f"| upsert (batches of {BATCH:,}, flush every {BATCH * FLUSH_EVERY:,} points, flushes included) | "
             f"{report['upsert_points_per_second']:,} points/s ({report['upsert_seconds']} s) |",
             f"| optimize after bulk load (builds the global HNSW graph over int8 vectors) | {report['optimize_seconds']} s |",
             f"| single-cell top-10 p50 / p95 / p99 (warm) | {s['p50_ms']} / {s['p95_ms']} / {s['p99_ms']} ms |",
             f"| 3-cell top-10 p50 / p95 / p99 (warm) | {t['p50_ms']} / {t['p95_ms']} / {t['p99_ms']} ms |",
             f"| single-cell top-10, first pass after reopen | {cs['p50_ms']} / {cs['p95_ms']} / {cs['p99_ms']} ms |",
             f"| 3-cell top-10, first pass after reopen | {ct['p50_ms']} / {ct['p95_ms']} / {ct['p99_ms']} ms |",
             f"| batched (256 queries) single-cell | {batch_ms:.3f} ms per query |",
             f"| global (unfiltered) top-10 p50 / p95 / p99, {args.global_queries} queries (HNSW over int8, "
             f"rescored) | {g['p50_ms']} / {g['p95_ms']} / {g['p99_ms']} ms |",
             f"| the same, scanning every vector exactly (`exact=True`; stores made before the graph) | "
             f"{ge['p50_ms']} / {ge['p95_ms']} / {ge['p99_ms']} ms |",
             f"| recall@10 of the graph's global top-10 against the exact scan | {report['global_recall_at_10']} |",
             f"| resident memory after reopen + queries | {report['rss_mb']:,} MB (peak {report['peak_rss_mb']:,} MB) |",
             f"| disk | {report['disk_mb']:,} MB |",
             f"| reopen | {report['reopen_seconds']} s |"]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
