"""Locate methods, by name, and the settings that choose between them.

- `swc`: classify, then search within the predicted cell and aggregate (the paper's §3.4);
- `classifier`: the head alone (cell centre, or the MvMF component mean);
- `retrieval`: global nearest neighbours in the store, no cell filter;
- `raw`: global nearest neighbours on raw backbone features from a feature cache (the paper's ablation);
- `fused` (the default): candidates from SwC over the best cells and from global retrieval, and the classifier's
  own estimate (locator.candidates), scored from their evidence by the bundle's fusion model (locator.fusion).

Every method fills the predictions of the readable photos of a batch that the encoder has classified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from locator.aggregation import AGGREGATIONS
from locator.candidates import FEATURES, Evidence, gather_evidence
from locator.errors import BundleError, SettingsError, StoreError
from locator.estimator import cell_radius_km, estimate
from locator.fusion import Choice
from locator.geo import haversine_km
from locator.heads import HEADS
from locator.predictions import Neighbour, Prediction
from locator.registry import Registry
from locator.retrieval import ExactRaw, GlobalSearch, Retriever, WithinCell
from locator.settings import option

if TYPE_CHECKING:
    from locator.bundle import Bundle
    from locator.exact_index import ExactIndex
    from locator.heads.base import HeadPrediction
    from locator.store import VectorStore

METHODS = Registry("locate method")
STORE_METHODS = {"swc", "retrieval", "fused"}  # methods that search the reference collection


@dataclass
class Sources:
    """What methods may search: the bundle, the store (None when not given) and a raw-feature index."""

    bundle: Bundle
    store: VectorStore | None
    raw_index: ExactIndex | None

    def require_store(self, method: str) -> VectorStore:
        if self.store is None:
            raise StoreError(f"method {method!r} searches the reference collection, but no store was given "
                             "(Locator.load(..., store='edge:/path'); the CLIs: --store or GEOLOC_STORE)")
        return self.store


@dataclass
class Batch:
    """The readable photos of one call: features, embeddings, the head's prediction and their predictions."""

    features: np.ndarray
    embeddings: np.ndarray
    head: HeadPrediction
    probabilities: np.ndarray
    predictions: list[Prediction]


@dataclass(frozen=True)
class LocateSettings:
    method: str = option("fused", "how to locate (see the README: when each method wins)", choices=METHODS)
    k: int = option(10, "reference photos to retrieve per photo", minimum=1, maximum=1000)
    aggregation: str = option("dbscan", "how the K neighbours become one estimate", choices=AGGREGATIONS)
    head: str | None = option(None, "classification head (default: the bundle's)", choices=HEADS)
    top_cells: int = option(1, "search the N most probable cells together", minimum=1, maximum=100)
    unsure_below: float | None = option(None, "with --top-cells: widen only when the best cell's probability is "
                                              "below this, or when it holds fewer than K photos", minimum=0, maximum=1)


Method = Callable[[Sources, Batch, LocateSettings, bool, dict[str, Any]], None]


def locate_batch(sources: Sources, batch: Batch, settings: LocateSettings, evidence: bool = True,
                 **params: float) -> None:
    METHODS.get(settings.method)(sources, batch, settings, evidence, params)


@METHODS.register("swc")
def swc(sources: Sources, batch: Batch, settings: LocateSettings, evidence: bool, params: dict) -> None:
    retriever = WithinCell(sources.require_store("swc"), settings.top_cells, settings.unsure_below)
    locate_by_retrieval(sources, batch, retriever, settings, evidence, params)


@METHODS.register("retrieval")
def retrieval(sources: Sources, batch: Batch, settings: LocateSettings, evidence: bool, params: dict) -> None:
    locate_by_retrieval(sources, batch, GlobalSearch(sources.require_store("retrieval")), settings, evidence, params)


@METHODS.register("raw")
def raw(sources: Sources, batch: Batch, settings: LocateSettings, evidence: bool, params: dict) -> None:
    if sources.raw_index is None:
        raise SettingsError("method 'raw' needs a feature cache of the background photos "
                            "(raw_features= or --raw-features)")
    locate_by_retrieval(sources, batch, ExactRaw(sources.raw_index), settings, evidence, params)


@METHODS.register("classifier")
def classifier(sources: Sources, batch: Batch, settings: LocateSettings, evidence: bool, params: dict) -> None:
    fine = sources.bundle.partitions[-1]
    for j, p in enumerate(batch.predictions):
        p.lat, p.lon = float(batch.head.lat[j]), float(batch.head.lon[j])
        p.radius_km = cell_radius_km(int(fine.levels[batch.head.cell[j]]))
        p.confidence = p.cell_probability


@METHODS.register("fused")
def fused(sources: Sources, batch: Batch, settings: LocateSettings, evidence: bool, params: dict) -> None:
    model = sources.bundle.fusion
    if model is None:
        raise BundleError(f"{sources.bundle.directory}: method 'fused' needs the bundle's fusion model; fit it with "
                          "`geoloc-train fusion --bundle … --features …` (or choose --method swc)")
    store = sources.require_store("fused")
    fine = sources.bundle.partitions[-1]
    searches = [WithinCell(store, 1), WithinCell(store, model.cells), GlobalSearch(store)]
    hits = [s.search(batch.features, batch.embeddings, batch.probabilities, settings.k) for s in searches]
    found = gather_evidence(*hits, np.asarray(batch.head.lat, float), np.asarray(batch.head.lon, float),
                            batch.probabilities, fine, model.eps_km)
    candidates = found.candidates
    choices = model.choose_batch(found.features, candidates.lat, candidates.lon, candidates.valid)
    pooled = found.pools.ids[found.pools.valid]
    payloads = sources.store.payloads([int(i) for i in pooled]) if evidence else {}
    for j, p in enumerate(batch.predictions):
        fill_fused(p, found, j, choices[j], payloads)
        p.cells_searched = [fine.tokens[c] for c in hits[1].cells[j]]


def fill_fused(p: Prediction, found: Evidence, j: int, choice: Choice, payloads: dict[int, dict]) -> None:
    """Photo j's prediction from its chosen candidate; the neighbours that support it are listed first."""
    c, features = choice.index, found.features[j, choice.index]
    p.lat, p.lon = float(found.candidates.lat[j, c]), float(found.candidates.lon[j, c])
    p.confidence, p.radius_km = choice.confidence, choice.radius_km
    members = found.candidates.members(j, c)
    p.cluster_size = len(members)
    if choice.duplicate:
        p.note = f"the same photo as a reference (similarity {features[FEATURES.index('max_sim')]:.4f})"
    elif not len(members):
        p.note = "the classifier's estimate: no retrieved cluster was more convincing"
    elif features[FEATURES.index("in_top_cell")]:
        p.note = "a retrieved cluster inside the classifier's most probable cell"
    else:
        p.note = "a retrieved cluster outside the classifier's most probable cell"
    ids, scores, lat, lon = found.pools.row(j)
    distances = haversine_km(p.lat, p.lon, lat, lon)
    order = np.concatenate([members, np.setdiff1d(np.arange(len(ids)), members)])
    p.neighbours = neighbours(ids[order], scores[order], lat[order], lon[order], distances[order], payloads)


def locate_by_retrieval(sources: Sources, batch: Batch, retriever: Retriever, settings: LocateSettings,
                        evidence: bool, params: dict) -> None:
    """Retrieve K neighbours per photo, then estimate from them (cell centre when none is found)."""
    fine = sources.bundle.partitions[-1]
    hits = retriever.search(batch.features, batch.embeddings, batch.probabilities, settings.k)
    payloads = retriever.payloads([int(i) for i in hits.ids[hits.ids >= 0]]) if evidence else {}
    for j, p in enumerate(batch.predictions):
        if hits.cells is not None:
            p.cells_searched = [fine.tokens[c] for c in hits.cells[j]]
        cell = int(batch.head.cell[j])
        valid = hits.ids[j] >= 0
        lat, lon, scores = hits.lat[j][valid], hits.lon[j][valid], hits.scores[j][valid]
        result = estimate(lat, lon, scores, settings.k, settings.aggregation, float(fine.lat[cell]),
                          float(fine.lon[cell]), int(fine.levels[cell]), p.cell_probability, **params)
        p.lat, p.lon, p.radius_km, p.confidence = result.lat, result.lon, result.radius_km, result.confidence
        p.cluster_size, p.note = result.cluster_size, result.note
        if result.distances_km is not None:
            p.neighbours = neighbours(hits.ids[j][valid], scores, lat, lon, result.distances_km, payloads)


def neighbours(ids: np.ndarray, scores: np.ndarray, lat: np.ndarray, lon: np.ndarray, distances: np.ndarray,
               payloads: dict[int, dict]) -> list[Neighbour]:
    out = []
    for pid, score, n_lat, n_lon, d in zip(ids, scores, lat, lon, distances):
        payload = payloads.get(int(pid), {})
        out.append(Neighbour(str(payload.get("photo_id", pid)), str(payload.get("source", "")),
                             str(payload.get("image", "")), float(n_lat), float(n_lon), float(score), float(d),
                             int(pid)))
    return out
