import numpy as np
import pytest
import s2sphere

from locator.cells import NO_CELL, Hierarchy, Partition, PartitionError


def _ranges_by_s2sphere(tokens) -> tuple[np.ndarray, np.ndarray]:
    cells = [s2sphere.CellId.from_token(t) for t in tokens]
    return (np.array([c.range_min().id() for c in cells], dtype=np.uint64),
            np.array([c.range_max().id() for c in cells], dtype=np.uint64))


def brute_force_lookup(tokens, lat, lon) -> np.ndarray:
    """Independent oracle: scan every cell with s2sphere's own ranges."""
    lo, hi = _ranges_by_s2sphere(tokens)
    out = np.full(len(lat), NO_CELL)
    for k, (a, b) in enumerate(zip(lat, lon)):
        leaf = np.uint64(s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(a, b)).id())
        hits = np.flatnonzero((lo <= leaf) & (leaf <= hi))
        assert len(hits) <= 1
        if len(hits):
            out[k] = hits[0]
    return out


def _toy_partition() -> Partition:
    europe = s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(48.85, 2.35))
    tokens = (europe.parent(4).to_token(), europe.parent(8).next().to_token(),
              s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(-33.9, 151.2)).parent(6).to_token())
    return Partition(tokens=tokens, counts=np.array([10, 5, 7]), lat=np.array([48.0, 47.0, -33.9]),
                     lon=np.array([2.0, 3.0, 151.2]))


def test_overlapping_cells_are_rejected():
    with pytest.raises(PartitionError, match="overlap"):
        _toy_partition()


def _disjoint_partition() -> Partition:
    paris = s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(48.85, 2.35))
    sydney = s2sphere.CellId.from_lat_lng(s2sphere.LatLng.from_degrees(-33.9, 151.2))
    tokens = (paris.parent(5).to_token(), paris.parent(5).next().to_token(), sydney.parent(7).to_token())
    return Partition(tokens=tokens, counts=np.array([10, 5, 7]), lat=np.array([48.85, 47.0, -33.9]),
                     lon=np.array([2.35, 3.0, 151.2]), num_images=30)


def test_lookup_agrees_with_brute_force_scan():
    partition = _disjoint_partition()
    rng = np.random.default_rng(0)
    lat = np.concatenate([rng.normal(48.85, 2, 300), rng.normal(-33.9, 0.5, 300), rng.uniform(-90, 90, 300)])
    lon = np.concatenate([rng.normal(2.35, 2, 300), rng.normal(151.2, 0.5, 300), rng.uniform(-180, 180, 300)])
    ours = partition.lookup(lat, lon)
    assert np.array_equal(ours, brute_force_lookup(partition.tokens, lat, lon))
    assert (ours == NO_CELL).any() and (ours == 2).any() and (ours == 0).any()


def test_csv_round_trip(tmp_path):
    partition = _disjoint_partition()
    path = tmp_path / "cells.csv"
    partition.write_csv(path)
    lines = path.read_text().splitlines()
    assert lines[0] == "num_images: 30" and lines[1].startswith("min_concept_probability:")
    assert lines[2] == "class_label,hex_id,imgs_per_cell,latitude_mean,longitude_mean"
    again = Partition.read_csv(path)
    assert again.tokens == partition.tokens and again.num_images == 30
    assert np.array_equal(again.counts, partition.counts)
    assert np.array_equal(again.lat, partition.lat) and np.array_equal(again.lon, partition.lon)


@pytest.mark.parametrize("text,message", [
    ("class_label,hex_id\n", "first two lines"),
    ("num_images: x\nmin_concept_probability: ---\n", "not an integer"),
    ("num_images: 3\nmin_concept_probability: ---\nclass_label,hex_id\n0,89c\n", "expected columns"),
    ("num_images: 3\nmin_concept_probability: ---\nclass_label,hex_id,imgs_per_cell,latitude_mean,longitude_mean\n"
     "0,zz,3,1.0,2.0\n", "S2 cell token"),
    ("num_images: 3\nmin_concept_probability: ---\nclass_label,hex_id,imgs_per_cell,latitude_mean,longitude_mean\n"
     "1,89c,3,1.0,2.0\n", "without gaps"),
])
def test_bad_partition_files_name_the_file(tmp_path, text, message):
    path = tmp_path / "bad_cells.csv"
    path.write_text(text)
    with pytest.raises(PartitionError, match=message) as info:
        Partition.read_csv(path)
    assert "bad_cells.csv" in str(info.value)


def test_missing_partition_file_is_a_clear_error(tmp_path):
    with pytest.raises(PartitionError, match="nope.csv"):
        Partition.read_csv(tmp_path / "nope.csv")


@pytest.fixture(scope="module")
def mp16_partitions(request):
    from tests.conftest import shared_dir
    root = shared_dir()
    if root is None:
        pytest.skip("no shared/ data: set GEOLOC_SHARED, or place shared/ beside the checkout")
    return [Partition.read_csv(root / "meta" / f"cells_50_{n}.csv") for n in (5000, 2000, 1000)]


def test_reads_the_mp16_partitions(mp16_partitions):
    assert [len(p) for p in mp16_partitions] == [3298, 7202, 12893]
    assert all(p.num_images == 4723695 for p in mp16_partitions)


def test_hierarchy_gives_each_fine_cell_exactly_one_ancestor_per_level(mp16_partitions):
    hierarchy = Hierarchy(mp16_partitions)
    fine_lo, fine_hi = _ranges_by_s2sphere(mp16_partitions[-1].tokens)
    for depth, coarse in enumerate(mp16_partitions):
        lo, hi = _ranges_by_s2sphere(coarse.tokens)
        for start in range(0, len(fine_lo), 2000):
            contains = (lo[None, :] <= fine_lo[start:start + 2000, None]) & (fine_hi[start:start + 2000, None] <= hi[None, :])
            assert np.all(contains.sum(axis=1) == 1)
            assert np.array_equal(np.argmax(contains, axis=1), hierarchy.ancestors[start:start + 2000, depth])
    assert np.array_equal(hierarchy.ancestors[:, -1], np.arange(len(mp16_partitions[-1])))


def test_hierarchy_rejects_a_fine_cell_without_ancestor():
    fine = _disjoint_partition()
    coarse = Partition(tokens=fine.tokens[:1], counts=fine.counts[:1], lat=fine.lat[:1], lon=fine.lon[:1])
    with pytest.raises(PartitionError, match="no single cell containing"):
        Hierarchy([coarse, fine])
