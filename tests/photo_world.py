"""A tiny synthetic photo world for tests: places whose photos share a colour and texture, written as a manifest."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

PLACES = [(48.85, 2.35), (40.7, -74.0), (-33.9, 151.2), (35.7, 139.7), (-22.9, -43.2), (55.75, 37.6)]


def make_photo_world(root: Path, photos_per_place: int = 10, size: tuple[int, int] = (64, 48),
                     seed: int = 0, bad_files: bool = False, places: list[tuple[float, float]] | None = None) -> Path:
    """Write `images/*.jpg` and `manifest.csv` under `root`; returns the manifest path."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for p, (lat, lon) in enumerate(places or PLACES):
        colour = rng.integers(0, 255, 3)
        stripes = (np.arange(size[0]) // (4 + 2 * p) % 2)[None, :, None] * 60
        for k in range(photos_per_place):
            pixels = np.clip(colour + stripes + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
            name = f"images/p{p}_{k}.jpg"
            Image.fromarray(pixels).save(root / name, quality=90)
            rows.append([name, f"p{p}_{k}", f"owner{(p * photos_per_place + k) % 7}",
                         lat + rng.normal(0, 0.05), lon + rng.normal(0, 0.05)])
    if bad_files:
        (root / "images" / "empty.jpg").write_bytes(b"")
        (root / "images" / "text.jpg").write_text("not a photo")
        rows += [["images/empty.jpg", "empty", "owner1", 10.0, 10.0], ["images/text.jpg", "text", "owner2", 11.0, 11.0]]
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "photo_id", "owner", "lat", "lon"])
        writer.writerows(rows)
    return manifest


def write_shard_world(manifest: Path, out: Path, shards: int = 3) -> tuple[list[Path], Path]:
    """The manifest's photos as MP16 msgpack shards and a metadata CSV (IMG_ID,AUTHOR,LAT,LON)."""
    from locator.datasets import read_manifest
    from locator.shards import write_shard
    records = read_manifest(manifest)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"shard{k}.msg" for k in range(shards)]
    for k, path in enumerate(paths):
        write_shard(path, ((r.photo_id, Path(r.image).read_bytes()) for r in records[k::shards]))
    metadata = out / "metadata.csv"
    with metadata.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["IMG_ID", "AUTHOR", "LAT", "LON"])
        writer.writerows([r.photo_id, r.owner, r.lat, r.lon] for r in records)
    return paths, metadata


def with_gps_exif(image: Image.Image, lat: float, lon: float) -> bytes:
    """`image` as a JPEG whose EXIF GPS tags say (lat, lon), written as a camera does: degrees, minutes and
    seconds as rationals, with N/S and E/W references."""
    from fractions import Fraction
    import io

    def dms(value: float) -> tuple[Fraction, Fraction, Fraction]:
        degrees, rest = divmod(abs(value), 1)
        minutes, rest = divmod(rest * 60, 1)
        return Fraction(int(degrees)), Fraction(int(minutes)), Fraction(round(rest * 60 * 10_000), 10_000)

    exif = Image.Exif()
    exif.get_ifd(0x8825).update({1: "N" if lat >= 0 else "S", 2: dms(lat), 3: "E" if lon >= 0 else "W", 4: dms(lon)})
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()
