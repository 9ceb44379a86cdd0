"""A self-contained HTML map of predictions: each photo's estimate, its neighbours and the ground truth when known.

The data is embedded in the page. Viewing it with a network shows a Leaflet map with OpenStreetMap tiles; offline,
the page falls back to an inline SVG plot (equirectangular, with a graticule), so writing and basic viewing never
need a network.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from locator.predictions import Prediction

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<link rel="stylesheet" href="https://unpkg.com/leaflet@1.9.4/dist/leaflet.css">
<style>body{margin:0;font-family:sans-serif}#map{height:80vh}#svg{display:none}
#legend{padding:6px 10px;font-size:13px}.est{color:#d7301f}.nb{color:#2b8cbe}.truth{color:#31a354}</style>
</head><body>
<div id="legend"><b>__TITLE__</b> — <span class="est">● estimate</span> <span class="nb">● neighbours</span>
<span class="truth">● ground truth</span> (click a marker for details). __NOTE__</div>
<div id="map"></div><svg id="svg" viewBox="-180 -90 360 180" width="100%" preserveAspectRatio="xMidYMid meet"></svg>
<script>const DATA = __DATA__;</script>
<script src="https://unpkg.com/leaflet@1.9.4/dist/leaflet.js"></script>
<script>
function popup(p){let s='<b>'+p.image+'</b><br>estimate '+p.lat.toFixed(4)+', '+p.lon.toFixed(4);
 if(p.error_km!==null) s+='<br>error '+p.error_km.toFixed(1)+' km'; s+='<br>'+p.method+', cell '+p.cell+
 ' (p='+p.cell_probability+')<br>cluster '+p.cluster_size+', radius '+p.radius_km+' km'; return s;}
if (window.L) {
 const map = L.map('map').setView([20, 0], 2);
 L.tileLayer('https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png', {maxZoom: 18,
   attribution: '&copy; OpenStreetMap contributors'}).addTo(map);
 for (const p of DATA) {
   for (const n of p.neighbours) { L.circleMarker([n.lat, n.lon], {radius: 4, color: '#2b8cbe'})
     .bindPopup(n.photo_id + ' (similarity ' + n.similarity.toFixed(3) + ', ' + n.distance_km.toFixed(1) + ' km)').addTo(map);
     L.polyline([[p.lat, p.lon], [n.lat, n.lon]], {color: '#2b8cbe', weight: 1, opacity: 0.4}).addTo(map); }
   if (p.truth) { L.circleMarker(p.truth, {radius: 6, color: '#31a354'}).bindPopup('truth: ' + p.image).addTo(map);
     L.polyline([[p.lat, p.lon], p.truth], {color: '#31a354', dashArray: '4'}).addTo(map); }
   L.circleMarker([p.lat, p.lon], {radius: 7, color: '#d7301f'}).bindPopup(popup(p)).addTo(map);
 }
} else {
 document.getElementById('map').style.display = 'none';
 const svg = document.getElementById('svg'); svg.style.display = 'block';
 const ns = 'http://www.w3.org/2000/svg'; const add = (tag, attrs, text) => { const e = document.createElementNS(ns, tag);
   for (const k in attrs) e.setAttribute(k, attrs[k]); if (text) { const t = document.createElementNS(ns, 'title');
   t.textContent = text; e.appendChild(t); } svg.appendChild(e); return e; };
 add('rect', {x: -180, y: -90, width: 360, height: 180, fill: '#eef'});
 for (let x = -180; x <= 180; x += 30) { add('line', {x1: x, y1: -90, x2: x, y2: 90, stroke: '#ccd', 'stroke-width': 0.3});
   add('text', {x: x + 1, y: 88, 'font-size': 4, fill: '#889'}).textContent = Math.abs(x) + '°' + (x < 0 ? 'W' : x > 0 ? 'E' : ''); }
 for (let y = -60; y <= 60; y += 30) { add('line', {x1: -180, y1: y, x2: 180, y2: y, stroke: '#ccd', 'stroke-width': 0.3});
   add('text', {x: -179, y: y - 1, 'font-size': 4, fill: '#889'}).textContent = Math.abs(y) + '°' + (y > 0 ? 'S' : y < 0 ? 'N' : ''); }
 document.getElementById('legend').insertAdjacentHTML('beforeend',
   ' <i>Offline view: Leaflet and map tiles could not load, so this is a plain latitude/longitude plot.</i>');
 for (const p of DATA) {
   for (const n of p.neighbours) add('circle', {cx: n.lon, cy: -n.lat, r: 0.8, fill: '#2b8cbe'}, n.photo_id);
   if (p.truth) { add('line', {x1: p.lon, y1: -p.lat, x2: p.truth[1], y2: -p.truth[0], stroke: '#31a354', 'stroke-width': 0.3});
     add('circle', {cx: p.truth[1], cy: -p.truth[0], r: 1.2, fill: '#31a354'}, 'truth: ' + p.image); }
   add('circle', {cx: p.lon, cy: -p.lat, r: 1.4, fill: '#d7301f'}, p.image);
 }
}
</script></body></html>
"""


def _clean(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 6)


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
            "neighbours": [{"photo_id": n.photo_id, "lat": n.lat, "lon": n.lon, "similarity": n.similarity,
                            "distance_km": n.distance_km} for n in p.neighbours],
        })
    page = (_TEMPLATE.replace("__TITLE__", html.escape(title)).replace("__NOTE__", html.escape(note))
            .replace("__DATA__", json.dumps(data).replace("</", "<\\/")))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path
