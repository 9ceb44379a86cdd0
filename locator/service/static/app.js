// The geoloc page: locate photos, see the evidence, look into the collection, add reference photos.
// Everything it loads comes from this service: Leaflet and the world basemap (coastlines, borders) are served
// from the packages installed with the project. OpenStreetMap tiles are offered only when they load.
"use strict";

const map = L.map("map", { worldCopyJump: true, minZoom: 1 }).setView([20, 0], 2);
map.createPane("cells").style.zIndex = 410;
map.createPane("estimates").style.zIndex = 420;
map.createPane("neighbours").style.zIndex = 430;  // above the estimates, so they can always be clicked
const basemap = L.layerGroup().addTo(map);
const resultsLayer = L.layerGroup().addTo(map);
const collectionLayer = L.layerGroup();
// A response's JSON body and, when it failed, its reason: FastAPI's own validation errors come as a list, and a
// proxy in front may answer in plain text.
async function answer(response) {
  const text = await response.text();
  let body = null;
  try { body = JSON.parse(text); } catch (err) { body = null; }
  const detail = body && body.detail;
  const reason = Array.isArray(detail) ? detail.map(d => `${(d.loc || []).slice(-1)[0]}: ${d.msg}`).join("; ")
    : (detail || text.slice(0, 200) || response.statusText);
  return { ok: response.ok, body, reason: `error ${response.status}: ${reason}` };
}

async function loadBasemap() {
  try {
    const [land, countries] = await Promise.all([
      fetch("/vendor/world-atlas/land-50m.json").then(r => r.json()),
      fetch("/vendor/world-atlas/countries-50m.json").then(r => r.json()),
    ]);
    addBasemap(basemap, land, countries);
  } catch (err) {
    document.getElementById("basemap-note").textContent = " (basemap unavailable: " + err + ")";
  }
  offerTiles(map, basemap);
}

async function health() {
  const el = document.getElementById("health");
  try {
    const h = await fetch("/v1/health").then(r => r.json());
    el.textContent = `${h.points.toLocaleString()} reference photos · method ${h.method} · bundle ${h.bundle.slice(0, 12)}`;
  } catch (err) {
    el.textContent = "service unreachable";
  }
}

function showPrediction(p, queryUrl) {
  const box = document.createElement("div");
  box.className = "result" + (p.ok ? "" : " failed");
  if (queryUrl) {
    const img = document.createElement("img");
    img.className = "query"; img.src = queryUrl; box.appendChild(img);
  }
  const title = document.createElement("h3");
  title.textContent = p.image;
  box.appendChild(title);
  const text = document.createElement("div");
  if (!p.ok) {
    text.textContent = "could not be located: " + p.error;
    box.appendChild(text);
    return box;
  }
  text.textContent = `${fmt(p.lat)}, ${fmt(p.lon)} ± ${fmt(p.radius_km, 1)} km · P(error < 25 km) ${fmt(p.confidence, 2)}` +
    ` · cell ${p.cell_token} · ${p.method}` + (p.note ? " · " + p.note : "");
  box.appendChild(text);
  const estimate = L.circleMarker([p.lat, p.lon], { pane: "estimates", radius: 8, color: "#d7301f",
    fillOpacity: 0.8, className: "estimate-marker" }).bindPopup(`<b>${esc(p.image)}</b><br>${esc(text.textContent)}`);
  resultsLayer.addLayer(estimate);
  if (p.exif_lat !== null) showClaim(p, box);
  if (p.radius_km) {
    resultsLayer.addLayer(L.circle([p.lat, p.lon], { pane: "estimates", radius: p.radius_km * 1000,
      color: "#d7301f", weight: 1, fillOpacity: 0.05, interactive: false }));
  }
  if (p.cell_polygon) {
    resultsLayer.addLayer(L.polygon(p.cell_polygon, { pane: "cells", color: "#d7301f", weight: 1, dashArray: "4",
      fill: false, interactive: false }));
  }
  const strip = document.createElement("div");
  strip.className = "neighbours";
  const note = document.createElement("div");
  for (const n of p.neighbours) {
    const popup = document.createElement("div");
    popup.className = "popup";
    popup.innerHTML = `<img src="${esc(n.thumbnail)}" alt=""><b>${esc(n.photo_id)}</b> (${esc(n.source)})<br>` +
      `similarity ${fmt(n.similarity, 3)} · ${fmt(n.distance_km, 1)} km from the estimate<br>`;
    const marker = L.circleMarker([n.lat, n.lon], { pane: "neighbours", radius: 5, color: "#2b6cb0",
      fillOpacity: 0.9, className: "neighbour-marker" }).bindPopup(popup);
    resultsLayer.addLayer(marker);
    const thumb = document.createElement("div");
    thumb.className = "neighbour-thumb";
    thumb.innerHTML = `<img src="${esc(n.thumbnail)}" alt="${esc(n.photo_id)}"><span>${fmt(n.distance_km, 1)} km · ${fmt(n.similarity, 2)}</span>`;
    thumb.onclick = () => { map.setView([n.lat, n.lon], Math.max(map.getZoom(), 6)); marker.openPopup(); };
    strip.appendChild(thumb);
    // Evidence found to be misattributed leaves the collection from here too; the estimate shown still used it.
    const remove = document.createElement("button");
    remove.className = "remove";
    remove.textContent = "remove from the collection";
    remove.onclick = async () => {
      remove.disabled = true;  // one removal at a time; for good once it is done
      const removed = await removePhoto({ id: n.point_id, photo_id: n.photo_id, source: n.source }, note, () => {
        note.textContent += ": locate the photo again for an estimate without it";
        thumb.classList.add("removed");
        marker.setStyle({ opacity: 0.3, fillOpacity: 0.2 });
        marker.closePopup();
        remove.textContent = "removed";
      });
      remove.disabled = removed;
    };
    popup.appendChild(remove);
  }
  box.appendChild(strip);
  box.appendChild(note);
  return box;
}

// Where the photo's own EXIF GPS says it was taken: a claim to check against the estimate, not evidence for it.
function showClaim(p, box) {
  const line = document.createElement("div");
  line.className = "claim";
  line.textContent = `EXIF GPS claims ${fmt(p.exif_lat)}, ${fmt(p.exif_lon)}: ${fmt(p.exif_distance_km, 1)} km from the estimate`;
  box.appendChild(line);
  addClaim(resultsLayer, [p.lat, p.lon], [p.exif_lat, p.exif_lon], `<b>${esc(p.image)}</b><br>${esc(line.textContent)}`);
}

async function locate(files) {
  const status = document.getElementById("status");
  const results = document.getElementById("results");
  const form = new FormData();
  for (const f of files) form.append("images", f, f.name);
  status.textContent = `locating ${files.length} photo(s)…`;
  const method = document.getElementById("method").value;
  const { ok, body, reason } = await answer(await fetch(`/v1/locate?method=${encodeURIComponent(method)}`,
    { method: "POST", body: form }));
  if (!ok) { status.textContent = reason; return; }
  resultsLayer.clearLayers();
  results.innerHTML = "";
  const bounds = [];
  body.predictions.forEach((p, k) => {
    results.appendChild(showPrediction(p, URL.createObjectURL(files[k])));
    if (p.ok) { bounds.push([p.lat, p.lon]); p.neighbours.forEach(n => bounds.push([n.lat, n.lon])); }
    if (p.ok && p.exif_lat !== null) bounds.push([p.exif_lat, p.exif_lon]);
  });
  if (bounds.length) map.fitBounds(bounds, { padding: [30, 30], maxZoom: 10, animate: false });
  status.textContent = `${body.predictions.filter(p => p.ok).length} of ${files.length} located`;
}

let offset = 0;
let listed = 0;  // photos in the table's pages
let sourceFilter = null;  // the table shows one source's photos, or all
let findFilter = null;  // or the photos of one photo id
const PAGE = 25;
async function showCollection() {
  const cells = await fetch("/v1/cells").then(r => r.json());
  collectionLayer.clearLayers();
  const top = Math.max(1, ...cells.cells.map(c => c.points));
  for (const c of cells.cells) {
    collectionLayer.addLayer(L.circleMarker([c.lat, c.lon], { pane: "cells", radius: 3 + 12 * Math.sqrt(c.points / top),
      color: "#31a354", fillOpacity: 0.5, className: "cell-marker" }).bindPopup(`cell ${c.cell}: ${c.points} photos`));
  }
  if (cells.cells.length) map.fitBounds(cells.cells.map(c => [c.lat, c.lon]), { padding: [20, 20], maxZoom: 8, animate: false });
  const h = await fetch("/v1/health").then(r => r.json());
  const summary = document.getElementById("collection-summary");
  summary.textContent = `${cells.total.toLocaleString()} reference photos in ${cells.cells.length} cells` +
    (cells.without_cell ? ` (${cells.without_cell} outside every cell)` : "") + " · by source: ";
  Object.entries(h.sources).sort((a, b) => b[1] - a[1]).forEach(([name, n], k) => {
    if (k) summary.append(", ");
    const link = document.createElement("a");  // shows only this source's photos in the table
    link.href = "#";
    link.className = "source-filter";
    link.textContent = `${name || "(no source)"} ${n.toLocaleString()}`;
    link.onclick = event => { event.preventDefault(); sourceFilter = name; offset = 0; showPage(); };
    summary.append(link);
  });
  if (sourceFilter !== null && !Object.hasOwn(h.sources, sourceFilter)) { sourceFilter = null; offset = 0; }
  const advice = document.getElementById("refit-advice");
  advice.textContent = h.refit_advised_for.length ? `The fused model was fitted without ${h.refit_advised_for.join(", ")}: ` +
    "refit it on this collection (geoloc-train fusion --store …) so that it trusts these references." : "";
  advice.classList.toggle("hidden", !h.refit_advised_for.length);
  await showPage();
  await showRemovals();
}

async function showPage() {
  const only = (sourceFilter === null ? "" : `&source=${encodeURIComponent(sourceFilter)}`) +
    (findFilter === null ? "" : `&photo_id=${encodeURIComponent(findFilter)}`);
  let page = await fetch(`/v1/points?offset=${offset}&limit=${PAGE}${only}`).then(r => r.json());
  if (page.total && offset >= page.total) {  // the last page's last photo was removed: show the page before
    offset = Math.floor((page.total - 1) / PAGE) * PAGE;
    page = await fetch(`/v1/points?offset=${offset}&limit=${PAGE}${only}`).then(r => r.json());
  }
  const body = document.querySelector("#points tbody");
  body.innerHTML = "";
  for (const p of page.points) {
    const row = document.createElement("tr");
    row.innerHTML = `<td><img src="${esc(p.thumbnail)}" alt=""></td><td>${esc(p.photo_id)}</td><td>${esc(p.source)}</td>` +
      `<td>${esc(p.owner)}</td><td>${fmt(p.lat)}, ${fmt(p.lon)}</td><td>${p.s2_0 !== undefined ? esc(Object.keys(p)
        .filter(k => k.startsWith("s2_")).sort().map(k => p[k]).pop()) : ""}</td>` +
      `<td><button class="remove" title="take this reference out of the collection">remove</button></td>`;
    row.onclick = () => map.setView([p.lat, p.lon], 8);
    row.querySelector(".remove").onclick = event => {
      event.stopPropagation();
      removePhoto(p, document.getElementById("points-status"), showCollection);
    };
    body.appendChild(row);
  }
  listed = page.total;
  const pager = document.getElementById("page");
  pager.textContent = `${page.total ? offset + 1 : 0}–${Math.min(offset + PAGE, page.total)} of ` +
    `${page.total.toLocaleString()}` + (findFilter === null ? "" : ` named ${findFilter}`) +
    (sourceFilter === null ? "" : ` of source ${sourceFilter || "(no source)"}`) +
    (sourceFilter === null && findFilter === null ? "" : " · ");
  if (sourceFilter !== null || findFilter !== null) {
    const all = document.createElement("a");
    all.href = "#";
    all.id = "show-all";
    all.textContent = "show all";
    all.onclick = event => {
      event.preventDefault();
      sourceFilter = findFilter = null;
      document.getElementById("find").value = "";
      offset = 0;
      showPage();
    };
    pager.append(all);
  }
}

// The ledger of removals, newest first (its latest 50), shown while its section is open.
async function showRemovals() {
  if (!document.getElementById("removed").open) return;
  const ledger = await fetch("/v1/removals?limit=50").then(r => r.json());
  const body = document.querySelector("#removals tbody");
  body.innerHTML = "";
  for (const r of ledger.removals) {
    const row = document.createElement("tr");
    row.innerHTML = `<td>${esc(r.photo_id)}</td><td>${esc(r.source)}</td><td>${esc(r.removed_at.replace("T", " ")
      .replace("+00:00", ""))}</td><td>${r.back ? "added again since" : ""}</td>`;
    body.appendChild(row);
  }
  document.getElementById("removals-status").textContent = ledger.total > ledger.removals.length
    ? `the latest ${ledger.removals.length} of ${ledger.total.toLocaleString()} removals` : "";
}

// A misattributed or unwanted reference leaves the collection (the token, where the service has one, is the one
// typed under "Add reference photos"); `status` says how it went, and `done` runs once it is out.
async function removePhoto(p, status, done) {
  const question = `Remove ${p.photo_id} (source ${p.source}) from the collection? Ingest will leave it out even if `
    + "its manifest lists it again.";
  if (!confirm(question)) return false;
  const token = document.querySelector("#add-form [name=token]").value;
  let result;
  try {
    result = await answer(await fetch(`/v1/photos/${p.id}`, { method: "DELETE",
      headers: token ? { Authorization: "Bearer " + token } : {} }));
  } catch (err) {
    result = { ok: false, reason: String(err) };
  }
  status.className = result.ok ? "added" : "refused";
  status.textContent = result.ok ? `removed ${p.photo_id} of ${p.source}` : `${p.photo_id}: ${result.reason}` +
    (result.reason.startsWith("error 401") ? " (type the token under “Add reference photos”)" : "");
  if (result.ok) { health(); done(); }
  return result.ok;
}

// Each picked photo is added on its own: its id is the one typed (for a single photo) or its file name, its place
// the one typed or clicked, or else its own EXIF GPS position.
async function addPhoto(event) {
  event.preventDefault();
  const fields = new FormData(event.target);
  const token = fields.get("token");
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const files = fields.getAll("image").filter(f => f.size > 0);
  const status = document.getElementById("add-status");
  const lines = [];
  for (const file of files) {
    const form = new FormData();
    for (const name of ["lat", "lon", "owner", "source"]) form.append(name, fields.get(name));
    const typed = files.length === 1 ? fields.get("photo_id").trim() : "";
    form.append("photo_id", typed || file.name.replace(/\.[^.]*$/, ""));
    form.append("image", file, file.name);
    status.textContent = `adding ${lines.length + 1} of ${files.length}…`;
    let result;
    try {
      result = await answer(await fetch("/v1/photos", { method: "POST", body: form, headers }));
    } catch (err) {  // the service could not be reached: say so for this photo, and go on with the others
      result = { ok: false, reason: String(err) };
    }
    const b = result.body;
    lines.push({ ok: result.ok, text: result.ok
      ? `added ${b.photo_id} at ${fmt(b.lat)}, ${fmt(b.lon)} (from ${b.position_from === "exif" ? "its EXIF GPS" : "the form"}; ` +
        `cell ${b.cell})` + (b.replaced ? `, replacing the photo of ${b.source} that had this id` : "")
      : `${file.name}: ${result.reason}` });
  }
  const added = lines.filter(l => l.ok).length;
  status.textContent = "";
  const summary = document.createElement("div");
  summary.textContent = `added ${added} of ${files.length} photo(s)`;
  status.appendChild(summary);
  for (const l of lines) {
    const row = document.createElement("div");
    row.className = l.ok ? "added" : "refused";
    row.textContent = l.text;
    status.appendChild(row);
  }
  if (added) { health(); showCollection(); }
}

function switchView(view) {
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.view === view);
  document.getElementById("view-locate").classList.toggle("hidden", view !== "locate");
  document.getElementById("view-collection").classList.toggle("hidden", view !== "collection");
  if (view === "collection") { map.removeLayer(resultsLayer); collectionLayer.addTo(map); showCollection(); }
  else { map.removeLayer(collectionLayer); resultsLayer.addTo(map); }
}

const drop = document.getElementById("drop");
drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", e => { e.preventDefault(); drop.classList.remove("over"); locate([...e.dataTransfer.files]); });
document.getElementById("files").addEventListener("change", e => locate([...e.target.files]));
document.querySelectorAll(".tab").forEach(t => t.addEventListener("click", () => switchView(t.dataset.view)));
document.getElementById("prev").onclick = () => { offset = Math.max(0, offset - PAGE); showPage(); };
document.getElementById("next").onclick = () => { if (offset + PAGE < listed) { offset += PAGE; showPage(); } };
document.getElementById("add-form").addEventListener("submit", addPhoto);
document.getElementById("removed").addEventListener("toggle", showRemovals);
function find(value) {
  findFilter = value.trim() || null;
  offset = 0;
  showPage();
}
document.getElementById("find").addEventListener("keydown", e => { if (e.key === "Enter") find(e.target.value); });
document.getElementById("find").addEventListener("search", e => { if (!e.target.value) find(""); });  // its ✕
map.on("click", e => {
  const form = document.getElementById("add-form");
  form.lat.value = e.latlng.lat.toFixed(6);
  form.lon.value = e.latlng.wrap().lng.toFixed(6);
});
loadBasemap();
health();
