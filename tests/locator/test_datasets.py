import csv
import io

import numpy as np
import pytest
from PIL import Image

from locator.datasets import (DatasetError, Record, exclude_owners, owner_split, read_benchmark_csv,
                              read_dataset, read_exif_folder, read_exif_gps, read_manifest)


def _jpeg(exif: Image.Exif | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 120, 30)).save(buffer, "JPEG", **({"exif": exif} if exif is not None else {}))
    return buffer.getvalue()


def _gps_exif(lat_ref, lat, lon_ref, lon) -> Image.Exif:
    exif = Image.Exif()
    exif.get_ifd(0x8825).update({1: lat_ref, 2: lat, 3: lon_ref, 4: lon})
    return exif


def _write_csv(path, header, rows):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_manifest_with_and_without_source(tmp_path):
    _write_csv(tmp_path / "manifest.csv", ["image", "photo_id", "owner", "lat", "lon", "license"],
               [["images/1.jpg", "1", "ann", "10.5", "-20.25", "4"], ["images/2.jpg", "2", "bob", "-1", "179", "0"]])
    records = read_manifest(tmp_path / "manifest.csv")
    assert records[0] == Record(str(tmp_path / "images/1.jpg"), 10.5, -20.25, "ann", "1", tmp_path.name)
    _write_csv(tmp_path / "extra.csv", ["image", "lat", "lon", "owner", "source", "license"],
               [["a.jpg", "1", "2", "place1", "croatia", "x"]])
    extra = read_manifest(tmp_path / "extra.csv")
    assert extra[0].source == "croatia" and extra[0].photo_id == "a"


def test_benchmark_csv_resolves_images_against_a_folder(tmp_path):
    path = _write_csv(tmp_path / "im2gps3k_places365.csv", ["IMG_ID", "AUTHOR", "LAT", "LON", "S3_Label"],
                      [["123_abc.jpg", "55@N00", "40.7", "-74.0", "1"]])
    (record,) = read_benchmark_csv(path, tmp_path / "imgs")
    assert record.image == str(tmp_path / "imgs" / "123_abc.jpg")
    assert (record.owner, record.photo_id, record.lat, record.lon) == ("55@N00", "123_abc.jpg", 40.7, -74.0)
    assert read_dataset(path, tmp_path / "imgs") == [record]


@pytest.mark.parametrize("rows,message", [
    ([["a.jpg", "x", "1"]], "line 2: lat is not a number"),
    ([["a.jpg", "1", "2"], ["b.jpg", "91", "1"]], "line 3: 1 invalid coordinate"),
    ([["", "1", "2"]], "line 2: empty image"),
])
def test_bad_manifest_rows_name_file_and_line(tmp_path, rows, message):
    path = _write_csv(tmp_path / "m.csv", ["image", "lat", "lon"], rows)
    with pytest.raises(DatasetError, match=message) as info:
        read_manifest(path)
    assert "m.csv" in str(info.value)


def test_manifest_without_coordinates_is_an_error(tmp_path):
    path = _write_csv(tmp_path / "m.csv", ["image", "x", "y"], [["a.jpg", "1", "2"]])
    with pytest.raises(DatasetError, match="m.csv: no column named any of lat"):
        read_manifest(path)


def test_exif_folder_reads_hemispheres_and_reports_photos_without_gps(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "south_west.jpg").write_bytes(_jpeg(_gps_exif("S", (33.0, 51.0, 30.54), "W", (70.0, 40.0, 12.5))))
    (tmp_path / "sub" / "north_east.jpg").write_bytes(_jpeg(_gps_exif(b"N\x00", (0.0, 22.278, 0.0), "E", (36.0, 3.385, 0.0))))
    (tmp_path / "no_gps.jpg").write_bytes(_jpeg())
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    folder = read_exif_folder(tmp_path)
    by_name = {r.photo_id: r for r in folder.records}
    assert by_name["south_west"].lat == pytest.approx(-(33 + 51 / 60 + 30.54 / 3600), abs=1e-12)
    assert by_name["south_west"].lon == pytest.approx(-(70 + 40 / 60 + 12.5 / 3600), abs=1e-12)
    assert by_name["north_east"].lat == pytest.approx(22.278 / 60, abs=1e-12)
    skipped = dict(folder.skipped)
    assert skipped[str(tmp_path / "no_gps.jpg")] == "no GPS position in EXIF"
    assert "broken.jpg" in skipped[str(tmp_path / "broken.jpg")]
    assert len(folder.records) == 2


def test_bad_hemisphere_reference_is_an_error(tmp_path):
    path = tmp_path / "odd.jpg"
    path.write_bytes(_jpeg(_gps_exif("Q", (1.0, 0.0, 0.0), "E", (1.0, 0.0, 0.0))))
    with pytest.raises(DatasetError, match="odd.jpg: malformed EXIF GPS"):
        read_exif_gps(path)


def test_owner_split_keeps_owners_on_one_side():
    rng = np.random.default_rng(0)
    records = [Record(f"{k}.jpg", 0.0, 0.0, owner=f"o{rng.integers(0, 60)}", photo_id=str(k)) for k in range(500)]
    records += [Record(f"x{k}.jpg", 0.0, 0.0, photo_id=f"x{k}") for k in range(20)]  # no owner: own group each
    train, val = owner_split(records, 0.2, seed=3)
    assert len(train) + len(val) == len(records)
    assert not {r.group for r in train} & {r.group for r in val}
    assert 0.2 <= len(val) / len(records) < 0.3
    assert owner_split(records, 0.2, seed=3) == (train, val)


def test_exclude_owners_of_evaluation_sets():
    records = [Record("1", 0, 0, owner="a"), Record("2", 0, 0, owner="b"), Record("3", 0, 0)]
    assert exclude_owners(records, [[Record("9", 0, 0, owner="b")]]) == [records[0], records[2]]


def test_reads_all_of_im2gps2k(shared):
    records = read_manifest(shared / "datasets" / "im2gps2k" / "manifest.csv")
    assert len(records) == 1944
    assert len({r.photo_id for r in records}) == 1944
    assert all(r.owner and r.source == "im2gps2k" for r in records)
    from pathlib import Path
    assert all(Path(r.image).is_file() for r in records)


def test_exif_gps_samples_match_their_manifest(shared):
    folder = shared / "datasets" / "exif_gps"
    with (folder / "manifest.csv").open() as handle:
        expected = {row["path"]: (float(row["lat"]), float(row["lon"])) for row in csv.DictReader(handle)}
    scanned = read_exif_folder(folder)
    assert scanned.skipped == []
    assert len(scanned.records) == len(expected) == 14
    for record in scanned.records:
        lat, lon = expected[record.image.split("/")[-1]]
        assert abs(record.lat - lat) <= 1e-6 and abs(record.lon - lon) <= 1e-6


def test_every_shared_photo_decodes(shared):
    from locator.images import load_image
    records = read_manifest(shared / "datasets" / "im2gps2k" / "manifest.csv")
    records += read_exif_folder(shared / "datasets" / "exif_gps").records
    for record in records:
        image = load_image(record.image)
        assert image.mode == "RGB" and min(image.size) > 0 and image.info == {}
