"""Listing the photos to ingest, as plain rows that travel through Ray (records from locator.datasets)."""

from __future__ import annotations

from pathlib import Path

from locator.datasets import MP16Shards, Record, read_dataset
from locator.errors import SettingsError


def record_row(record: Record, data: bytes | None = None) -> dict:
    """A row for Ray; only photos inside shards carry their encoded bytes (`data`)."""
    row = {"image": record.image, "photo_id": record.photo_id, "owner": record.owner, "source": record.source,
           "lat": record.lat, "lon": record.lon}
    if data is not None:
        row["data"] = data
    return row


def list_rows(data: str | Path | None = None, images: str | Path | None = None,
              mp16_shards: list[str | Path] | None = None, mp16_metadata: str | Path | None = None) -> list[dict]:
    """Rows for a manifest CSV, benchmark CSV or EXIF-GPS folder (`data`), or MP16 msgpack shards with metadata."""
    if mp16_shards:
        if mp16_metadata is None:
            raise SettingsError("MP16 shards need their metadata CSV (--mp16-metadata)")
        return [record_row(r, data) for r, data in MP16Shards([Path(s) for s in mp16_shards], Path(mp16_metadata))]
    if data is None:
        raise SettingsError("nothing to ingest: give --data (manifest, benchmark CSV or folder) or --mp16-shards")
    return [record_row(r) for r in read_dataset(data, images_dir=images)]
