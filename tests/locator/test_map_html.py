"""The HTML map of `geoloc locate --map`: self-contained, and drawn with no network in headless Chromium."""

import math

import pytest

from locator.map_html import write_map
from locator.predictions import Neighbour, Prediction
from locator.web_assets import VENDOR
from tests import chromium

HOSTILE = '<img src=x onerror="window.__xss=1">'


def _predictions() -> list[Prediction]:
    near = Neighbour(HOSTILE, "field", "a.jpg", 48.86, 2.35, 0.91, 1.2, 7)
    far = Neighbour("n2<!--<script>", "field", "b.jpg", -33.9, 151.2, 0.52, 16_950.0, 8)  # must not end the data
    located = Prediction(image="paris.jpg", ok=True, lat=48.85, lon=2.34, method="fused", cell_token="47e66c",
                         cell_probability=0.4, radius_km=12.0, cluster_size=1, neighbours=[near, far],
                         exif_lat=50.85, exif_lon=4.35, exif_distance_km=262.0)
    failed = Prediction(image="gone.jpg", ok=False, error="gone.jpg: cannot read file", lat=math.nan, lon=math.nan)
    return [located, failed]


def test_the_map_is_written_self_contained(tmp_path):
    if not (VENDOR / "leaflet").is_dir():
        pytest.skip("the npm packages are not installed (make install)")
    page = write_map(tmp_path / "m.html", _predictions(), {"paris.jpg": (48.8566, 2.3522)}, title="a <b>").read_text()
    assert "<script src=" not in page and "<link" not in page  # nothing is fetched at load
    assert "a &lt;b&gt;" in page and '"truth": [48.8566, 2.3522]' in page and "gone.jpg" not in page


def test_the_map_draws_markers_and_coastlines_offline_in_chromium(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    if not (VENDOR / "leaflet").is_dir():
        pytest.skip("the npm packages are not installed (make install)")
    path = write_map(tmp_path / "m.html", _predictions(), {"paris.jpg": (48.8566, 2.3522)})
    with playwright.sync_playwright() as p:
        browser = chromium.launch(p)
        page = browser.new_page()
        requested = []
        page.route("http*://**", lambda route: (requested.append(route.request.url), route.abort()))  # no network
        page.goto(path.as_uri())
        page.wait_for_selector(".estimate-marker", timeout=30_000)
        assert page.locator(".neighbour-marker").count() == 2 and page.locator(".truth-marker").count() == 1
        assert page.locator(".exif-marker").count() == 1
        longest = page.eval_on_selector_all("path", "ps => Math.max(...ps.map(p => (p.getAttribute('d') || '').length))")
        assert longest > 5_000  # the basemap's coastlines (a marker's path is a few dozen characters)
        page.locator(".neighbour-marker").first.click(force=True)
        page.wait_for_selector(".leaflet-popup-content", timeout=10_000)
        assert HOSTILE in page.text_content(".leaflet-popup-content") and page.evaluate("window.__xss") is None
        assert all("openstreetmap" in url for url in requested), requested  # only the optional tiles' probe
        browser.close()
