"""`geoloc serve`: the API against the app, its limits, and a browser test of the page in headless Chromium."""

import asyncio
import io
import json
from pathlib import Path
import shutil
from collections import Counter
import socket
import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from locator.api import Locator
from locator.errors import SettingsError
from locator.methods import LocateSettings
from locator.preprocessing import Preprocessing
from locator.service.app import create_app
from locator.service.collection import ServedCollection, WarmUpStopped
from locator.service.settings import ServiceSettings
from locator.store import PhotoPoint, point_id
from tests.locator.located_world import build
from tests import chromium
from tests.photo_world import with_gps_exif


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build(tmp_path_factory.mktemp("serve"))


def _client(world, tmp_path, **settings):
    shutil.copytree(world["root"] / "store", tmp_path / "store")
    locator = Locator.load(world["bundle_dir"], store=f"edge:{tmp_path / 'store'}", device="cpu")
    collection = ServedCollection(locator, tmp_path / "uploads")
    return TestClient(create_app(collection, ServiceSettings(**settings))), locator


def _jpeg(colour=(200, 30, 30), size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_health_locate_and_evidence(world, tmp_path):
    client, locator = _client(world, tmp_path)
    with client:
        health = client.get("/v1/health").json()
        assert health["status"] == "ok" and health["points"] == len(world["background"])
        assert health["bundle"] == locator.bundle.fingerprint and health["method"] == "fused"
        query = world["queries"][0]
        files = [("images", ("q.jpg", open(query.image, "rb").read(), "image/jpeg")),
                 ("images", ("notes.jpg", b"this is text", "image/jpeg"))]
        body = client.post("/v1/locate", files=files, params={"k": 5}).json()
        good, bad = body["predictions"]
        direct = locator.locate([query.image], k=5)[0]
        assert good["ok"] and (good["lat"], good["lon"]) == pytest.approx((direct.lat, direct.lon))
        assert good["image"] == "q.jpg" and len(good["cell_polygon"]) == 4
        assert 0 <= good["confidence"] <= 1 and good["radius_km"] > 0
        neighbour = good["neighbours"][0]
        assert {"photo_id", "lat", "lon", "similarity", "distance_km", "thumbnail"} <= set(neighbour)
        assert "/" not in neighbour["image"] and neighbour["image"].endswith(".jpg")  # no server folders
        thumb = client.get(neighbour["thumbnail"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert max(Image.open(io.BytesIO(thumb.content)).size) <= 160
        assert not bad["ok"] and "notes.jpg" in bad["error"] and bad["lat"] is None
        assert client.post("/v1/locate", files=files[:1], params={"method": "nope"}).status_code == 422
        cells = client.get("/v1/cells").json()
        assert cells["total"] == len(world["background"])
        page = client.get("/v1/points", params={"limit": 7}).json()
        assert page["total"] == len(world["background"]) and len(page["points"]) == 7
        assert all("/" not in row["image"] for row in page["points"])
        metrics = client.get("/metrics").text
        assert 'geoloc_requests_total{route="/v1/locate",status="200"}' in metrics
        assert "geoloc_request_seconds_bucket" in metrics and "geoloc_points" in metrics
    locator.close()


def test_the_service_stops_its_batching_loop_when_it_shuts_down(world, tmp_path):
    client, locator = _client(world, tmp_path)
    app, photo = client.app, open(world["queries"][0].image, "rb").read()
    batcher = app.state.batcher

    async def locate_once_then_shut_down() -> bool:
        async with app.router.lifespan_context(app):
            (prediction,) = await batcher.submit([photo], LocateSettings())
            loop = batcher.task
            assert prediction.ok and not loop.done()  # the loop waits for the next request
        return loop.done()

    assert asyncio.run(locate_once_then_shut_down())
    locator.close()


def test_adding_a_photo_makes_it_findable_and_is_idempotent(world, tmp_path):
    client, locator = _client(world, tmp_path)
    world_sources = sorted({r.source for r in world["background"]})
    info = locator.bundle.config["fusion"]["info"]
    with client:
        info["fitted_sources"] = []  # whatever the collection holds is counted, however it got there
        health = client.get("/v1/health").json()
        assert health["refit_advised_for"] == world_sources and sum(health["sources"].values()) == health["points"]
        info["fitted_sources"] = world_sources
        health = client.get("/v1/health").json()
        before = health["points"]
        assert health["refit_advised_for"] == []
        assert client.get("/v1/cells").json()["total"] == before  # the collection view's counts and ids, cached
        assert client.get("/v1/points", params={"limit": 1}).json()["total"] == before
        form = {"lat": "10.5", "lon": "-20.25", "photo_id": "red-square", "owner": "analyst", "source": "field"}
        answer = client.post("/v1/photos", files={"image": ("a.jpg", _jpeg(), "image/jpeg")}, data=form)
        assert answer.status_code == 201, answer.text
        assert client.get("/v1/health").json()["refit_advised_for"] == ["field"]
        moved = {**form, "lat": "-33.9", "lon": "151.2"}  # the same photo again, placed elsewhere: replaces itself
        again = client.post("/v1/photos", files={"image": ("a.jpg", _jpeg(), "image/jpeg")}, data=moved)
        assert again.json()["id"] == answer.json()["id"]
        assert answer.json()["replaced"] is False and again.json()["replaced"] is True
        health = client.get("/v1/health").json()
        assert health["points"] == before + 1 and health["sources"]["field"] == 1
        listed = client.get("/v1/points", params={"limit": before + 10}).json()
        assert listed["total"] == before + 1 and answer.json()["id"] in [p["id"] for p in listed["points"]]
        cells = client.get("/v1/cells").json()
        assert cells["total"] == before + 1
        found = client.post("/v1/locate", files=[("images", ("b.jpg", _jpeg(), "image/jpeg"))],
                            params={"method": "retrieval", "k": 1}).json()["predictions"][0]
        assert found["neighbours"][0]["photo_id"] == "red-square"
        assert client.get(found["neighbours"][0]["thumbnail"]).status_code == 200
        bad = client.post("/v1/photos", files={"image": ("a.jpg", _jpeg(), "image/jpeg")},
                          data={**form, "lat": "95"})
        assert bad.status_code == 422 and "invalid coordinate" in bad.json()["detail"]
        unreadable = client.post("/v1/photos", files={"image": ("a.jpg", b"<svg/>", "image/jpeg")},
                                 data={**form, "photo_id": "x"})
        assert unreadable.status_code == 422 and "not an image" in unreadable.json()["detail"]
        assert client.get("/v1/health").json()["points"] == before + 1
    fine, field = locator.bundle.partitions[-1], f"cell_{len(locator.bundle.partitions) - 1}"
    stored = Counter(p[field] for p in locator.store.payloads(locator.store.all_ids()).values())  # every payload
    assert {c["cell"]: c["points"] for c in cells["cells"]} == {fine.tokens[c]: n for c, n in stored.items() if c >= 0}
    locator.close()


def test_removing_a_reference_takes_it_out_of_search_the_view_and_the_uploads(world, tmp_path):
    client, locator = _client(world, tmp_path, token="s3cret")
    auth = {"Authorization": "Bearer s3cret"}
    form = {"lat": "10.5", "lon": "-20.25", "photo_id": "misattributed", "source": "field"}
    with client:
        before = client.get("/v1/health").json()["points"]
        pages = client.get("/v1/points", params={"limit": 500}).json()  # the view's ids are cached from here on
        assert client.get("/v1/points", params={"source": "field"}).json()["total"] == 0
        added = client.post("/v1/photos", files={"image": ("a.jpg", _jpeg(), "image/jpeg")}, data=form,
                            headers=auth).json()
        point = added["id"]
        kept = next(iter(tmp_path.joinpath("uploads").iterdir()))
        of_field = client.get("/v1/points", params={"source": "field"}).json()
        assert of_field["total"] == 1 and [p["photo_id"] for p in of_field["points"]] == ["misattributed"]
        named = client.get("/v1/points", params={"photo_id": "misattributed"}).json()  # in any source
        assert named["total"] == 1 and named["points"][0]["id"] == point
        assert client.get("/v1/points", params={"photo_id": "misattributed", "source": "world"}).json()["total"] == 0
        assert client.delete(f"/v1/photos/{point}").status_code == 401
        assert client.get("/v1/health").json()["points"] == before + 1
        answer = client.delete(f"/v1/photos/{point}", headers=auth)
        assert answer.status_code == 200, answer.text
        assert answer.json()["photo_id"] == "misattributed" and answer.json()["source"] == "field"
        assert client.delete(f"/v1/photos/{point}", headers=auth).status_code == 404
        assert [(r.source, r.photo_id) for r in locator.store.removals()] == [("field", "misattributed")]  # for ingest
        ledger = client.get("/v1/removals").json()
        assert ledger["total"] == 1 and ledger["removals"][0]["id"] == str(point)
        assert {k: ledger["removals"][0][k] for k in ("photo_id", "source", "back")} == \
            {"photo_id": "misattributed", "source": "field", "back": False}
        health = client.get("/v1/health").json()
        assert health["points"] == before and "field" not in health["sources"]
        listed = client.get("/v1/points", params={"limit": 500}).json()
        assert listed["total"] == pages["total"] and point not in [p["id"] for p in listed["points"]]
        assert client.get("/v1/points", params={"source": "field"}).json() == {"total": 0, "offset": 0, "points": []}
        assert client.get("/v1/points", params={"photo_id": "misattributed"}).json()["total"] == 0
        assert client.get("/v1/cells").json()["total"] == before
        assert client.get(f"/v1/photos/{point}/thumbnail").status_code == 404
        found = client.post("/v1/locate", files=[("images", ("b.jpg", _jpeg(), "image/jpeg"))],
                            params={"method": "retrieval", "k": 3}).json()["predictions"][0]
        assert "misattributed" not in [n["photo_id"] for n in found["neighbours"]]
        assert not kept.exists()
        some = listed["points"][0]  # an ingested reference: out of the collection, its photo left where it was
        assert client.delete(f"/v1/photos/{some['id']}", headers=auth).status_code == 200
        assert Path(next(r.image for r in world["background"] if Path(r.image).name == some["image"])).is_file()
        assert 'geoloc_points ' + str(float(before - 1)) in client.get("/metrics").text
        for bad in ("-1", str(2 ** 64), "x"):  # not a point id: a clear 422, never a server error
            assert client.delete(f"/v1/photos/{bad}", headers=auth).status_code == 422
            assert client.get(f"/v1/photos/{bad}/thumbnail").status_code == 422
        # a reference whose photo happens to be named like an upload, outside the uploads folder: left alone
        other = listed["points"][1]
        outside = tmp_path / f"{other['id']}.jpg"
        outside.write_bytes(_jpeg())
        stored = locator.store.payloads([int(other["id"])])[int(other["id"])]
        locator.store.upsert([int(other["id"])], locator.store.vectors([int(other["id"])])[int(other["id"])][None],
                             [{**stored, "image": str(tmp_path / "uploads" / ".." / outside.name)}])
        assert client.delete(f"/v1/photos/{other['id']}", headers=auth).json()["id"] == other["id"]
        assert outside.is_file()
        ledger = client.get("/v1/removals", params={"limit": 2}).json()  # newest first
        assert ledger["total"] == 3 and [r["id"] for r in ledger["removals"]] == [other["id"], some["id"]]
        assert client.post("/v1/photos", files={"image": ("a.jpg", _jpeg(), "image/jpeg")}, data=form,
                           headers=auth).status_code == 201  # added again on purpose
        assert client.get("/v1/removals", params={"offset": 2}).json()["removals"][0]["back"] is True
    locator.close()


def test_the_collection_view_follows_writes_made_beside_the_service(world, tmp_path):
    client, locator = _client(world, tmp_path)
    store, partitions = locator.store, locator.bundle.partitions
    with client:
        whole = client.get("/v1/points", params={"limit": 500}).json()  # the view's ids are kept from here on
        assert client.get("/v1/points", params={"source": "beside"}).json()["total"] == 0
        # Another writer (a replica of a server's collection, an ingest): the store changes, not the service.
        points = [PhotoPoint.placed(f"b{k}", "beside", 10.0 + k, 20.0, partitions) for k in range(3)]
        store.add(points, np.eye(3, store.spec.vector_size, dtype=np.float32))
        grown = client.get("/v1/points", params={"limit": 500}).json()
        assert grown["total"] == whole["total"] + 3
        assert {p["photo_id"] for p in grown["points"]} >= {"b0", "b1", "b2"}
        beside = client.get("/v1/points", params={"source": "beside"}).json()
        assert beside["total"] == 3
        store.remove([points[0].id, int(whole["points"][0]["id"])])
        shrunk = client.get("/v1/points", params={"limit": 500}).json()
        assert shrunk["total"] == whole["total"] + 1
        assert not {points[0].id, int(whole["points"][0]["id"])} & {int(p["id"]) for p in shrunk["points"]}
        assert [p["photo_id"] for p in client.get("/v1/points", params={"source": "beside"}).json()["points"]] \
            == sorted(["b1", "b2"], key=lambda name: point_id("beside", name))
    locator.close()


def test_thumbnails_are_revalidated_so_a_replaced_photo_shows_its_new_pixels(world, tmp_path):
    client, locator = _client(world, tmp_path)
    form = {"lat": "10.5", "lon": "-20.25", "photo_id": "p", "source": "field"}
    with client:
        point = client.post("/v1/photos", files={"image": ("a.jpg", _jpeg((200, 30, 30)), "image/jpeg")},
                            data=form).json()["id"]
        first = client.get(f"/v1/photos/{point}/thumbnail")
        assert first.headers["cache-control"] == "no-cache" and first.headers["etag"]
        tag = {"If-None-Match": first.headers["etag"]}
        assert client.get(f"/v1/photos/{point}/thumbnail", headers=tag).status_code == 304
        client.post("/v1/photos", files={"image": ("a.jpg", _jpeg((30, 30, 200)), "image/jpeg")}, data=form)
        again = client.get(f"/v1/photos/{point}/thumbnail", headers=tag)
        assert again.status_code == 200 and again.content != first.content
        blue = np.asarray(Image.open(io.BytesIO(again.content))).reshape(-1, 3).mean(axis=0)
        assert blue[2] > 150 > blue[0]
    locator.close()


def test_exif_gps_is_shown_as_a_claim_and_can_place_an_added_photo(world, tmp_path):
    from sklearn.metrics.pairwise import haversine_distances
    client, locator = _client(world, tmp_path)
    claim = (-12.0463, -77.0428)
    pixels = Image.open(world["queries"][0].image)
    tagged, plain = with_gps_exif(pixels, *claim), _encoded(pixels)
    with client:
        files = [("images", ("tagged.jpg", tagged, "image/jpeg")), ("images", ("plain.jpg", plain, "image/jpeg")),
                 ("images", ("notes.jpg", b"text", "image/jpeg"))]
        shown, bare, bad = client.post("/v1/locate", files=files).json()["predictions"]
        assert (shown["exif_lat"], shown["exif_lon"]) == pytest.approx(claim, abs=1e-6)
        oracle = haversine_distances(np.radians([[shown["lat"], shown["lon"]], list(claim)]))[0, 1] * 6371.0
        assert shown["exif_distance_km"] == pytest.approx(oracle, rel=1e-9)
        assert (shown["lat"], shown["lon"]) == (bare["lat"], bare["lon"])  # a claim, never evidence
        assert bare["exif_lat"] is None and bad["exif_lat"] is None and not bad["ok"]
        before = client.get("/v1/health").json()["points"]
        form = {"photo_id": "from-exif", "source": "field"}
        added = client.post("/v1/photos", files={"image": ("t.jpg", tagged, "image/jpeg")},
                            data={**form, "lat": "", "lon": ""})  # what the page's form sends when they are empty
        assert added.status_code == 201, added.text
        assert added.json()["position_from"] == "exif"
        assert (added.json()["lat"], added.json()["lon"]) == pytest.approx(claim, abs=1e-6)
        stored = locator.store.payloads([int(added.json()["id"])])[int(added.json()["id"])]
        assert (stored["lat"], stored["lon"]) == pytest.approx(claim, abs=1e-6)
        untagged = client.post("/v1/photos", files={"image": ("p.jpg", plain, "image/jpeg")},
                               data={"photo_id": "nowhere"})
        assert untagged.status_code == 422 and "EXIF" in untagged.json()["detail"]
        half = client.post("/v1/photos", files={"image": ("t.jpg", tagged, "image/jpeg")},
                           data={"photo_id": "half", "lat": "10"})
        assert half.status_code == 422 and "both lat and lon" in half.json()["detail"]
        assert client.get("/v1/health").json()["points"] == before + 1
    locator.close()


def _encoded(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()


def test_limits_and_the_token(world, tmp_path):
    client, locator = _client(world, tmp_path, token="s3cret", max_upload_mb=0.05, max_photos=2)
    with client:
        form = {"lat": "1", "lon": "2", "photo_id": "p"}
        image = {"image": ("a.jpg", _jpeg(), "image/jpeg")}
        assert client.post("/v1/photos", files=image, data=form).status_code == 401
        assert client.post("/v1/photos", files=image, data=form,
                           headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.post("/v1/photos", files=image, data=form,
                           headers={"Authorization": "Bearer s3cret"}).status_code == 201
        big = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(big).save(buffer, format="PNG")
        assert client.post("/v1/locate", files=[("images", ("big.png", buffer.getvalue(), "image/png"))]).status_code == 413
        three = [("images", (f"{k}.jpg", _jpeg(), "image/jpeg")) for k in range(3)]
        assert client.post("/v1/locate", files=three).status_code == 413
        assert "access-control-allow-origin" not in client.get("/v1/health", headers={"Origin": "http://x"}).headers
    locator.close()


def test_writes_from_another_sites_page_are_refused(world, tmp_path):
    client, locator = _client(world, tmp_path, cors="https://newsroom.example")
    client.base_url = "http://127.0.0.1:8000"  # the service is bound to loopback (the default host)
    form = {"lat": "1", "lon": "2", "photo_id": "planted", "source": "field"}

    def post(origin: str, host: str | None = None, photo_id: str = "planted"):
        headers = {"Origin": origin, **({"Host": host} if host else {})}
        return client.post("/v1/photos", files={"image": ("a.jpg", _jpeg(), "image/jpeg")},
                           data={**form, "photo_id": photo_id}, headers=headers)

    with client:
        before = client.get("/v1/health").json()["points"]
        planted = post("http://evil.example")
        assert planted.status_code == 403 and "another origin" in planted.json()["detail"]
        # DNS rebinding: a name the attacker points at 127.0.0.1, so that Origin and Host agree
        assert post("http://evil.example:8000", host="evil.example:8000").status_code == 403
        some = client.get("/v1/points", params={"limit": 1}).json()["points"][0]["id"]
        assert client.delete(f"/v1/photos/{some}", headers={"Origin": "http://evil.example"}).status_code == 403
        # a browser that sends no Origin but says the request is cross-site
        assert client.delete(f"/v1/photos/{some}", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
        assert client.get("/v1/health").json()["points"] == before
        # the page's own (also as https, behind a TLS proxy), by either loopback name, and the allowed origin
        for k, (origin, host) in enumerate([("http://127.0.0.1:8000", None), ("https://127.0.0.1:8000", None),
                                            ("http://localhost:8000", "localhost:8000"),
                                            ("https://newsroom.example", None)]):
            answer = post(origin, host, photo_id=f"allowed-{k}")
            assert answer.status_code == 201, answer.text
        assert client.get("/v1/health").json()["points"] == before + 4
    locator.close()
    for any_page in ("*", "null"):
        with pytest.raises(SettingsError, match="give one origin"):
            _client(world, tmp_path / any_page.strip("*") / "x", cors=any_page)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


HOSTILE_ID = '<img src=x onerror="window.__xss=1">'


def test_the_page_shows_the_estimate_and_the_neighbours_in_chromium(world, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    import uvicorn
    client, locator = _client(world, tmp_path)
    locator.bundle.config["fusion"]["info"]["fitted_sources"] = []  # so that the collection view advises a refit
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(client.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    query = Image.open(world["queries"][0].image)
    tagged = tmp_path / "tagged.jpg"
    tagged.write_bytes(with_gps_exif(query, 48.8584, 2.2945))
    added = httpx.post(f"http://127.0.0.1:{port}/v1/photos", files={"image": ("q.jpg", _encoded(query), "image/jpeg")},
                       data={"photo_id": HOSTILE_ID, "lat": "1.5", "lon": "2.5"}, timeout=60)
    assert added.status_code == 201, added.text
    try:
        with playwright.sync_playwright() as p:
            browser = chromium.launch(p)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.set_input_files("#files", tagged)
            page.wait_for_selector(".estimate-marker", timeout=60_000)
            page.wait_for_selector(".neighbour-thumb img", timeout=60_000)
            assert page.locator(".neighbour-marker").count() >= 1
            assert page.locator(".exif-marker").count() == 1 and "EXIF GPS claims" in page.text_content(".result .claim")
            # the same photo, added under a name that is markup, is the first neighbour: shown as text, never run
            assert page.get_attribute(".neighbour-thumb img", "alt") == HOSTILE_ID
            assert page.evaluate("window.__xss") is None
            loaded = page.eval_on_selector_all(".neighbour-thumb img", "imgs => imgs.filter(i => i.naturalWidth > 0).length")
            assert loaded >= 1
            page.locator(".neighbour-marker").first.click(force=True)
            page.wait_for_selector(".leaflet-popup .popup img", timeout=10_000)
            # that first neighbour (the photo added above) proves misattributed: removed from its popup
            page.on("dialog", lambda dialog: dialog.accept())
            page.click(".leaflet-popup .popup button.remove")
            page.wait_for_selector(".neighbour-thumb.removed", timeout=30_000)
            assert "locate the photo again" in page.text_content(".result")
            assert httpx.get(f"http://127.0.0.1:{port}/v1/photos/{added.json()['id']}/thumbnail",
                             timeout=60).status_code == 404
            page.click("#tab-collection")
            page.wait_for_selector(".cell-marker", timeout=30_000)
            page.wait_for_selector("#points tbody tr", timeout=30_000)
            source = world["background"][0].source
            summary = page.text_content("#collection-summary")
            assert f"by source: {source} {len(world['background'])}" in summary, summary
            assert source in page.text_content("#refit-advice") and page.is_visible("#refit-advice")
            # an analyst's geotagged photos, added together with no coordinates typed: each placed by its EXIF GPS
            field = [tmp_path / f"field-{k}.jpg" for k in (1, 2)]
            for k, (path, place) in enumerate(zip(field, [(45.4642, 9.19), (41.9028, 12.4964)])):
                path.write_bytes(with_gps_exif(Image.new("RGB", (64, 48), (40 * k, 200, 90)), *place))
            (tmp_path / "notes.jpg").write_text("not a photo")  # refused on its own; the others still go in
            page.click("#add summary")
            page.set_input_files("#add-form input[name=image]", [str(f) for f in [field[0], tmp_path / "notes.jpg",
                                                                                 field[1]]])
            page.click("#add-form button[type=submit]")
            page.wait_for_function("document.getElementById('add-status').textContent.includes('added 2 of 3')",
                                   timeout=60_000)
            assert page.locator("#add-status .added").count() == 2 and "EXIF GPS" in page.text_content("#add-status")
            assert "notes.jpg: error 422" in page.text_content("#add-status .refused")
            listed = httpx.get(f"http://127.0.0.1:{port}/v1/points", params={"limit": 500}, timeout=60).json()["points"]
            placed = {p["photo_id"]: (p["lat"], p["lon"]) for p in listed if p["source"] == "analyst"}
            assert sorted(placed) == ["field-1", "field-2"]
            assert placed["field-1"] + placed["field-2"] == pytest.approx((45.4642, 9.19, 41.9028, 12.4964), abs=1e-6)
            page.fill("#find", "field-2")  # found by its photo id, in whichever source
            page.press("#find", "Enter")
            page.wait_for_function("document.querySelectorAll('#points tbody tr').length === 1", timeout=30_000)
            assert "field-2" in page.text_content("#points tbody") and "named field-2" in page.text_content("#page")
            page.click("#show-all")
            page.wait_for_function("document.querySelectorAll('#points tbody tr').length > 1", timeout=30_000)
            # one of them proves misattributed: removed from its row in the table, after a confirmation
            page.locator("#collection-summary .source-filter", has_text="analyst 2").click()  # the table: its 2 photos
            page.wait_for_function("document.querySelectorAll('#points tbody tr').length === 2", timeout=30_000)
            assert "of source analyst" in page.text_content("#page")
            page.locator("#points tbody tr", has_text="field-1").locator("button.remove").click()
            page.wait_for_function("document.getElementById('points-status').textContent.includes('removed field-1')",
                                   timeout=30_000)
            listed = httpx.get(f"http://127.0.0.1:{port}/v1/points", params={"limit": 500}, timeout=60).json()["points"]
            assert sorted(p["photo_id"] for p in listed if p["source"] == "analyst") == ["field-2"]
            page.wait_for_function("document.querySelectorAll('#points tbody tr').length === 1", timeout=30_000)
            page.click("#show-all")
            page.wait_for_function("document.querySelectorAll('#points tbody tr').length > 1", timeout=30_000)
            # the source's last photo removed: the source is gone, and the table shows every source again
            page.locator("#collection-summary .source-filter", has_text="analyst 1").click()
            page.wait_for_function("document.querySelectorAll('#points tbody tr').length === 1", timeout=30_000)
            page.locator("#points tbody tr", has_text="field-2").locator("button.remove").click()
            page.wait_for_function("!document.getElementById('collection-summary').textContent.includes('analyst')",
                                   timeout=30_000)
            page.wait_for_function("document.querySelectorAll('#points tbody tr').length > 1", timeout=30_000)
            assert "of source" not in page.text_content("#page")
            # the ledger of removals lists them, newest first
            page.click("#removed summary")
            page.wait_for_function("document.querySelectorAll('#removals tbody tr').length >= 2", timeout=30_000)
            rows = page.locator("#removals tbody tr").all_text_contents()
            assert "field-2" in rows[0] and "analyst" in rows[0] and "field-1" in rows[1]
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        locator.close()


def test_the_locator_is_loaded_on_the_worker_thread_that_runs_it(world, tmp_path, monkeypatch):
    import locator.service.collection as collection_module
    threads = []
    real_load = Locator.load

    def recording_load(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(collection_module.Locator, "load", recording_load)
    shutil.copytree(world["root"] / "store", tmp_path / "store")
    collection = ServedCollection.load(world["bundle_dir"], f"edge:{tmp_path / 'store'}")
    try:
        assert threads and threads[0].startswith("geoloc-worker")
        assert collection.uploads == tmp_path / "store.uploads"
        assert collection.worker.submit(threading.current_thread).result().name == threads[0]
    finally:
        collection.close()


def test_serve_warms_the_model_up_before_it_listens_unless_told_not_to(world, tmp_path, monkeypatch, capsys):
    import uvicorn

    from locator.cli import main as geoloc
    shutil.copytree(world["root"] / "store", tmp_path / "store")
    healths = []

    def run(app, **_):  # instead of listening: what the started service says about itself
        with TestClient(app) as client:
            healths.append(client.get("/v1/health").json())

    monkeypatch.setattr(uvicorn, "run", run)
    args = ["serve", "--bundle", str(world["bundle_dir"]), "--store", f"edge:{tmp_path / 'store'}", "--max-batch", "8"]
    assert geoloc(args) == 0 and geoloc([*args, "--no-warm-up"]) == 0
    warmed, cold = healths
    shapes = len(Preprocessing.from_json(json.loads((world["bundle_dir"] / "config.json").read_text())
                                         ["backbone"]["preprocessing"]).shapes())
    assert warmed["warm_up"]["shapes"] == shapes > 1 and warmed["warm_up"]["batch_sizes"] == [1]  # on a CPU
    assert cold["warm_up"] is None
    assert warmed["points"] == cold["points"] == len(world["background"])  # the warm-up only reads
    assert f"warm-up: {shapes} shapes" in capsys.readouterr().err


def test_the_warm_up_starts_a_bundle_without_a_fused_model_and_stops_when_asked(world, tmp_path):
    client, locator = _client(world, tmp_path)
    collection = client.app.state.collection
    locator.bundle.fusion = None  # the default method cannot run: the warm-up locates with swc
    warmed = collection.warm_up(4)
    assert warmed["method"] == "swc" and warmed["located"] is True
    collection.stop_warm_up.set()
    with pytest.raises(WarmUpStopped):
        collection.warm_up(4)
    locator.close()

