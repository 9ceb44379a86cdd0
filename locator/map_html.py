"""A self-contained HTML map of predictions: each photo's estimate with its error radius, its neighbours, the
ground truth when known and the position its own EXIF GPS claims when it has one.

Everything the page needs is written into it: the data, Leaflet, topojson-client and a basemap of coastlines and
borders (world-atlas, 1:110 M), from the npm packages that `make install` fetches (`locator.web_assets`), so it
opens with no network; OpenStreetMap tiles are offered beside the basemap when they load. Without those packages
(npm never ran) the page loads Leaflet from a CDN and says so.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path

from locator.predictions import Prediction
from locator.web_assets import STATIC, VENDOR, read_asset

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
__LEAFLET_CSS__
<style>body{margin:0;font-family:sans-serif}#map{height:85vh}
#legend{padding:6px 10px;font-size:13px}.est{color:#d7301f}.nb{color:#2b8cbe}.truth{color:#31a354}
.claim{color:#6a3d9a}</style>
</head><body>
<div id="legend"><b>__TITLE__</b> — <span class="est">● estimate, with its error radius</span>
<span class="nb">● neighbours</span> <span class="truth">● ground truth</span>
<span class="claim">● the photo's own EXIF GPS claim</span> (click a marker for details).
__NOTE__ __ASSETS_NOTE__</div>
<div id="map"></div>
<script>const DATA = __DATA__;
const LAND = __LAND__;
const COUNTRIES = __COUNTRIES__;</script>
__SCRIPTS__
<script>
const map = L.map("map", { worldCopyJump: true, minZoom: 1 }).setView([20, 0], 2);
map.createPane("estimates").style.zIndex = 420;
map.createPane("neighbours").style.zIndex = 430;  // above the estimates, so they can always be clicked
const basemap = L.layerGroup().addTo(map);
if (LAND) addBasemap(basemap, LAND, COUNTRIES);
offerTiles(map, basemap);
const bounds = [];
for (const p of DATA) {
  let text = `<b>${esc(p.image)}</b><br>estimate ${fmt(p.lat, 4)}, ${fmt(p.lon, 4)} ± ${fmt(p.radius_km, 1)} km`;
  if (p.error_km !== null) text += `<br>error ${fmt(p.error_km, 1)} km`;
  text += `<br>${esc(p.method)}, cell ${esc(p.cell)} (p = ${fmt(p.cell_probability, 3)}), cluster of ${p.cluster_size}`;
  L.circleMarker([p.lat, p.lon], { pane: "estimates", radius: 7, color: "#d7301f", fillOpacity: 0.8,
    className: "estimate-marker" }).bindPopup(text).addTo(map);
  if (p.radius_km) L.circle([p.lat, p.lon], { pane: "estimates", radius: p.radius_km * 1000, color: "#d7301f",
    weight: 1, fillOpacity: 0.05, interactive: false }).addTo(map);
  bounds.push([p.lat, p.lon]);
  for (const n of p.neighbours) {
    L.circleMarker([n.lat, n.lon], { pane: "neighbours", radius: 4, color: "#2b8cbe", fillOpacity: 0.9,
      className: "neighbour-marker" }).bindPopup(`<b>${esc(n.photo_id)}</b> for ${esc(p.image)}<br>similarity ` +
      `${fmt(n.similarity, 3)}, ${fmt(n.distance_km, 1)} km from the estimate`).addTo(map);
    bounds.push([n.lat, n.lon]);
  }
  if (p.exif) {
    addClaim(map, [p.lat, p.lon], p.exif,
             `EXIF GPS of <b>${esc(p.image)}</b>: ${fmt(p.exif_distance_km, 1)} km from the estimate`);
    bounds.push(p.exif);
  }
  if (p.truth) {
    L.circleMarker(p.truth, { pane: "estimates", radius: 6, color: "#31a354", className: "truth-marker" })
      .bindPopup(`truth of <b>${esc(p.image)}</b>`).addTo(map);
    L.polyline([[p.lat, p.lon], p.truth], { pane: "estimates", color: "#31a354", dashArray: "4",
      interactive: false }).addTo(map);
    bounds.push(p.truth);
  }
}
if (bounds.length) map.fitBounds(bounds, { padding: [30, 30], maxZoom: 10, animate: false });
</script></body></html>
"""
_CDN = "https://unpkg.com/leaflet@1.9.4/dist/leaflet"


def _clean(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 6)


def _inline_images(css: str) -> str:
    """Leaflet's stylesheet with the images it names (the layer switcher's icon) written in as data URIs."""
    def data_uri(match: re.Match) -> str:
        path = VENDOR / "leaflet" / "dist" / match.group(1)
        return f"url(data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()})" if path.is_file() \
            else match.group(0)
    return re.sub(r"url\((images/[\w.-]+\.png)\)", data_uri, css)


def _script_json(value: object) -> str:
    """JSON to write into a <script>: no character of it can end the script or open a comment there."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _script(code: str) -> str:
    return "<script>" + code.replace("</script", "<\\/script") + "</script>"


def _assets() -> dict[str, str]:
    """The page's styles and scripts written inline, or, without the npm packages, Leaflet from a CDN."""
    css, leaflet = read_asset("leaflet/dist/leaflet.css"), read_asset("leaflet/dist/leaflet.js")
    topojson = read_asset("topojson-client/dist/topojson-client.min.js")
    land, countries = read_asset("world-atlas/land-110m.json"), read_asset("world-atlas/countries-110m.json")
    shared = _script(read_asset("basemap.js", STATIC) or "")
    if None in (css, leaflet, topojson, land, countries):
        return {"LEAFLET_CSS": f'<link rel="stylesheet" href="{_CDN}.css">', "LAND": "null", "COUNTRIES": "null",
                "SCRIPTS": f'<script src="{_CDN}.js"></script>\n{shared}',
                "ASSETS_NOTE": "<i>(Leaflet and the basemap are not installed here (make install fetches them): "
                               "this map needs a network.)</i>"}
    return {"LEAFLET_CSS": "<style>" + _inline_images(css) + "</style>", "LAND": land, "COUNTRIES": countries,
            "SCRIPTS": "\n".join([_script(leaflet), _script(topojson), shared]), "ASSETS_NOTE": ""}


def write_map(path: str | Path, predictions: list[Prediction], truth: dict[str, tuple[float, float]] | None = None,
              title: str = "geoloc predictions", note: str = "") -> Path:
    """Write the map for the successful predictions; `truth` maps image → (lat, lon) when known."""
    from locator.geo import haversine_km
    truth = truth or {}
    data = []
    for p in predictions:
        if not p.ok or math.isnan(p.lat):
            continue
        known = truth.get(p.image)
        data.append({
            "image": p.image, "lat": p.lat, "lon": p.lon, "method": p.method, "cell": p.cell_token,
            "cell_probability": _clean(p.cell_probability), "cluster_size": p.cluster_size,
            "radius_km": _clean(p.radius_km), "truth": list(known) if known else None,
            "error_km": float(haversine_km(p.lat, p.lon, *known)) if known else None,
            "exif": None if math.isnan(p.exif_lat) else [p.exif_lat, p.exif_lon],
            "exif_distance_km": _clean(p.exif_distance_km),
            "neighbours": [{"photo_id": n.photo_id, "lat": n.lat, "lon": n.lon, "similarity": n.similarity,
                            "distance_km": n.distance_km} for n in p.neighbours],
        })
    values = {"TITLE": html.escape(title), "NOTE": html.escape(note),
              "DATA": _script_json(data), **_assets()}
    page = re.sub(r"__([A-Z_]+)__", lambda m: values[m.group(1)], _TEMPLATE)  # one pass: no value is rescanned
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
