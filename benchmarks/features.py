"""Benchmark: the feature cache on real photos (decode included), with shape buckets and with the exact aspect.

On the im2gps2k photos (or any dataset): the number of distinct input shapes, the aspect error that buckets
introduce, photos/s of `build_feature_cache` (read, decode, resize, backbone) with 32-px buckets and with the
exact aspect, and the cosine between the two features of each photo. On a CPU with native bfloat16 (the default
precision there, `locator.backbone.autocast_dtype`), the bucketed cache once more in float32, with its rate and the
cosine between the two. Also the network alone on uniform tensors. Runs on CUDA when present (the GPU is named in
the results), else on the CPU.

    python benchmarks/features.py [--photos ../shared/datasets/im2gps2k/manifest.csv] [--n 1944]

Writes benchmarks/results/features.json and features.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from locator.backbone import (Preprocessing, compute_dtype, create_backbone, default_device, describe_device,
                              extract_features)
from locator.datasets import read_dataset
from training.features import build_feature_cache

RESULTS = Path(__file__).parent / "results"
ARCH, SIZE = "tf_efficientnet_lite0", 300


def network_rows(device: torch.device) -> list[dict]:
    backbone = create_backbone(ARCH, size=SIZE)
    rows = []
    for batch in ((1, 4, 32) if device.type == "cpu" else (1, 32, 64, 128)):
        tensors = [torch.randn(3, 224, 300) for _ in range(max(64, 4 * batch))]
        extract_features(backbone, tensors[:batch], batch, device)  # warm-up
        start = time.perf_counter()
        extract_features(backbone, tensors, batch, device)
        rows.append({"batch_size": batch, "images_per_second": round(len(tensors) / (time.perf_counter() - start), 1)})
    return rows


def shapes(images: list[str]) -> dict:
    exact, bucketed = Preprocessing(size=SIZE, bucket=0), Preprocessing(size=SIZE)
    sizes = []
    for path in images:
        with Image.open(path) as image:
            sizes.append(image.size)
    errors = []
    for w, h in sizes:
        e, b = exact.target_size(w, h), bucketed.target_size(w, h)
        errors.append(abs((b[0] / b[1]) / (e[0] / e[1]) - 1))
    return {"distinct_shapes": {"exact": len({exact.target_size(*s) for s in sizes}),
                                "bucketed": len({bucketed.target_size(*s) for s in sizes})},
            "aspect_error": {"max": round(max(errors), 4), "mean": round(float(np.mean(errors)), 4)}}


def cache_rate(records, bucket: int, device: torch.device, work: Path, label: str = "",
               precision: str = "auto") -> tuple[float, np.ndarray]:
    backbone = create_backbone(ARCH, size=SIZE, bucket=bucket)
    start = time.perf_counter()
    cache = build_feature_cache(records, backbone, work / f"bucket{bucket}{label}", f"bench-{bucket}", dtype="float32",
                                device=str(device), progress=False, precision=precision)
    seconds = time.perf_counter() - start
    return len(records) / seconds, cache.as_float32()


def cosine(a: np.ndarray, b: np.ndarray) -> dict:
    values = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"min": round(float(values.min()), 4), "mean": round(float(values.mean()), 4)}


def float32_rows(records, device: torch.device, work: Path, bucketed: np.ndarray) -> dict:
    """The bucketed cache in full precision (`--precision float32`), against the default's."""
    rate, full = cache_rate(records, 32, device, work, label="-float32", precision="float32")
    return {"photos_per_second": round(rate, 1), "cosine_vs_default_precision": cosine(bucketed, full)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shared = Path(os.environ.get("GEOLOC_SHARED", "../shared"))
    parser.add_argument("--photos", default=str(shared / "datasets" / "im2gps2k" / "manifest.csv"))
    parser.add_argument("--n", type=int, default=None, help="use the first N photos (default: all)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="time the bucketed cache over the photos this many times over (a steady rate from a few "
                             "hundred photos on a GPU; every copy is decoded again)")
    parser.add_argument("--exact-n", type=int, default=None,
                        help="time the exact aspect on the first N photos only (on a GPU each new shape is "
                             "planned anew by cuDNN, which takes seconds; default: all)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON and markdown go")
    args = parser.parse_args()
    device = default_device()
    records = read_dataset(args.photos)[: args.n]
    precision = str(compute_dtype(device)).removeprefix("torch.")
    report = {"device": str(device), "device_name": describe_device(device), "torch_threads": torch.get_num_threads(),
              "precision": precision,
              "backbone": f"{ARCH} at {SIZE} px", "photos": len(records), **shapes([r.image for r in records])}
    work = Path(tempfile.mkdtemp(prefix="geoloc-features-"))
    try:
        if device.type == "cuda":  # cuDNN plans each shape and batch size once per process: the same stream first
            report["bucketed_first_pass_photos_per_second"] = round(
                cache_rate(records * args.repeat, 32, device, work, "-warm")[0], 1)
        report["bucketed_timed_photos"] = len(records) * args.repeat
        bucketed_rate, bucketed = cache_rate(records * args.repeat, 32, device, work)
        bucketed = bucketed[: len(records)]
        exact_records = records[: args.exact_n]
        exact_rate, exact = cache_rate(exact_records, 0, device, work)
        if precision == "bfloat16":
            report["float32"] = float32_rows(records, device, work, bucketed)
    finally:
        shutil.rmtree(work)
    report.update(photos_per_second={"bucketed": round(bucketed_rate, 1), "exact": round(exact_rate, 1)},
                  exact_photos=len(exact_records),
                  cosine_bucketed_vs_exact=cosine(bucketed[: len(exact)], exact), network=network_rows(device))
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "features.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Feature cache on real photos\n",
             f"{report['photos']:,} photos of `{args.photos}`, {report['backbone']}, on {report['device_name']}, "
             f"{report['torch_threads']} torch threads, computing in {precision}. Decode, resize and backbone "
             "included.\n",
             "| | exact aspect | 32-px shape buckets |", "|---|---|---|",
             f"| distinct input shapes | {report['distinct_shapes']['exact']} | {report['distinct_shapes']['bucketed']} |",
             f"| photos/s | {report['photos_per_second']['exact']} | {report['photos_per_second']['bucketed']} |",
             "",
             *([f"The exact aspect was timed on the first {report['exact_photos']:,} photos only.\n"]
               if report["exact_photos"] < report["photos"] else []),
             *([f"The buckets were timed over {report['bucketed_timed_photos']:,} photos (the photos "
                f"{args.repeat} times over, each decoded again).\n"] if args.repeat > 1 else []),
             *([f"On CUDA the buckets were timed after a first pass over the same stream, in which cuDNN planned each shape "
                f"({report['bucketed_first_pass_photos_per_second']} photos/s).\n"]
               if "bucketed_first_pass_photos_per_second" in report else []),
             f"Aspect change from bucketing: max {100 * report['aspect_error']['max']:.1f} %, mean "
             f"{100 * report['aspect_error']['mean']:.1f} %. Cosine between bucketed and exact-aspect features: "
             f"min {report['cosine_bucketed_vs_exact']['min']}, mean {report['cosine_bucketed_vs_exact']['mean']}.\n",
             *float32_lines(report),
             f"Network alone (uniform 300×224 tensors, {precision}):\n", "| batch | images/s |", "|---|---|"]
    lines += [f"| {r['batch_size']} | {r['images_per_second']} |" for r in report["network"]]
    (args.results / "features.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def float32_lines(report: dict) -> list[str]:
    if "float32" not in report:
        return []
    full = report["float32"]
    return [f"The same bucketed cache in float32 (as on a CPU without native bfloat16): {full['photos_per_second']} "
            f"photos/s; cosine between its features and the bfloat16 ones: min "
            f"{full['cosine_vs_default_precision']['min']}, mean {full['cosine_vs_default_precision']['mean']}.\n"]


if __name__ == "__main__":
    main()
