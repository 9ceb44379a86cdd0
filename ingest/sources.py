"""Where the photos to ingest come from, as a Ray dataset of rows (ingest.rows) whose image bytes never pass
through the driver: MP16 msgpack shards (ingest.shards), manifest and benchmark CSVs (Ray's CSV reader), or a
folder of EXIF-GPS photos (listed by the driver: paths and coordinates only)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.rows import KnownIds
from locator.datasets import Record, read_dataset, read_exif_folder
from locator.errors import DataError, SettingsError
from locator.settings import option

READ_CPUS = 0.25  # read tasks wait on files; they must not starve the decoders and the embedding actor


@dataclass(frozen=True)
class IngestSource:
    data: str | None = option(None, "manifest CSV, benchmark CSV (IMG_ID,AUTHOR,LAT,LON,…) or EXIF-GPS folder")
    images: str | None = option(None, "folder that benchmark IMG_IDs are relative to")
    mp16_metadata: str | None = option(None, "MP16 metadata CSV (IMG_ID,AUTHOR,LAT,LON,…) for --mp16-shards")
    mp16_shards: tuple[str, ...] = option((), "MP16 msgpack shards", cli=False)

    def check(self) -> None:
        if self.mp16_shards:
            if not self.mp16_metadata:
                raise SettingsError("MP16 shards need their metadata CSV (--mp16-metadata)")
            missing = [s for s in self.mp16_shards + (self.mp16_metadata,) if not Path(s).is_file()]
            if missing:
                raise DataError(f"{missing[0]}: no such file")
        elif self.data is None:
            raise SettingsError("nothing to ingest: give --data (manifest, benchmark CSV or folder) or --mp16-shards")
        elif not Path(self.data).exists():
            raise DataError(f"{self.data}: no such file or folder")


def _columns(path: Path) -> tuple[dict[str, str | None], bool]:
    """The CSV's column for each row field, and whether it is a benchmark CSV (IMG_ID); checked before Ray starts."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            names = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read CSV ({exc})") from exc
    lowered = {n.strip().lower(): n for n in names}

    def pick(*options: str, required: bool = False) -> str | None:
        found = next((lowered[o] for o in options if o in lowered), None)
        if required and found is None:
            raise DataError(f"{path}: no column named any of {', '.join(options)} (columns: {', '.join(names)})")
        return found

    benchmark = "img_id" in lowered
    image = pick("img_id") if benchmark else pick("image", "path", required=True)
    return {"image": image, "photo_id": pick("img_id") if benchmark else pick("photo_id"),
            "owner": pick("owner", "author"), "source": None if benchmark else pick("source"),
            "lat": pick("lat", "latitude", required=True), "lon": pick("lon", "lng", "longitude", required=True)}, \
        benchmark


def csv_dataset(path: Path, images: str | None, known_ref):
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import ray

    from ingest.rows import manifest_rows
    columns, benchmark = _columns(path)
    root = Path(images) if benchmark and images else path.parent
    default_source = path.stem if benchmark else path.resolve().parent.name
    text = {c: pa.string() for c in (columns["image"], columns["photo_id"], columns["owner"], columns["source"]) if c}
    ds = ray.data.read_csv(str(path), num_cpus=READ_CPUS, convert_options=pacsv.ConvertOptions(column_types=text))
    return ds.map_batches(manifest_rows, batch_format="pyarrow", num_cpus=READ_CPUS,
                          fn_kwargs={"root": str(root.resolve()), "default_source": default_source,
                                     "columns": columns, "known": known_ref})


def records_dataset(records: list[Record], known: KnownIds):
    """Rows of records the driver listed (an EXIF folder: no image bytes, a few fields per photo)."""
    import pyarrow as pa
    import ray

    from ingest.rows import row_schema, row_status
    lat, lon = np.array([r.lat for r in records]), np.array([r.lon for r in records])
    status = row_status([r.photo_id for r in records], [r.source for r in records], lat, lon, known)
    table = pa.table({"image": [r.image for r in records], "photo_id": [r.photo_id for r in records],
                      "owner": [r.owner for r in records], "source": [r.source for r in records], "lat": lat,
                      "lon": lon, "data": [b""] * len(records), "status": status}, schema=row_schema())
    return ray.data.from_arrow(table)


def source_dataset(source: IngestSource, known: KnownIds):
    """The rows of `source` as a Ray dataset (call with Ray initialised)."""
    import ray

    from ingest.shards import MP16ShardDatasource
    from locator.shards import read_metadata
    known_ref = ray.put(known)
    if source.mp16_shards:
        lookup = ray.remote(num_cpus=READ_CPUS)(read_metadata).remote(source.mp16_metadata)
        return ray.data.read_datasource(MP16ShardDatasource(list(source.mp16_shards), lookup, known_ref),
                                        num_cpus=READ_CPUS)
    path = Path(source.data)
    if path.is_dir() and not (path / "manifest.csv").is_file():
        return records_dataset(read_exif_folder(path).records, known)
    return csv_dataset(path / "manifest.csv" if path.is_dir() else path, source.images, known_ref)


def record_row(record: Record, data: bytes | None = None) -> dict:
    """A row for a pipeline stage called directly (tests, benchmarks), with status "" (to embed)."""
    return {"image": record.image, "photo_id": record.photo_id, "owner": record.owner, "source": record.source,
            "lat": record.lat, "lon": record.lon, "data": data or b"", "status": ""}


def list_rows(data: str | Path | None = None, images: str | Path | None = None,
              mp16_shards: list[str | Path] | None = None, mp16_metadata: str | Path | None = None) -> list[dict]:
    """All rows in memory, for small sets only (the pipeline streams them instead)."""
    if mp16_shards:
        if mp16_metadata is None:
            raise SettingsError("MP16 shards need their metadata CSV (--mp16-metadata)")
        from locator.shards import shard_records
        records, places, _ = shard_records(mp16_shards, mp16_metadata)
        return [record_row(r, place.read()) for r, place in zip(records, places)]
    if data is None:
        raise SettingsError("nothing to ingest: give --data (manifest, benchmark CSV or folder) or --mp16-shards")
    return [record_row(r) for r in read_dataset(data, images_dir=images)]
