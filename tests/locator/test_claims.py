"""EXIF GPS claims beside the estimate: read from paths and bytes, distances against sklearn's haversine."""

import math

import numpy as np
import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational
from sklearn.metrics.pairwise import haversine_distances

from locator.claims import attach_exif_claims, exif_position
from locator.predictions import Prediction
from tests.photo_world import with_gps_exif


def _oracle_km(a, b) -> float:
    return float(haversine_distances(np.radians([a, b]))[0, 1] * 6371.0)


def test_claims_from_paths_and_bytes_with_their_distance_from_the_estimate(tmp_path):
    image = Image.new("RGB", (16, 12), (40, 90, 140))
    tagged = tmp_path / "tagged.jpg"
    tagged.write_bytes(with_gps_exif(image, 35.6586, 139.7454))
    plain = tmp_path / "plain.jpg"
    image.save(plain)
    malformed = tmp_path / "malformed.jpg"
    exif = Image.Exif()
    exif.get_ifd(0x8825).update({1: "Q", 2: (1.0, 0.0, 0.0), 3: "E", 4: (1.0, 0.0, 0.0)})
    image.save(malformed, exif=exif)
    sources = [tagged, with_gps_exif(image, -22.9519, -43.2105), plain, malformed, image, str(tagged)]
    predictions = [Prediction(image=str(k), lat=48.8584, lon=2.2945) for k in range(len(sources))]
    predictions[-1] = Prediction(image="failed", ok=False, error="x")
    attach_exif_claims(predictions, sources)
    first, second, without, bad, pil, failed = predictions
    assert (first.exif_lat, first.exif_lon) == pytest.approx((35.6586, 139.7454), abs=1e-6)
    assert first.exif_distance_km == pytest.approx(_oracle_km((48.8584, 2.2945), (35.6586, 139.7454)), rel=1e-9)
    assert (second.exif_lat, second.exif_lon) == pytest.approx((-22.9519, -43.2105), abs=1e-6)
    assert all(math.isnan(p.exif_lat) and math.isnan(p.exif_distance_km) for p in (without, bad, pil))
    assert failed.exif_lat == pytest.approx(35.6586, abs=1e-6) and math.isnan(failed.exif_distance_km)
    assert (first.lat, first.lon) == (48.8584, 2.2945)  # the estimate is left as it was
    assert exif_position(b"not an image") is None


@pytest.mark.parametrize("latitude", [(95.0, 0.0, 0.0), (IFDRational(0, 0), 0.0, 0.0)])
def test_claims_out_of_range_or_not_a_number_are_no_claim(latitude):
    exif = Image.Exif()
    exif.get_ifd(0x8825).update({1: "N", 2: latitude, 3: "E", 4: (1.0, 0.0, 0.0)})
    buffer = __import__("io").BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG", exif=exif)
    assert exif_position(buffer.getvalue()) is None


def test_a_header_claiming_a_huge_image_is_no_claim_and_no_crash():
    width = height = (20_000).to_bytes(4, "big")
    header = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + width + height + b"\x08\x02\x00\x00\x00\x00\x00\x00\x00"
    prediction = Prediction(image="bomb.png", ok=False, error="refused as a possible decompression bomb")
    attach_exif_claims([prediction], [header])
    assert math.isnan(prediction.exif_lat)
