// Shared by the service's page and the HTML map that `geoloc locate --map` writes: escaping names, formatting
// numbers, the marker of a photo's EXIF GPS claim, and a basemap of coastlines and borders from world-atlas's
// TopoJSON (Leaflet and topojson-client must be loaded).
"use strict";

const fmt = (x, d = 4) => (x === null || x === undefined ? "–" : Number(x).toFixed(d));

// Photo ids, sources, owners and names come from whoever added the photos: never markup.
const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const esc = s => String(s ?? "").replace(/[&<>"']/g, c => ESCAPES[c]);

// Rings that cross the antimeridian (Russia, Fiji, Antarctica) would be drawn as bands across the whole map:
// unwrap their longitudes so that consecutive points never jump by more than 180°.
function unwrapRing(ring) {
  let shift = 0;
  return ring.map(([lon, lat], k) => {
    if (k > 0) {
      const previous = ring[k - 1][0];
      if (lon - previous > 180) shift -= 360;
      else if (lon - previous < -180) shift += 360;
    }
    return [lon + shift, lat];
  });
}

function unwrap(geometry) {
  const depth = { LineString: 0, MultiLineString: 1, Polygon: 1, MultiPolygon: 2 }[geometry.type];
  const walk = (coords, d) => (d === 0 ? unwrapRing(coords) : coords.map(c => walk(c, d - 1)));
  return { ...geometry, coordinates: walk(geometry.coordinates, depth) };
}

function unwrapped(geojson) {
  if (geojson.type === "FeatureCollection") return { ...geojson, features: geojson.features.map(unwrapped) };
  if (geojson.type === "Feature") return { ...geojson, geometry: unwrap(geojson.geometry) };
  return unwrap(geojson);
}

// Where a photo's own EXIF GPS says it was taken, joined to the estimate: a claim to check, not evidence.
function addClaim(layer, estimate, claim, popup) {
  layer.addLayer(L.circleMarker(claim, { pane: "estimates", radius: 7, color: "#6a3d9a", fillOpacity: 0.8,
    className: "exif-marker" }).bindPopup(popup));
  layer.addLayer(L.polyline([estimate, claim], { pane: "estimates", color: "#6a3d9a", weight: 1, dashArray: "4",
    interactive: false }));
}

function addBasemap(layer, land, countries) {
  L.geoJSON(unwrapped(topojson.feature(land, land.objects.land)), {
    style: { color: "#6b7f8e", weight: 0.8, fillColor: "#f4f1e8", fillOpacity: 1 }, interactive: false,
  }).addTo(layer);
  L.geoJSON(unwrapped(topojson.mesh(countries, countries.objects.countries, (a, b) => a !== b)), {
    style: { color: "#9aa7b1", weight: 0.6 }, interactive: false,
  }).addTo(layer);
}

// OpenStreetMap tiles are offered beside the offline basemap only when they load.
function offerTiles(map, basemap) {
  const tiles = L.tileLayer("https://tile.openstreetmap.org/{z}/{x}/{y}.png",
    { maxZoom: 18, attribution: "© OpenStreetMap contributors" });
  const probe = new Image();
  probe.onload = () => L.control.layers({ "Offline basemap": basemap, "OpenStreetMap": tiles }).addTo(map);
  probe.src = "https://tile.openstreetmap.org/0/0/0.png";
}
