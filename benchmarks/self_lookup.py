"""Benchmark: photos that are already in the collection, located as themselves (an analyst's "have we seen this
photo?"). The first N placeable photos of an im2gps2k demo run, each stored in the run's collection, are located
with every method; the share that comes back within 1 km of the photo's own place is reported, and for the fused
method also without its same-photo rule (`duplicate_sim` set out of reach).

    python benchmarks/self_lookup.py --run runs/im2gps2k [--n 300]

Writes benchmarks/results/self_lookup.json and self_lookup.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from locator.api import Locator
from locator.datasets import read_dataset
from locator.geo import haversine_km

RESULTS = Path(__file__).parent / "results"


def within_1km(locator: Locator, records, **options) -> float:
    predictions = locator.locate([r.image for r in records], **options)
    return float(np.mean([p.ok and haversine_km(p.lat, p.lon, r.lat, r.lon) < 1.0
                          for r, p in zip(records, predictions)]))


COPIES = {"JPEG quality 60": ("resize", 1.0, 60), "resized to 70 %, quality 75": ("resize", 0.7, 75),
          "central 90 % crop": ("crop", 0.9, 75), "central 75 % crop": ("crop", 0.75, 75)}


def _copy(path: str, name: str) -> bytes:
    """A re-encoded copy of the photo, resized or centrally cropped by a factor, at a JPEG quality."""
    kind, factor, quality = COPIES[name]
    image = Image.open(path).convert("RGB")
    if kind == "crop":
        dx, dy = int(image.width * (1 - factor) / 2), int(image.height * (1 - factor) / 2)
        image = image.crop((dx, dy, image.width - dx, image.height - dy))
    elif factor != 1.0:
        image = image.resize((int(image.width * factor), int(image.height * factor)))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def copy_similarity(locator: Locator, records) -> dict:
    """Similarity of re-encoded copies to their original, and of each photo to its most similar other photo."""
    original = locator.encode([r.image for r in records]).embeddings
    out = {}
    for name in COPIES:
        copies = locator.encode([_copy(r.image, name) for r in records]).embeddings
        sims = (copies * original).sum(1)
        out[name] = {"min": round(float(sims.min()), 3), "median": round(float(np.median(sims)), 3)}
    others = original @ original.T
    np.fill_diagonal(others, -1.0)
    out["most similar other photo"] = {"min": round(float(others.max(1).min()), 3),
                                       "median": round(float(np.median(others.max(1))), 3),
                                       "max": round(float(others.max()), 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/im2gps2k"), help="an im2gps2k demo run folder")
    parser.add_argument("--n", type=int, default=300, help="stored photos to locate")
    args = parser.parse_args()
    records = read_dataset(args.run / "placeable.csv")[: args.n]
    rows = {}
    with Locator.load(args.run / "bundle", store=f"edge:{args.run / 'store'}") as locator:
        for method in ("fused", "retrieval", "swc", "classifier"):
            rows[method] = within_1km(locator, records, method=method)
        locator.bundle.fusion = dataclasses.replace(locator.bundle.fusion, duplicate_sim=2.0)
        rows["fused without the same-photo rule"] = within_1km(locator, records, method="fused")
        similarity = copy_similarity(locator, records[:100])
    result = {"run": str(args.run), "photos": len(records), "within_1km": rows, "similarity_of_copies": similarity}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "self_lookup.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Stored photos located as themselves ({len(records)} placeable photos of `{args.run}`)", "",
             "| method | within 1 km of the photo's own place, % |", "|---|---|"]
    lines += [f"| {name} | {100 * share:.1f} |" for name, share in rows.items()]
    lines += ["", "Similarity (the collection's space) of re-encoded copies of 100 of them to the original, "
              "against the rule's 0.99:", "", "| copy | min | median |", "|---|---|---|"]
    lines += [f"| {name} | {v['min']:.3f} | {v['median']:.3f} |" for name, v in similarity.items()]
    (RESULTS / "self_lookup.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
