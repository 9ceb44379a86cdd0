"""The photo point: one reference photo as the store holds it (id, payload), built in one place.

The payload carries, for every partition level k, the integer class `cell_k` and the S2 token `s2_k` (-1 and ""
where no cell contains the photo), and lat, lon (degrees), photo_id, owner, source, image (where the photo was
read: a path or SHARD#ID) and ingest_time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from locator.store.base import cell_field, point_id, token_field

PAYLOAD_FIELDS = ("lat", "lon", "photo_id", "owner", "source", "image", "ingest_time")


@dataclass(frozen=True)
class PhotoPoint:
    photo_id: str
    source: str
    lat: float
    lon: float
    owner: str = ""
    image: str = ""
    cells: tuple[int, ...] = ()
    tokens: tuple[str, ...] = ()
    ingest_time: str = ""

    @property
    def id(self) -> int:
        return point_id(self.source, self.photo_id)

    def payload(self) -> dict:
        out = {"lat": float(self.lat), "lon": float(self.lon), "photo_id": self.photo_id, "owner": self.owner,
               "source": self.source, "image": self.image, "ingest_time": self.ingest_time}
        for level, (cell, token) in enumerate(zip(self.cells, self.tokens)):
            out[cell_field(level)] = int(cell)
            out[token_field(level)] = token
        return out

    @classmethod
    def from_payload(cls, payload: dict) -> PhotoPoint:
        levels = sorted(int(k.split("_")[1]) for k in payload if k.startswith("cell_"))
        return cls(str(payload.get("photo_id", "")), str(payload.get("source", "")), float(payload["lat"]),
                   float(payload["lon"]), str(payload.get("owner", "")), str(payload.get("image", "")),
                   tuple(int(payload[cell_field(k)]) for k in levels),
                   tuple(str(payload.get(token_field(k), "")) for k in levels), str(payload.get("ingest_time", "")))

    @classmethod
    def placed(cls, photo_id: str, source: str, lat: float, lon: float, partitions, owner: str = "", image: str = "",
               cells: list[int] | None = None, now: str | None = None) -> PhotoPoint:
        """A point with its cell in every partition (looked up unless `cells` is given) and an ingest time."""
        if cells is None:
            cells = [int(p.lookup([lat], [lon])[0]) for p in partitions]
        tokens = tuple(p.tokens[c] if c >= 0 else "" for p, c in zip(partitions, cells))
        return cls(str(photo_id), str(source), float(lat), float(lon), str(owner), str(image),
                   tuple(int(c) for c in cells), tokens, now or utc_now())


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
