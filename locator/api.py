"""The Python API: `Locator.load(bundle_dir, store=...)` and `locate(images) -> list[Prediction]`.

Methods: `swc` (classify, then search within the predicted cell and aggregate; the paper's), `classifier` (the
head alone: cell centre / MvMF mean), `retrieval` (global nearest neighbours in the store, no cell filter) and,
for the ablation, `raw` (global nearest neighbours on raw backbone features, from a feature cache).
A photo that cannot be read yields a failed Prediction with the reason; the rest of the batch goes on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from locator.aggregation import aggregate
from locator.bundle import Bundle
from locator.encoder import PhotoEncoder
from locator.exact_index import ExactIndex
from locator.geo import haversine_km
from locator.images import ImageLoadError, load_image, to_model_image
from locator.store import Hits, StoreError, VectorStore, open_store, store_location
from locator.swc import search_within_cell

METHODS = ("swc", "classifier", "retrieval", "raw")
ImageInput = str | Path | Image.Image | np.ndarray
_FACE_EDGE_KM = 10_007.5  # a quarter of the Earth's circumference: the edge of an S2 face cell


@dataclass(frozen=True)
class Neighbour:
    """A reference photo used as evidence."""

    photo_id: str
    source: str
    image: str
    lat: float
    lon: float
    similarity: float
    distance_km: float


@dataclass
class Prediction:
    """Where a photo was taken, and why.

    `radius_km` is a heuristic error radius: the extent of the supporting neighbours when at least two agree, else
    the predicted cell's size. `confidence` = cell probability × (cluster size / K); neither is calibrated.
    """

    image: str
    lat: float = math.nan
    lon: float = math.nan
    ok: bool = True
    error: str = ""
    method: str = ""
    cell_token: str = ""
    cell_probability: float = math.nan
    cells_searched: list[str] = field(default_factory=list)
    neighbours: list[Neighbour] = field(default_factory=list)
    cluster_size: int = 0
    radius_km: float = math.nan
    confidence: float = math.nan
    note: str = ""


@dataclass
class EncodedPhotos:
    """Photos after the backbone: names, read errors ("" when fine), features and stored-space embeddings."""

    names: list[str]
    errors: list[str]
    features: np.ndarray
    embeddings: np.ndarray

    @property
    def ok(self) -> np.ndarray:
        return np.array([not e for e in self.errors], dtype=bool)


def _name(item: ImageInput, index: int) -> str:
    return str(item) if isinstance(item, (str, Path)) else f"<image {index}>"


def _read(item: ImageInput) -> Image.Image:
    if isinstance(item, (str, Path)):
        return load_image(item)
    if isinstance(item, Image.Image):
        return to_model_image(item)
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim not in (2, 3):
            raise ImageLoadError(f"<array {item.shape} {item.dtype}>: need a uint8 H×W or H×W×C array")
        return to_model_image(Image.fromarray(item))
    raise ImageLoadError(f"<{type(item).__name__}>: not a path, PIL image or numpy array")


def cell_radius_km(level: int) -> float:
    """About half the diagonal of an S2 cell at `level`."""
    return 0.7 * _FACE_EDGE_KM / 2 ** level


class Locator:
    def __init__(self, bundle: Bundle, store: VectorStore | None = None, raw_index: ExactIndex | None = None,
                 device: str | None = None) -> None:
        self.bundle, self.store, self.raw_index = bundle, store, raw_index
        self.encoder = PhotoEncoder(bundle, device)

    @classmethod
    def load(cls, bundle_dir: str | Path, store: str | None = None, raw_features: str | Path | None = None,
             device: str | None = None) -> Locator:
        """A locator for a bundle; `store` (or $GEOLOC_STORE) is needed by `swc` and `retrieval`."""
        bundle = Bundle.load(bundle_dir)
        try:
            location = store_location(store)
        except StoreError:
            location = None
        opened = open_store(location, bundle.collection_spec(), create=False) if location else None
        raw = ExactIndex.from_feature_cache(raw_features) if raw_features else None
        return cls(bundle, opened, raw, device)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def __enter__(self) -> Locator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def encode(self, images: Sequence[ImageInput]) -> EncodedPhotos:
        names, errors, tensors = [], [], []
        for index, item in enumerate(images):
            names.append(_name(item, index))
            try:
                tensors.append(self.encoder.preprocess(_read(item)))
                errors.append("")
            except ImageLoadError as exc:
                errors.append(str(exc))
        features = np.zeros((len(names), self.bundle.backbone.feature_dim), dtype=np.float32)
        embeddings = np.zeros((len(names), self.bundle.embedding_dim), dtype=np.float32)
        ok = np.array([not e for e in errors], dtype=bool)
        if tensors:
            features[ok] = self.encoder.features(tensors)
            embeddings[ok] = self.encoder.embed_features(features[ok])
        return EncodedPhotos(names, errors, features, embeddings)

    def locate(self, images: Iterable[ImageInput], k: int = 10, method: str = "swc", aggregation: str = "dbscan",
               head: str | None = None, top_cells: int = 1, unsure_below: float | None = None,
               batch_size: int = 16, evidence: bool = True, **params: float) -> list[Prediction]:
        """Predict where each photo was taken; photos are read and embedded `batch_size` at a time."""
        images = list(images)
        out: list[Prediction] = []
        for start in range(0, len(images), batch_size):
            encoded = self.encode(images[start:start + batch_size])
            out += self.predict(encoded, k, method, aggregation, head, top_cells, unsure_below, evidence, **params)
        return out

    def predict(self, encoded: EncodedPhotos, k: int = 10, method: str = "swc", aggregation: str = "dbscan",
                head: str | None = None, top_cells: int = 1, unsure_below: float | None = None,
                evidence: bool = True, **params: float) -> list[Prediction]:
        """Predictions from already-encoded photos (to compare settings without re-running the backbone)."""
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        ok = encoded.ok
        predictions = [Prediction(image=n, ok=False, error=e, method=method) if e else Prediction(image=n, method=method)
                       for n, e in zip(encoded.names, encoded.errors)]
        rows = np.flatnonzero(ok)
        if not len(rows):
            return predictions
        fine = self.bundle.partitions[-1]
        head_prediction, probabilities = self.encoder.classify(encoded.features[rows], head)
        for j, row in enumerate(rows):
            cell = int(head_prediction.cell[j])
            predictions[row].cell_token = fine.tokens[cell]
            predictions[row].cell_probability = float(head_prediction.probability[j])
        if method == "classifier":
            for j, row in enumerate(rows):
                p = predictions[row]
                p.lat, p.lon = float(head_prediction.lat[j]), float(head_prediction.lon[j])
                p.radius_km = cell_radius_km(int(fine.levels[head_prediction.cell[j]]))
                p.confidence = p.cell_probability
            return predictions
        hits, source, cells = self._neighbours(method, encoded, rows, probabilities, k, top_cells, unsure_below)
        payloads = source.payloads([int(i) for i in hits.ids[hits.ids >= 0]]) if evidence else {}
        for j, row in enumerate(rows):
            p = predictions[row]
            if cells is not None:
                p.cells_searched = [fine.tokens[c] for c in cells[j]]
            self._fill(p, hits, j, k, aggregation, payloads, fine, int(head_prediction.cell[j]), params)
        return predictions

    def _neighbours(self, method: str, encoded: EncodedPhotos, rows: np.ndarray, probabilities: np.ndarray, k: int,
                    top_cells: int, unsure_below: float | None):
        if method == "raw":
            if self.raw_index is None:
                raise ValueError("method 'raw' needs a feature cache of the background photos (raw_features= or --raw-features)")
            return self.raw_index.search(encoded.features[rows], k), self.raw_index, None
        if self.store is None:
            raise StoreError(f"method {method!r} needs a store: pass store='edge:/path' or set GEOLOC_STORE")
        if method == "retrieval":
            return self.store.search(encoded.embeddings[rows], None, k=k, exact=True), self.store, None
        hits, cells = search_within_cell(self.store, encoded.embeddings[rows], probabilities, k, top_cells, unsure_below)
        return hits, self.store, cells

    def _fill(self, p: Prediction, hits: Hits, j: int, k: int, aggregation: str, payloads: dict, fine, cell: int,
              params: dict) -> None:
        valid = hits.ids[j] >= 0
        if not valid.any():
            p.lat, p.lon = float(fine.lat[cell]), float(fine.lon[cell])
            p.radius_km = cell_radius_km(int(fine.levels[cell]))
            p.confidence = 0.0
            p.note = "no stored photo in the searched cell(s): estimate is the predicted cell's centre"
            return
        lat, lon, scores = hits.lat[j][valid], hits.lon[j][valid], hits.scores[j][valid]
        result = aggregate(aggregation, lat, lon, scores, **params)
        p.lat, p.lon, p.cluster_size = result.lat, result.lon, result.size
        distances = haversine_km(result.lat, result.lon, lat, lon)
        p.radius_km = float(max(distances[result.members].max(), 1.0)) if result.size >= 2 else \
            cell_radius_km(int(fine.levels[cell]))
        p.confidence = p.cell_probability * result.size / k
        for pid, score, n_lat, n_lon, d in zip(hits.ids[j][valid], scores, lat, lon, distances):
            payload = payloads.get(int(pid), {})
            p.neighbours.append(Neighbour(str(payload.get("photo_id", pid)), str(payload.get("source", "")),
                                          str(payload.get("image", "")), float(n_lat), float(n_lon), float(score),
                                          float(d)))
