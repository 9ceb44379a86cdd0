"""Partitions of the Earth into S2 cells: lookup of coordinates, GeoEstimation's CSV format, hierarchies."""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from locator import s2
from locator.errors import DataError
from locator.geo import latlon_to_xyz, validate_latlon

NO_CELL = -1
_COLUMNS = ["class_label", "hex_id", "imgs_per_cell", "latitude_mean", "longitude_mean"]


class PartitionError(DataError):
    """A partition file or cell set that cannot be used."""


@dataclass(frozen=True)
class Partition:
    """Disjoint S2 cells, indexed by class label 0..n-1.

    `tokens[k]` is cell k's S2 token, `counts[k]` its number of photos and (`lat[k]`, `lon[k]`) its centre in
    degrees (the spherical mean of its photos).
    """

    tokens: tuple[str, ...]
    counts: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    num_images: int | None = None
    min_concept_probability: str = "---"

    def __post_init__(self) -> None:
        n = len(self.tokens)
        if not (len(self.counts) == len(self.lat) == len(self.lon) == n):
            raise PartitionError("tokens, counts, lat and lon must have one entry per cell")
        validate_latlon(self.lat, self.lon, "partition cell centres")
        ids = s2.tokens_to_ids(self.tokens) if n else np.zeros(0, dtype=np.uint64)
        order = np.argsort(ids, kind="stable")
        lo, hi = s2.range_min(ids[order]), s2.range_max(ids[order])
        overlap = np.flatnonzero(lo[1:] <= hi[:-1])
        if overlap.size:
            a, b = order[overlap[0]], order[overlap[0] + 1]
            raise PartitionError(f"cells {self.tokens[a]} and {self.tokens[b]} overlap; a partition needs disjoint cells")
        object.__setattr__(self, "_ids", ids)
        object.__setattr__(self, "_order", order)
        object.__setattr__(self, "_lo", lo)
        object.__setattr__(self, "_hi", hi)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def cell_ids(self) -> np.ndarray:
        """uint64 S2 ids, one per class."""
        return self._ids

    @property
    def levels(self) -> np.ndarray:
        """S2 level of each cell."""
        return s2.levels(self._ids)

    @functools.cached_property
    def centres_xyz(self) -> np.ndarray:
        """(cells, 3) unit vectors of the cell centres; computed once (1.7 ms at 12,893 cells, a request's worth)."""
        return latlon_to_xyz(self.lat, self.lon)

    def lookup(self, lat: ArrayLike, lon: ArrayLike) -> np.ndarray:
        """Class index of the cell containing each point, or NO_CELL (-1) where no cell does."""
        lat_arr, lon_arr = validate_latlon(np.ravel(lat), np.ravel(lon), "lookup coordinates")
        return self.lookup_leaf_ids(s2.leaf_ids(lat_arr, lon_arr))

    def lookup_leaf_ids(self, leaves: np.ndarray) -> np.ndarray:
        """Class index of the cell containing each S2 leaf id, or NO_CELL."""
        if len(self) == 0:
            return np.full(len(leaves), NO_CELL, dtype=np.int64)
        pos = np.searchsorted(self._lo, leaves, side="right") - 1
        safe = np.clip(pos, 0, None)
        inside = (pos >= 0) & (leaves <= self._hi[safe])
        return np.where(inside, self._order[safe], NO_CELL).astype(np.int64)

    @classmethod
    def read_csv(cls, path: str | Path) -> Partition:
        """Read GeoEstimation's format: `num_images: N`, `min_concept_probability: …`, then the cell rows."""
        path = Path(path)
        try:
            with path.open(newline="") as handle:
                header = [handle.readline().strip() for _ in range(2)]
                rows = list(csv.DictReader(handle))
        except OSError as exc:
            raise PartitionError(f"{path}: cannot read partition file ({exc})") from exc
        meta = _parse_header(path, header)
        if not rows or set(_COLUMNS) - set(rows[0]):
            raise PartitionError(f"{path}: expected columns {','.join(_COLUMNS)} after the two header lines")
        rows.sort(key=lambda r: int(r["class_label"]))
        labels = [int(r["class_label"]) for r in rows]
        if labels != list(range(len(rows))):
            raise PartitionError(f"{path}: class labels must be 0..{len(rows) - 1} without gaps")
        try:
            return cls(
                tokens=tuple(r["hex_id"].strip() for r in rows),
                counts=np.array([int(r["imgs_per_cell"]) for r in rows], dtype=np.int64),
                lat=np.array([float(r["latitude_mean"]) for r in rows]),
                lon=np.array([float(r["longitude_mean"]) for r in rows]),
                num_images=meta["num_images"],
                min_concept_probability=meta["min_concept_probability"],
            )
        except (ValueError, DataError) as exc:
            raise PartitionError(f"{path}: {exc}") from exc

    def write_csv(self, path: str | Path) -> None:
        """Write GeoEstimation's format (readable by `read_csv` and by GeoEstimation itself)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        num_images = self.num_images if self.num_images is not None else int(self.counts.sum())
        with path.open("w", newline="") as handle:
            handle.write(f"num_images: {num_images}\nmin_concept_probability: {self.min_concept_probability}\n")
            writer = csv.writer(handle)
            writer.writerow(_COLUMNS)
            for k, token in enumerate(self.tokens):
                writer.writerow([k, token, int(self.counts[k]), repr(float(self.lat[k])), repr(float(self.lon[k]))])


def _parse_header(path: Path, header: list[str]) -> dict:
    keys = [line.split(":", 1)[0].strip() for line in header]
    if keys != ["num_images", "min_concept_probability"]:
        raise PartitionError(f"{path}: first two lines must be 'num_images: N' and 'min_concept_probability: …'")
    values = [line.split(":", 1)[1].strip() for line in header]
    try:
        num_images = int(values[0])
    except ValueError as exc:
        raise PartitionError(f"{path}: num_images is not an integer: {values[0]!r}") from exc
    return {"num_images": num_images, "min_concept_probability": values[1]}


class Hierarchy:
    """Partitions ordered coarse → fine, with each finest cell's ancestor class in every partition.

    `ancestors[f, level]` is the class index, in `partitions[level]`, of the cell containing finest cell f
    (the last column is f itself).
    """

    def __init__(self, partitions: list[Partition]) -> None:
        if not partitions:
            raise PartitionError("a hierarchy needs at least one partition")
        self.partitions = list(partitions)
        fine = self.partitions[-1]
        columns = []
        for depth, coarse in enumerate(self.partitions):
            column = coarse.lookup_leaf_ids(s2.range_min(fine.cell_ids))
            same_at_end = coarse.lookup_leaf_ids(s2.range_max(fine.cell_ids))
            broken = np.flatnonzero((column == NO_CELL) | (column != same_at_end))
            if broken.size:
                raise PartitionError(
                    f"partition {depth} (of {len(self.partitions)}, coarse to fine) has no single cell containing "
                    f"fine cell {fine.tokens[broken[0]]} ({broken.size} such cells)"
                )
            columns.append(column)
        self.ancestors = np.stack(columns, axis=1)

    def __len__(self) -> int:
        return len(self.partitions)
