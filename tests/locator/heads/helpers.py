"""Small nested partitions for head tests, built directly from S2 cells (locator tests stay free of training/)."""

import numpy as np
import s2sphere

from locator.cells import Partition

PLACES = [(48.85, 2.35), (-33.9, 151.2), (40.7, -74.0), (35.7, 139.7)]


def _partition(cells: list[s2sphere.CellId], rng: np.random.Generator) -> Partition:
    centres = [s2sphere.LatLng.from_point(s2sphere.Cell(c).get_center()) for c in cells]
    return Partition(tuple(c.to_token() for c in cells), rng.integers(5, 50, len(cells)),
                     np.array([c.lat().degrees for c in centres]), np.array([c.lng().degrees for c in centres]))


def nested_partitions(seed: int = 0) -> list[Partition]:
    """Coarse (4 level-3 cells), middle (2 children each) and fine (2 grandchildren per middle cell)."""
    rng = np.random.default_rng(seed)
    coarse = [s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(*p)).parent(3) for p in PLACES]
    middle = [child for cell in coarse for child in list(cell.children())[:2]]
    fine = [child for cell in middle for child in list(cell.children())[1:3]]
    return [_partition(cells, rng) for cells in (coarse, middle, fine)]
