"""Benchmark: per-photo time of `locate` (search within cell, K = 10, DBSCAN) split by stage, batch 1 and 32.

Stages: decode (read + EXIF orientation + RGB + resize + normalise), backbone, head, RRM, store query, aggregation,
and evidence (payloads of the neighbours). Goal: store query + aggregation ≤ 10 % of the total on a CPU.

    python benchmarks/locate.py --bundle runs/demo/bundle --store edge:runs/demo/store --photos runs/demo/split/val.csv

Writes benchmarks/results/locate.json and locate.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from locator.aggregation import aggregate
from locator.api import Locator
from locator.datasets import read_dataset
from locator.images import load_image
from locator.swc import search_within_cell

RESULTS = Path(__file__).parent / "results"
STAGES = ("decode", "backbone", "head", "rrm", "store query", "aggregation", "evidence")


def run(locator: Locator, images: list[str], batch_size: int) -> dict[str, float]:
    totals = dict.fromkeys(STAGES, 0.0)
    encoder = locator.encoder

    def timed(stage, fn, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        totals[stage] += time.perf_counter() - start
        return result

    for first in range(0, len(images), batch_size):
        chunk = images[first:first + batch_size]
        tensors = timed("decode", lambda: [encoder.preprocess(load_image(p)) for p in chunk])
        features = timed("backbone", encoder.features, tensors, batch_size)
        _, probabilities = timed("head", encoder.classify, features)
        embeddings = timed("rrm", encoder.embed_features, features)
        hits, _ = timed("store query", search_within_cell, locator.store, embeddings, probabilities, 10)
        for j in range(len(chunk)):
            valid = hits.ids[j] >= 0
            if valid.any():
                timed("aggregation", aggregate, "dbscan", hits.lat[j][valid], hits.lon[j][valid], hits.scores[j][valid])
        timed("evidence", locator.store.payloads, [int(i) for i in hits.ids[hits.ids >= 0]])
    return {stage: 1000 * seconds / len(images) for stage, seconds in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", type=Path, default=Path("runs/demo/bundle"))
    parser.add_argument("--store", default="edge:runs/demo/store")
    parser.add_argument("--photos", default="runs/demo/split/val.csv", help="a dataset CSV or folder")
    parser.add_argument("--n", type=int, default=96)
    args = parser.parse_args()
    images = [r.image for r in read_dataset(args.photos)][: args.n]
    report = {"photos": len(images), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "device": "cuda" if torch.cuda.is_available() else "cpu", "batches": {}}
    with Locator.load(args.bundle, store=args.store) as locator:
        report["backbone"] = f"{locator.bundle.backbone.arch} at {locator.bundle.backbone.preprocessing.size} px"
        report["store_points"] = locator.store.count()
        run(locator, images[:8], 4)  # warm-up
        for batch_size in (1, 32):
            per_photo = run(locator, images, batch_size)
            total = sum(per_photo.values())
            share = (per_photo["store query"] + per_photo["aggregation"]) / total
            report["batches"][str(batch_size)] = {"ms_per_photo": {k: round(v, 3) for k, v in per_photo.items()},
                                                  "total_ms": round(total, 2), "query_and_aggregation_share": round(share, 4)}
            print(batch_size, report["batches"][str(batch_size)], flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "locate.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Locate benchmark\n",
             f"{len(images)} photos, {report['backbone']}, store of {report['store_points']:,} points, "
             f"{report['device']}, {os.cpu_count()} CPU cores. Milliseconds per photo.\n",
             "| stage | batch 1 | batch 32 |", "|---|---|---|"]
    b1, b32 = report["batches"]["1"], report["batches"]["32"]
    lines += [f"| {s} | {b1['ms_per_photo'][s]} | {b32['ms_per_photo'][s]} |" for s in STAGES]
    lines += [f"| **total** | {b1['total_ms']} | {b32['total_ms']} |",
              f"| store query + aggregation share | {100 * b1['query_and_aggregation_share']:.1f} % | "
              f"{100 * b32['query_and_aggregation_share']:.1f} % |"]
    (RESULTS / "locate.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
