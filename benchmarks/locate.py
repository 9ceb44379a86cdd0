"""Benchmark: per-photo time of `locate` with the default method (fused), split by stage, for photos located
one at a time and 64 at a time.

Stages: decode (read + EXIF orientation + RGB + resize + normalise), backbone, embedding (RRM or normalised raw
features), head, search + scoring (the store queries, DBSCAN, the fused model), and evidence (payloads of the
neighbours), each timed on its own. Then `Locator.locate` end to end, as a user calls it: there decoding overlaps
the backbone (threads beside a GPU), so its time is not the sum of the stages'. Runs on CUDA when present (the
GPU is named), else on the CPU.

    python benchmarks/locate.py --bundle runs/im2gps2k/bundle --store edge:runs/im2gps2k/store \
        --photos runs/im2gps2k/split/val.csv

Writes benchmarks/results/locate.json and locate.md.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from locator.api import Locator
from locator.backbone import describe_device, stream_features
from locator.datasets import read_dataset
from locator.encoder import EncodedPhotos
from locator.loading import load_stream, photo_name

RESULTS = Path(__file__).parent / "results"
STAGES = ("decode", "backbone", "embedding", "head", "search + scoring", "evidence")


def run(locator: Locator, images: list[str], batch_size: int) -> dict[str, float]:
    totals = dict.fromkeys(STAGES, 0.0)
    encoder = locator.encoder

    def timed(stage, fn, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        if encoder.device.type == "cuda":
            torch.cuda.synchronize()
        totals[stage] += time.perf_counter() - start
        return result

    preprocessing = locator.bundle.backbone.preprocessing
    for first in range(0, len(images), batch_size):
        chunk = images[first:first + batch_size]
        tensors = timed("decode", lambda: list(load_stream(chunk, preprocessing, encoder.device, workers=0)))
        features = np.zeros((len(chunk), locator.bundle.backbone.feature_dim), np.float32)
        # The backbone's own batch is the device's default (4 on a CPU, 128 on a GPU), by shape bucket.
        for indices, values in timed("backbone", lambda: list(stream_features(locator.bundle.backbone, tensors,
                                                                             None, encoder.device))):
            features[indices] = values
        embeddings = timed("embedding", encoder.embed_features, features)
        timed("head", encoder.classify, features)
        encoded = EncodedPhotos([photo_name(p, k) for k, p in enumerate(chunk)], [""] * len(chunk), features,
                                embeddings)
        predictions = timed("search + scoring", locator.predict, encoded, evidence=False)
        # What evidence=True adds: one read of the payloads of every neighbour shown.
        timed("evidence", locator.store.payloads, [n.point_id for p in predictions for n in p.neighbours])
    totals["search + scoring"] -= totals["head"]  # predict classifies again
    return {stage: 1000 * seconds / len(images) for stage, seconds in totals.items()}


def end_to_end(locator: Locator, images: list[str], batch_size: int) -> float:
    """Milliseconds a photo for `Locator.locate`, `batch_size` photos a call (evidence included)."""
    start = time.perf_counter()
    for first in range(0, len(images), batch_size):
        predictions = locator.locate(images[first:first + batch_size], chunk=batch_size)
        assert all(p.ok for p in predictions)
    return 1000 * (time.perf_counter() - start) / len(images)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundle", type=Path, default=Path("runs/im2gps2k/bundle"))
    parser.add_argument("--store", default="edge:runs/im2gps2k/store")
    parser.add_argument("--photos", default="runs/im2gps2k/split/val.csv", help="a dataset CSV or folder")
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON and markdown go")
    args = parser.parse_args()
    images = [r.image for r in read_dataset(args.photos)][: args.n]
    report = {"photos": len(images), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "batches": {}}
    with Locator.load(args.bundle, store=args.store) as locator:
        device = locator.encoder.device
        report["device"] = describe_device(device)
        preprocessing = locator.bundle.backbone.preprocessing
        report["distinct_shapes"] = len({tuple(t.shape) for _, t in load_stream(images, preprocessing, device, 0)})
        report["backbone"] = f"{locator.bundle.backbone.arch} at {preprocessing.size} px"
        report["method"] = "fused"
        report["store_points"] = locator.store.count()
        for batch_size in (1, 64):  # warm-up: every shape and batch size once (on a GPU, cuDNN plans each)
            run(locator, images, batch_size)
        for batch_size in (1, 64):
            per_photo = run(locator, images, batch_size)
            total = sum(per_photo.values())
            whole = end_to_end(locator, images, batch_size)
            report["batches"][str(batch_size)] = {"ms_per_photo": {k: round(v, 3) for k, v in per_photo.items()},
                                                  "total_ms": round(total, 2),
                                                  "photos_per_second": round(1000 / total, 1),
                                                  "end_to_end_ms": round(whole, 2),
                                                  "end_to_end_photos_per_second": round(1000 / whole, 1)}
            print(batch_size, report["batches"][str(batch_size)], flush=True)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "locate.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Locate benchmark\n",
             f"{len(images)} photos ({report['distinct_shapes']} distinct input shapes), {report['backbone']}, "
             f"method {report['method']}, store of {report['store_points']:,} points, on {report['device']}. "
             "Milliseconds per photo.\n",
             "| stage | batch 1 | batch 64 |", "|---|---|---|"]
    b1, b64 = report["batches"]["1"], report["batches"]["64"]
    lines += [f"| {s} | {b1['ms_per_photo'][s]} | {b64['ms_per_photo'][s]} |" for s in STAGES]
    lines += [f"| **total** | {b1['total_ms']} | {b64['total_ms']} |",
              f"| photos/s | {b1['photos_per_second']} | {b64['photos_per_second']} |",
              f"| `Locator.locate` end to end, ms a photo | {b1['end_to_end_ms']} | {b64['end_to_end_ms']} |",
              f"| end to end, photos/s | {b1['end_to_end_photos_per_second']} | "
              f"{b64['end_to_end_photos_per_second']} |"]
    (args.results / "locate.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
