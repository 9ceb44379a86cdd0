"""The ASGI app of `geoloc serve` (FastAPI): locate photos, add reference photos, look into the collection.

    GET  /v1/health                     status, points, bundle fingerprint, default method, sources to refit for
    POST /v1/locate                     multipart `images` (one or more); query: LocateSettings fields
    POST /v1/photos                     multipart `image` + form lat, lon, photo_id[, owner, source]; 201
    DELETE /v1/photos/{id}              take a reference out of the collection (recorded in its ledger of removals)
    GET  /v1/removals?offset=&limit=    a page of that ledger, newest first
    GET  /v1/photos/{id}/thumbnail      a stored reference's thumbnail (from where it was read at ingest)
    GET  /v1/points?offset=&limit=      a page of the collection's payloads; &source= only one source's,
                                        &photo_id= the photos of that id (looked up, not scanned)
    GET  /v1/cells                      points per finest cell, with its centre and outline
    GET  /metrics                       Prometheus text
    GET  /                              the web page

Limits: request bodies above `max_upload_mb` get 413, as do locate requests with more than `max_photos` photos;
a request that takes longer than `timeout_s` gets 504. Image content is identified by Pillow from its bytes,
never from a file name, and Pillow's decompression-bomb limit stays on. Writes need `Authorization: Bearer <token>`
when a token is set, and are refused from pages of another origin. CORS is off unless an origin is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from fastapi import FastAPI, File, Form, HTTPException, Path, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

from locator.errors import GeolocError, SettingsError
from locator.methods import LocateSettings
from locator.service.batcher import MicroBatcher
from locator.service.cells import cell_polygon
from locator.service.collection import ServedCollection, prediction_json
from locator.service.metrics import Metrics
from locator.service.settings import ServiceSettings
from locator.settings import from_mapping
from locator.web_assets import STATIC, VENDOR


POINT_ID = Path(ge=0, lt=2 ** 63, description="a point id, as /v1/locate and /v1/points give it")


def create_app(collection: ServedCollection, settings: ServiceSettings) -> FastAPI:
    if settings.cors in ("*", "null"):
        raise SettingsError(f"--cors {settings.cors}: give one origin (scheme://host[:port]); {settings.cors} would "
                            "let any page write")
    batcher = MicroBatcher(collection.locate_groups, collection.worker, settings.max_batch, settings.batch_wait_ms)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await batcher.close()  # at shutdown: its loop stops, and no request is left waiting for a batch

    app = FastAPI(title="geoloc", docs_url="/docs", redoc_url=None, lifespan=lifespan)
    app.state.batcher, app.state.collection = batcher, collection
    metrics = Metrics()
    fine = collection.locator.bundle.partitions[-1]
    max_bytes = int(settings.max_upload_mb * 2 ** 20)
    _middlewares(app, settings, metrics, max_bytes)

    async def on_worker(fn, *args):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(collection.worker, fn, *args)

    @app.get("/v1/health")
    async def health() -> dict:
        bundle = collection.locator.bundle
        points = await on_worker(collection.count)
        sources = await on_worker(collection.source_counts)
        metrics.points.set(points)
        return {"status": "ok", "points": points, "bundle": bundle.fingerprint,
                "method": LocateSettings().method, "store": collection.store.location,
                "retrieval_space": bundle.retrieval_space, "fused_model": bundle.fusion is not None,
                "sources": sources,
                # sources in the collection that the fused model was fitted without: `geoloc-train fusion --store`
                # refits it
                "refit_advised_for": bundle.info.fusion_unfitted_sources(sources),
                "warm_up": collection.warmed}

    @app.post("/v1/locate")
    async def locate(request: Request, images: list[UploadFile] = File(...)) -> JSONResponse:
        if len(images) > settings.max_photos:
            raise HTTPException(413, f"{len(images)} photos in one request; at most {settings.max_photos}")
        try:
            options = from_mapping(LocateSettings, dict(request.query_params), "query")
        except GeolocError as exc:
            raise HTTPException(422, str(exc)) from exc
        photos = [await f.read() for f in images]
        predictions = await batcher.submit(photos, options)
        for k, (p, upload) in enumerate(zip(predictions, images)):
            p.image = upload.filename or f"photo {k + 1}"
            if p.error.startswith("<"):  # the reader names bytes by their size: name the upload instead
                p.error = f"{p.image}: {p.error.split(': ', 1)[-1]}"
        # Already plain JSON types: FastAPI's own encoder would walk every neighbour again on the event loop.
        return JSONResponse({"predictions": [prediction_json(p, cell_polygon(fine, p.cell_token)) for p in predictions]})

    @app.post("/v1/photos", status_code=201)
    async def add_photo(request: Request, image: UploadFile = File(...), lat: float | None = Form(None),
                        lon: float | None = Form(None), photo_id: str = Form(...), owner: str = Form(""),
                        source: str = Form("service")) -> dict:
        _authorise(request, settings)
        data = await image.read()
        try:
            point, replaced = await on_worker(collection.add_photo, data, lat, lon, photo_id, owner, source)
        except GeolocError as exc:
            raise HTTPException(422, str(exc)) from exc
        if not replaced:
            metrics.points.inc()
        return {"id": str(point.id), "photo_id": point.photo_id, "source": point.source, "lat": point.lat,
                "lon": point.lon, "position_from": "form" if lat is not None else "exif", "replaced": replaced,
                "cell": point.tokens[-1] if point.tokens else ""}

    @app.delete("/v1/photos/{point}")
    async def remove_photo(request: Request, point: int = POINT_ID) -> dict:
        _authorise(request, settings)
        try:
            removed = await on_worker(collection.remove_photo, point)
        except KeyError as exc:
            raise HTTPException(404, f"no photo {point} in the collection") from exc
        except GeolocError as exc:
            raise HTTPException(503, f"photo {point} could not be removed: {exc}") from exc
        metrics.points.dec()
        return {"id": str(point), "photo_id": removed.photo_id, "source": removed.source, "lat": removed.lat,
                "lon": removed.lon, "removed": True}  # the id asked for (a point need not be named by its photo)

    @app.get("/v1/removals")
    async def removals(offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=500)) -> dict:
        total, rows = await on_worker(collection.removals, offset, limit)
        return {"total": total, "offset": offset, "removals": rows}

    @app.get("/v1/photos/{point}/thumbnail")
    async def thumbnail(request: Request, point: int = POINT_ID) -> Response:
        try:
            data = await on_worker(collection.thumbnail, point)
        except KeyError as exc:
            raise HTTPException(404, f"no photo {point} in the collection") from exc
        except (GeolocError, OSError) as exc:
            raise HTTPException(404, f"photo {point}: its image cannot be read where it was ingested ({exc})") from exc
        # A photo id can be added again with other pixels: browsers revalidate (a 304 when unchanged).
        tag = f'"{hashlib.sha1(data).hexdigest()}"'
        headers = {"Cache-Control": "no-cache", "ETag": tag}
        if request.headers.get("if-none-match") == tag:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type="image/jpeg", headers=headers)

    @app.get("/v1/points")
    async def points(offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=500),
                     source: str | None = Query(None), photo_id: str | None = Query(None)) -> dict:
        total, rows = await on_worker(collection.page, offset, limit, source, photo_id)
        for row in rows:
            row["thumbnail"] = f"/v1/photos/{row['id']}/thumbnail"
        return {"total": total, "offset": offset, "points": rows}

    @app.get("/v1/cells")
    async def cells() -> dict:
        counts = await on_worker(collection.cell_counts)
        out = [{"cell": fine.tokens[c], "points": n, "lat": float(fine.lat[c]), "lon": float(fine.lon[c]),
                "polygon": cell_polygon(fine, fine.tokens[c])} for c, n in sorted(counts.items()) if c >= 0 and n > 0]
        return {"cells": out, "without_cell": counts.get(-1, 0), "total": sum(counts.values())}

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.text(), media_type="text/plain; version=0.0.4")

    @app.get("/")
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    if VENDOR.is_dir():
        app.mount("/vendor", StaticFiles(directory=VENDOR), name="vendor")
    return app


def _own_page(origin, request: Request) -> bool:
    """Whether a browser's write comes from this service's own page: the same host and port as the request's Host
    (not the scheme: behind a TLS proxy the page is https while this service sees http), named by an IP address or
    `localhost`. A DNS name is refused unless it is the `--cors` origin: an attacker's name pointed at this
    service's address (DNS rebinding) would otherwise pass for its own page."""
    if origin.netloc != request.headers.get("host") or origin.hostname is None:
        return False
    if origin.hostname == "localhost":
        return True
    try:
        ipaddress.ip_address(origin.hostname)
    except ValueError:
        return False
    return True


def _authorise(request: Request, settings: ServiceSettings) -> None:
    """A write is refused when a browser sends it from another site's page (whose form posts need no CORS
    preflight: without this, any page an analyst opens could plant references), or without the token if set."""
    origin = request.headers.get("origin")
    if origin is None:  # a browser that sent no Origin still says whether the request came from another site
        foreign = request.headers.get("sec-fetch-site") == "cross-site"
    else:
        foreign = origin != (settings.cors or "").rstrip("/") and not _own_page(urlsplit(origin), request)
    if foreign:
        raise HTTPException(403, f"writes from pages of another origin ({origin or 'another site'}) are refused; "
                                 "start the service "
                                 "with --cors ORIGIN to allow one (a page served under a DNS name, e.g. through a "
                                 "proxy, needs it too)")
    if settings.token and request.headers.get("authorization", "") != f"Bearer {settings.token}":
        raise HTTPException(401, "this service needs `Authorization: Bearer <token>` for writes",
                            headers={"WWW-Authenticate": "Bearer"})


def _middlewares(app: FastAPI, settings: ServiceSettings, metrics: Metrics, max_bytes: int) -> None:
    @app.middleware("http")
    async def limits(request: Request, call_next):
        start = time.perf_counter()
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            response = JSONResponse({"detail": f"request body of {int(length):,} bytes; at most {max_bytes:,}"}, 413)
        else:
            try:
                response = await asyncio.wait_for(call_next(request), settings.timeout_s)
            except asyncio.TimeoutError:
                response = JSONResponse({"detail": f"the request took longer than {settings.timeout_s:g} s"}, 504)
        route = request.scope.get("route")
        metrics.observe(getattr(route, "path", "other"), response.status_code, time.perf_counter() - start)
        return response

    if settings.cors:
        from fastapi.middleware.cors import CORSMiddleware
        app.add_middleware(CORSMiddleware, allow_origins=[settings.cors], allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
