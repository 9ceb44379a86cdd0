"""Diagnosis: where a batch-1 `Locator.locate` spends its time, for the next change to the batch-1 path.

On an H100 a photo located alone took 29.1 ms (decode 5.0, backbone 9.2, search and scoring 13.4) against the
≤ 10 ms target, and its backbone stage took 9.2 ms where the network alone takes 3.8 ms. This records:

1. torch.profiler's table of the busiest operators over `--n` photos located one at a time (after a warm-up
   pass), by self time on the device and on the CPU;
2. on CUDA, the backbone at batch 1 under float16 autocast (whose weights are cast again on every call) against
   the copy converted to float16 once that locate runs there since 2026-11-28 (9.3 against 6.0 ms on an H100),
   with the cosine between their features.

    python benchmarks/locate_profile.py --bundle runs/im2gps2k/bundle --store edge:runs/im2gps2k/store \
        --photos runs/im2gps2k/split/val.csv

Writes locate_profile.json and locate_profile.md into --results.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from locator.api import Locator
from locator.backbone import describe_device, forward_batch, prepare
from locator.datasets import read_dataset
from locator.loading import load_stream

RESULTS = Path(__file__).parent / "results"


def profile_table(locator: Locator, images: list[str], cuda: bool) -> str:
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    with torch.profiler.profile(activities=activities) as profiler:
        for image in images:
            locator.locate([image])
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    table = profiler.key_averages().table(sort_by=sort, row_limit=25)
    if cuda:
        table += "\n" + profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
    return table


def half_against_autocast(locator: Locator, images: list[str], calls: int = 50) -> dict:
    """ms a call at batch 1: a float32 copy under float16 autocast (what locate ran before 2026-11-28), and the
    float16 copy locate now runs on CUDA; the cosine between their features."""
    device = locator.encoder.device
    backbone = locator.bundle.backbone
    tensors = [t for _, t in load_stream(images[:calls], backbone.preprocessing, device, 0)
               if isinstance(t, torch.Tensor)]

    def timed(half: bool) -> tuple[float, np.ndarray]:
        model = prepare(backbone, device, half=half)
        for tensor in tensors:  # warm-up: every shape once, as locate's pass did for the other
            forward_batch(model, tensor[None], device, torch.float16)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = np.concatenate([forward_batch(model, tensor[None], device, torch.float16) for tensor in tensors])
        return 1000 * (time.perf_counter() - start) / len(tensors), out

    autocast_ms, a = timed(half=False)
    half_ms, h = timed(half=True)
    cosines = (a * h).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(h, axis=1))
    return {"calls": len(tensors), "autocast_ms": round(autocast_ms, 3), "half_model_ms": round(half_ms, 3),
            "cosine_min": round(float(cosines.min()), 6), "cosine_mean": round(float(cosines.mean()), 6)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=Path("runs/im2gps2k/bundle"))
    parser.add_argument("--store", default="edge:runs/im2gps2k/store")
    parser.add_argument("--photos", default="runs/im2gps2k/split/val.csv")
    parser.add_argument("--n", type=int, default=16, help="photos located one at a time under the profiler")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--compare-half", action="store_true", help="step 2 on a CPU too (to check the script)")
    args = parser.parse_args()
    images = [r.image for r in read_dataset(args.photos)][:64]
    report: dict = {"device": describe_device(), "photos_profiled": min(args.n, len(images))}
    with Locator.load(args.bundle, store=args.store) as locator:
        cuda = locator.encoder.device.type == "cuda"
        for image in images:  # warm-up: every shape once (on a GPU, cuDNN plans each)
            locator.locate([image])
        table = profile_table(locator, images[: args.n], cuda)
        if cuda or args.compare_half:
            report["backbone_batch1"] = half_against_autocast(locator, images)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "locate_profile.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Batch-1 locate, profiled\n\n{report['device']}; {report['photos_profiled']} photos located one at "
             "a time, after a warm-up pass.\n"]
    if "backbone_batch1" in report:
        lines.append(f"Backbone at batch 1: {json.dumps(report['backbone_batch1'])}\n")
    lines.append("```\n" + table + "\n```")
    (args.results / "locate_profile.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:2]))


if __name__ == "__main__":
    main()
