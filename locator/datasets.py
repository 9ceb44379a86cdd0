"""Geotagged photo collections: one record type read from manifests, benchmark CSVs, EXIF folders, MP16 shards.

Coordinates are (lat, lon) in degrees. Splits are grouped by owner, because one person's photos are
near-duplicates of each other and would leak between training and evaluation.
"""

from __future__ import annotations

import csv
import io
import random
import struct
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from locator.errors import DataError, SettingsError
from locator.geo import CoordinateError, validate_latlon
from locator.images import source_label

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic"}
_GPS_IFD = 0x8825


class DatasetError(DataError):
    """A dataset file that cannot be read; the message names the file (and row)."""


@dataclass(frozen=True)
class Record:
    """One geotagged photo. `image` is an absolute path, or `SHARD#ID` for a photo inside an MP16 msgpack shard."""

    image: str
    lat: float
    lon: float
    owner: str = ""
    photo_id: str = ""
    source: str = ""

    @property
    def group(self) -> str:
        """The owner, or the photo itself when the owner is unknown (for grouped splits)."""
        return self.owner or f"photo:{self.source}:{self.photo_id or self.image}"


def _column(fieldnames: list[str], path: Path, *names: str, required: bool = True) -> str | None:
    lowered = {name.strip().lower(): name for name in fieldnames}
    for name in names:
        if name in lowered:
            return lowered[name]
    if required:
        raise DatasetError(f"{path}: no column named any of {', '.join(names)} (columns: {', '.join(fieldnames)})")
    return None


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot read CSV ({exc})") from exc


def _coordinate(row: dict[str, str], column: str, path: Path, line: int) -> float:
    try:
        return float(row[column])
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}, line {line}: {column} is not a number: {row.get(column)!r}") from exc


def _records_from_rows(path: Path, fieldnames: list[str], rows: list[dict[str, str]], image_col: str,
                       image_root: Path, owner_col: str | None, id_col: str | None,
                       source_col: str | None, default_source: str) -> list[Record]:
    lat_col = _column(fieldnames, path, "lat", "latitude")
    lon_col = _column(fieldnames, path, "lon", "lng", "longitude")
    records = []
    for line, row in enumerate(rows, start=2):
        lat, lon = _coordinate(row, lat_col, path, line), _coordinate(row, lon_col, path, line)
        try:
            validate_latlon(lat, lon, f"{path}, line {line}")
        except CoordinateError as exc:
            raise DatasetError(str(exc)) from exc
        image = (row.get(image_col) or "").strip()
        if not image:
            raise DatasetError(f"{path}, line {line}: empty {image_col}")
        records.append(Record(
            image=str(image_root / image),
            lat=lat,
            lon=lon,
            owner=(row.get(owner_col) or "").strip() if owner_col else "",
            photo_id=(row.get(id_col) or "").strip() if id_col else Path(image).stem,
            source=((row.get(source_col) or "").strip() if source_col else "") or default_source,
        ))
    return records


def read_manifest(path: str | Path, source: str | None = None) -> list[Record]:
    """A manifest CSV (`image,lat,lon` plus optional `photo_id,owner,source`); images relative to its folder."""
    path = Path(path)
    fieldnames, rows = _read_rows(path)
    return _records_from_rows(
        path, fieldnames, rows,
        image_col=_column(fieldnames, path, "image", "path"),
        image_root=path.parent.resolve(),
        owner_col=_column(fieldnames, path, "owner", "author", required=False),
        id_col=_column(fieldnames, path, "photo_id", required=False),
        source_col=None if source else _column(fieldnames, path, "source", required=False),
        default_source=source or path.parent.resolve().name,
    )


def read_benchmark_csv(path: str | Path, images_dir: str | Path | None = None, source: str | None = None) -> list[Record]:
    """Im2GPS / Im2GPS3k / YFCC4k / MP16 CSV (`IMG_ID,AUTHOR,LAT,LON,...`); images resolved against `images_dir`."""
    path = Path(path)
    fieldnames, rows = _read_rows(path)
    id_col = _column(fieldnames, path, "img_id")
    records = _records_from_rows(
        path, fieldnames, rows,
        image_col=id_col,
        image_root=(Path(images_dir) if images_dir is not None else path.parent).resolve(),
        owner_col=_column(fieldnames, path, "author", required=False),
        id_col=id_col,
        source_col=None,
        default_source=source or path.stem,
    )
    return records


def _rational_degrees(value: Iterable, what: str) -> float:
    parts = [float(v) for v in value]
    if len(parts) != 3:
        raise ValueError(f"{what} has {len(parts)} parts, expected degrees, minutes, seconds")
    return parts[0] + parts[1] / 60.0 + parts[2] / 3600.0


def _ref(value: object) -> str:
    text = value.decode("ascii", "ignore") if isinstance(value, bytes) else str(value)
    return text.strip("\x00 ").upper()


def read_exif_gps(source: str | Path | bytes, name: str | None = None) -> tuple[float, float] | None:
    """(lat, lon) from a photo's EXIF GPS tags (a path, or the encoded bytes of a photo called `name`), or None when
    it has none. Raises DatasetError if unreadable."""
    path = source_label(source, name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Pillow's notes on damaged tags: the answer says enough
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
                gps = image.getexif().get_ifd(_GPS_IFD)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, TypeError, KeyError, struct.error,
            Image.DecompressionBombError) as exc:  # Pillow's EXIF parser raises any of these on malformed blocks
        raise DatasetError(f"{path}: cannot read image metadata ({exc})") from exc
    if not all(tag in gps for tag in (1, 2, 3, 4)):
        return None
    try:
        lat = _rational_degrees(gps[2], "GPSLatitude")
        lon = _rational_degrees(gps[4], "GPSLongitude")
        lat_ref, lon_ref = _ref(gps[1]), _ref(gps[3])
        if lat_ref not in ("N", "S") or lon_ref not in ("E", "W"):
            raise ValueError(f"hemisphere references {lat_ref!r}/{lon_ref!r}")
        lat, lon = (-lat if lat_ref == "S" else lat), (-lon if lon_ref == "W" else lon)
        validate_latlon(lat, lon)
    except (TypeError, ValueError, ZeroDivisionError, CoordinateError) as exc:
        raise DatasetError(f"{path}: malformed EXIF GPS ({exc})") from exc
    return lat, lon


@dataclass
class ExifFolder:
    """Photos of a folder that carry EXIF GPS, and those that were skipped with the reason."""

    records: list[Record]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def read_exif_folder(folder: str | Path, source: str | None = None) -> ExifFolder:
    """Every photo below `folder` with GPS in EXIF; photos without GPS are reported in `skipped`, never guessed."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder")
    result = ExifFolder(records=[])
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        try:
            position = read_exif_gps(path)
        except DatasetError as exc:
            result.skipped.append((str(path), str(exc)))
            continue
        if position is None:
            result.skipped.append((str(path), "no GPS position in EXIF"))
            continue
        result.records.append(Record(image=str(path), lat=position[0], lon=position[1], photo_id=path.stem,
                                     source=source or folder.name))
    return result


def read_dataset(path: str | Path, images_dir: str | Path | None = None) -> list[Record]:
    """Any supported collection: a folder of EXIF-GPS photos, a benchmark CSV (IMG_ID column) or a manifest CSV."""
    path = Path(path)
    if path.is_dir():
        manifest = path / "manifest.csv"
        return read_manifest(manifest) if manifest.is_file() else read_exif_folder(path).records
    if not path.is_file():
        raise DatasetError(f"{path}: no such file or folder")
    fieldnames, _ = _read_rows(path)
    if any(name.strip().lower() == "img_id" for name in fieldnames):
        return read_benchmark_csv(path, images_dir)
    return read_manifest(path)


def owner_split(records: list[Record], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[Record], list[Record]]:
    """Split into (train, validation) so that no owner has photos on both sides.

    Owners are shuffled with `seed` and moved to validation until it holds at least `val_fraction` of the photos.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise SettingsError(f"val_fraction must be in [0, 1), got {val_fraction}")
    sizes: dict[str, int] = {}
    for record in records:
        sizes[record.group] = sizes.get(record.group, 0) + 1
    owners = sorted(sizes)
    random.Random(seed).shuffle(owners)
    validation_owners: set[str] = set()
    taken = 0
    for owner in owners:
        if taken >= val_fraction * len(records):
            break
        validation_owners.add(owner)
        taken += sizes[owner]
    train = [r for r in records if r.group not in validation_owners]
    validation = [r for r in records if r.group in validation_owners]
    return train, validation


def exclude_owners(records: list[Record], evaluation_sets: Iterable[Iterable[Record]]) -> list[Record]:
    """Records whose owner appears in none of the evaluation sets (photos without an owner are kept)."""
    banned = {r.owner for records_ in evaluation_sets for r in records_ if r.owner}
    return [r for r in records if not r.owner or r.owner not in banned]
