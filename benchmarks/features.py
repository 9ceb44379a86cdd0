"""Benchmark: backbone throughput (images/s) on this machine, batch 1 and 32, for lite0 and lite2.

Batch 4 is the CPU default. Inputs are 300×225 tensors (longest side 300, a 4:3 photo), already preprocessed, so only the network is timed.
Writes benchmarks/results/features.json and features.md.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from locator.backbone import create_backbone, default_device, extract_features

RESULTS = Path(__file__).parent / "results"


def images_per_second(arch: str, batch_size: int, images: int) -> float:
    backbone = create_backbone(arch)
    tensors = [torch.randn(3, 225, 300) for _ in range(images)]
    extract_features(backbone, tensors[:batch_size], batch_size=batch_size)  # warm-up
    start = time.perf_counter()
    extract_features(backbone, tensors, batch_size=batch_size)
    return images / (time.perf_counter() - start)


def main() -> None:
    device = default_device()
    rows = []
    for arch in ("tf_efficientnet_lite0", "tf_efficientnet_lite2"):
        for batch_size in (1, 4, 32):
            rate = images_per_second(arch, batch_size, images=64)
            rows.append({"arch": arch, "batch_size": batch_size, "images_per_second": round(rate, 1)})
            print(rows[-1], flush=True)
    report = {"device": str(device), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
              "input": "3x225x300", "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "features.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Backbone throughput\n", f"Device {device}, {os.cpu_count()} CPU cores, input 300×225.\n",
             "| backbone | batch | images/s |", "|---|---|---|"]
    lines += [f"| {r['arch']} | {r['batch_size']} | {r['images_per_second']} |" for r in rows]
    (RESULTS / "features.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
