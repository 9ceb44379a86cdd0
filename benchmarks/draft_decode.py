"""Benchmark: decoding JPEGs at a reduced DCT scale (`Preprocessing.draft`) against decoding them in full.

1. Decode and resize time per photo for camera-sized JPEGs (synthetic: smooth gradients plus noise, quality 90)
   of 640 × 480, 2,000 × 1,500 and 4,000 × 3,000 px, full and drafted, one thread.
2. On the real camera photos of `shared/datasets/exif_gps` that are large enough to be drafted (longest side
   ≥ 600 px), the cosine between lite0 features from the drafted and the full decode.

    python benchmarks/draft_decode.py   # writes benchmarks/results/draft_decode.{json,md}
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from locator.backbone import create_backbone, extract_features
from locator.images import load_image
from locator.preprocessing import Preprocessing

RESULTS = Path(__file__).parent / "results"
SIZES = ((640, 480), (2000, 1500), (4000, 3000))


def synthetic_jpeg(width: int, height: int) -> bytes:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x / 16 % 255, y / 12 % 255, (x + y) / 20 % 255], -1) + rng.integers(0, 20, (height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def ms_per_photo(data: bytes, preprocessing: Preprocessing, repeat: int = 5) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        preprocessing.to_tensor(load_image(data, draft_to=preprocessing.draft_to))
    return 1000 * (time.perf_counter() - start) / repeat


def camera_photos() -> list[Path]:
    folder = Path(os.environ.get("GEOLOC_SHARED", "../shared")) / "datasets" / "exif_gps"
    photos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    return [p for p in photos if max(Image.open(p).size) >= 600]


def main() -> None:
    torch.set_num_threads(1)
    full, drafted = Preprocessing(draft=False), Preprocessing(draft=True)
    timing = [{"size": f"{w}x{h}", "full_ms": round(ms_per_photo(synthetic_jpeg(w, h), full), 1),
               "drafted_ms": round(ms_per_photo(synthetic_jpeg(w, h), drafted), 1)} for w, h in SIZES]
    photos = camera_photos()
    report = {"timing": timing, "camera_photos": len(photos)}
    if photos:
        backbone = create_backbone("tf_efficientnet_lite0", size=300)
        feats = {}
        for name, settings in (("full", full), ("drafted", drafted)):
            tensors = [settings.to_tensor(load_image(p, draft_to=settings.draft_to)) for p in photos]
            feats[name] = extract_features(backbone, tensors, device="cpu")
        a, b = feats["full"], feats["drafted"]
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        report["cosine_drafted_vs_full"] = {"min": round(float(cosine.min()), 4), "mean": round(float(cosine.mean()), 4)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "draft_decode.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Decoding JPEGs at a reduced scale\n", "Decode and resize to 300 px, one thread, ms per photo "
             "(synthetic camera-sized JPEGs):\n", "| JPEG | full | drafted |", "|---|---|---|"]
    lines += [f"| {t['size']} | {t['full_ms']} | {t['drafted_ms']} |" for t in timing]
    if photos:
        c = report["cosine_drafted_vs_full"]
        lines += ["", f"lite0 features of {len(photos)} real camera photos (`exif_gps`, ≥ 600 px), drafted against "
                      f"full decode: cosine min {c['min']}, mean {c['mean']}."]
    (RESULTS / "draft_decode.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
