"""The paper's evaluation of a bundle on a benchmark: every row our bundle can produce, and the reliability of
the fused method's confidence.

Rows: the fused method (the default) when the bundle has its model; each head alone; retrieval alone (RRM
embeddings in the store, and raw features when a feature cache of the background photos is given); search within
cell with each head (K = 10, DBSCAN); the aggregations (average, kde, nn, dbscan) and K ∈ {1, 5, 10, 15, 20} with
the default head; and the multi-cell option. Photos are embedded once; the rows re-use the embeddings. Images
that fail to load are misses in every row. The fused row is compared with the better of the methods `swc` and
`retrieval` as they run by default, with a bootstrap interval over the benchmark's owners (locator.significance).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from locator.api import EncodedPhotos, Locator, Prediction
from locator.datasets import Record
from locator.errors import DataError
from locator.geo import haversine_km
from locator.metrics import GeoMetrics, Reliability, geolocation_metrics, reliability
from locator.significance import Difference, paired_bootstrap

K_VALUES = (1, 5, 10, 15, 20)
AGGREGATIONS = ("average", "kde", "nn", "dbscan")
FUSED = "fused: SwC + retrieval + classifier, scored (K=10)"
SWC = "SwC, {head} head (K=10, dbscan)"


@dataclass(frozen=True)
class Variant:
    name: str
    settings: dict


@dataclass(frozen=True)
class Evaluation:
    rows: list[GeoMetrics]
    reliability: list[Reliability]
    fused_vs_best: list[Difference]  # empty without the fused row


def variants(locator: Locator) -> list[Variant]:
    heads = list(locator.bundle.heads)
    default = locator.bundle.config.get("default_head")
    rows = []
    if locator.store is not None and locator.bundle.fusion is not None:
        rows.append(Variant(FUSED, {"method": "fused"}))
    rows += [Variant(f"{kind} head alone (cell centre)", {"method": "classifier", "head": kind}) for kind in heads]
    if locator.store is not None:
        space = "RRM embeddings" if locator.bundle.retrieval_space == "rrm" else "raw features"
        rows.append(Variant(f"retrieval alone, stored {space} (K=10, dbscan)", {"method": "retrieval"}))
    if locator.raw_index is not None:
        rows.append(Variant("retrieval alone, raw features of every training photo (K=10, dbscan)", {"method": "raw"}))
    if locator.store is None:
        return rows
    rows += [Variant(SWC.format(head=kind), {"method": "swc", "head": kind}) for kind in heads]
    rows += [Variant(f"SwC, {default} head, K=10, {agg}", {"method": "swc", "head": default, "aggregation": agg})
             for agg in AGGREGATIONS if agg != "dbscan"]
    rows += [Variant(f"SwC, {default} head, K={k}, dbscan", {"method": "swc", "head": default, "k": k})
             for k in K_VALUES if k != 10]
    rows += [Variant(f"SwC, {default} head, top-3 cells when p<0.5 or sparse (K=10, dbscan)",
                     {"method": "swc", "head": default, "top_cells": 3, "unsure_below": 0.5}),
             Variant(f"SwC, {default} head, always top-3 cells (K=10, dbscan)",
                     {"method": "swc", "head": default, "top_cells": 3})]
    return rows


def encode_all(locator: Locator, records: list[Record], batch_size: int | None = None, progress: bool = True,
               chunk: int = 256) -> EncodedPhotos:
    parts = []
    for start in tqdm(range(0, len(records), chunk), desc="evaluate: embed", unit="chunk", disable=not progress):
        parts.append(locator.encode([r.image for r in records[start:start + chunk]], batch_size))
    return EncodedPhotos.concat(parts)


def errors_km(records: list[Record], predictions: list[Prediction]) -> np.ndarray:
    """Error of each prediction; NaN for a failed photo."""
    lat = np.array([p.lat if p.ok else np.nan for p in predictions])
    lon = np.array([p.lon if p.ok else np.nan for p in predictions])
    return haversine_km([r.lat for r in records], [r.lon for r in records], lat, lon)


def evaluate(locator: Locator, records: list[Record], batch_size: int | None = None, progress: bool = True,
             on_predictions: Callable[[Variant, list[Prediction]], None] | None = None) -> Evaluation:
    """One metrics row per variant (see module docstring), and the reliability of fused and SwC confidence."""
    if not records:
        raise DataError("the benchmark has no images")
    encoded = encode_all(locator, records, batch_size, progress)
    true_lat, true_lon = np.array([r.lat for r in records]), np.array([r.lon for r in records])
    default_swc = SWC.format(head=locator.bundle.config.get("default_head"))
    rows, reliabilities, compared = [], [], {}
    for variant in tqdm(variants(locator), desc="evaluate: rows", unit="row", disable=not progress):
        predictions = locator.predict(encoded, evidence=False, **variant.settings)
        lat = np.array([p.lat if p.ok else np.nan for p in predictions])
        lon = np.array([p.lon if p.ok else np.nan for p in predictions])
        rows.append(geolocation_metrics(true_lat, true_lon, lat, lon, name=variant.name))
        if variant.name in (FUSED, default_swc):
            reliabilities.append(reliability(variant.name, [p.confidence for p in predictions],
                                             errors_km(records, predictions),
                                             radius_km=[p.radius_km for p in predictions]))
        if variant.name in (FUSED, default_swc) or variant.settings == {"method": "retrieval"}:
            compared[variant.settings["method"]] = errors_km(records, predictions)
        if on_predictions is not None:
            on_predictions(variant, predictions)
    fused_vs_best = []
    if "fused" in compared:
        fused_vs_best = paired_bootstrap(compared, "fused", ["swc", "retrieval"], [r.group for r in records])
    return Evaluation(rows, reliabilities, fused_vs_best)
