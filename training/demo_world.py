"""A SYNTHETIC demo world: photos rendered so that their appearance depends on where they were "taken".

Places are scattered over the globe; each place has a palette derived from its latitude and longitude, a
skyline of "buildings" whose heights follow a per-place pattern, and per-photo variation (viewpoint shift,
lighting, noise). Nothing here is real: every file and manifest row says SYNTHETIC.
"""

from __future__ import annotations

import colorsys
import csv
from pathlib import Path

import numpy as np
from PIL import Image

SOURCE = "synthetic-demo-world"


def _place_style(lat: float, lon: float, rng: np.random.Generator) -> dict:
    hue = (lon + 180) / 360
    lightness = 0.35 + 0.3 * (lat + 90) / 180
    sky = np.array(colorsys.hls_to_rgb((hue + 0.5) % 1, 0.75, 0.5)) * 255
    ground = np.array(colorsys.hls_to_rgb(hue, lightness, 0.6)) * 255
    return {"sky": sky, "ground": ground, "heights": rng.uniform(0.2, 0.8, 12), "stripe": int(rng.integers(3, 12))}


def render(style: dict, rng: np.random.Generator, size: tuple[int, int] = (200, 150)) -> Image.Image:
    width, height = size
    image = np.empty((height, width, 3), dtype=np.float64)
    horizon = int(height * rng.uniform(0.45, 0.6))
    image[:horizon] = style["sky"]
    image[horizon:] = style["ground"]
    shift = rng.integers(0, width // 6)
    column_width = width / len(style["heights"])
    for k, top in enumerate(style["heights"]):
        x0 = int(k * column_width + shift) % width
        x1 = min(width, x0 + int(column_width * 0.8))
        y0 = int(horizon * (1 - top))
        image[y0:horizon, x0:x1] = style["ground"] * 0.6
        image[y0:horizon:style["stripe"], x0:x1] = style["sky"] * 0.9  # windows
    image *= rng.uniform(0.8, 1.2)  # lighting
    image += rng.normal(0, 12, image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def make_demo_world(out: str | Path, places: int = 24, photos_per_place: int = 25, owners_per_place: int = 3,
                    seed: int = 0) -> Path:
    """Render the world under `out` (images/ and manifest.csv); returns the manifest path."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centres_lat = np.degrees(np.arcsin(rng.uniform(-0.8, 0.9, places)))
    centres_lon = rng.uniform(-180, 180, places)
    rows = []
    for p in range(places):
        style = _place_style(centres_lat[p], centres_lon[p], rng)
        for k in range(photos_per_place):
            name = f"images/synthetic_place{p:02d}_{k:03d}.jpg"
            render(style, rng).save(out / name, quality=90)
            lat = float(np.clip(centres_lat[p] + rng.normal(0, 0.02), -90, 90))
            lon = float((centres_lon[p] + rng.normal(0, 0.02) + 180) % 360 - 180)
            rows.append([name, f"synthetic_place{p:02d}_{k:03d}", f"synthetic_owner_{p:02d}_{k % owners_per_place}",
                         SOURCE, f"{lat:.6f}", f"{lon:.6f}"])
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "photo_id", "owner", "source", "lat", "lon"])
        writer.writerows(rows)
    (out / "README.txt").write_text("SYNTHETIC demo world rendered by geoloc-train demo-world: not real photos.\n")
    return manifest
