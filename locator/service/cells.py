"""Outlines of S2 cells for the map: the four corners of a cell, as [lat, lon] pairs in degrees."""

from __future__ import annotations

from functools import lru_cache

import s2sphere

from locator.cells import Partition


@lru_cache(maxsize=65_536)
def corners(token: str) -> tuple[tuple[float, float], ...]:
    cell = s2sphere.Cell(s2sphere.CellId.from_token(token))
    points = [s2sphere.LatLng.from_point(cell.get_vertex(k)) for k in range(4)]
    return tuple((round(p.lat().degrees, 6), round(p.lng().degrees, 6)) for p in points)


def cell_polygon(partition: Partition, token: str) -> list[list[float]] | None:
    """The outline of a cell of `partition` (None for no cell)."""
    if not token:
        return None
    return [list(corner) for corner in corners(token)]
