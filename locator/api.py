"""The Python API: `Locator.load(bundle_dir, store=...)` and `locate(images) -> list[Prediction]`.

The locator is a facade over three parts: the encoder (pixels → features, embeddings, cell probabilities;
locator.encoder), the retrievers (locator.retrieval) and the estimator (locator.estimator), combined by the
locate methods (locator.methods). A photo that cannot be read yields a Prediction with `ok=False` and the reason
in `error`; the rest of the batch goes on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from locator.bundle import Bundle
from locator.claims import attach_exif_claims
from locator.encoder import EncodedPhotos, ImageInput, PhotoEncoder
from locator.exact_index import ExactIndex
from locator.methods import Batch, LocateSettings, Sources, locate_batch
from locator.predictions import Neighbour, Prediction
from locator.settings import from_mapping
from locator.store import VectorStore, open_store

__all__ = ["EncodedPhotos", "LocateSettings", "Locator", "Neighbour", "Prediction"]
_SETTING_NAMES = {f.name for f in dataclasses.fields(LocateSettings)}
CHUNK = 1024  # photos read, embedded and located together


def settings_with(settings: LocateSettings | None, options: dict[str, Any]) -> tuple[LocateSettings, dict]:
    """`settings` updated by keyword options (checked like any settings); the rest are aggregation parameters."""
    base = dataclasses.asdict(settings or LocateSettings())
    chosen = {k: v for k, v in options.items() if k in _SETTING_NAMES}
    params = {k: v for k, v in options.items() if k not in _SETTING_NAMES}
    return from_mapping(LocateSettings, {**base, **chosen}, "locate"), params


class Locator:
    def __init__(self, bundle: Bundle, store: VectorStore | None = None, raw_index: ExactIndex | None = None,
                 device: str | None = None) -> None:
        self.bundle, self.store, self.raw_index = bundle, store, raw_index
        self.encoder = PhotoEncoder(bundle, device)

    @classmethod
    def load(cls, bundle_dir: str | Path, store: str | None = None, raw_features: str | Path | None = None,
             device: str | None = None) -> Locator:
        """A locator for a bundle; `store` (a location such as edge:DIR) is needed by the methods that search
        it."""
        bundle = Bundle.load(bundle_dir)
        opened = open_store(store, bundle.collection_spec(), create=False) if store else None
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

    def encode(self, images: Iterable[ImageInput], batch_size: int | None = None) -> EncodedPhotos:
        """Read and embed photos; `batch_size` photos of one shape go through the backbone together (default:
        128 on a GPU, 4 on a CPU)."""
        return self.encoder.encode_photos(list(images), batch_size)

    def locate(self, images: Iterable[ImageInput], settings: LocateSettings | None = None,
               batch_size: int | None = None, evidence: bool = True, chunk: int = CHUNK,
               **options: Any) -> list[Prediction]:
        """Predict where each photo was taken; photos are read and embedded `chunk` at a time.

        Options are LocateSettings fields (`method`, `k`, `aggregation`, `head`, `top_cells`, `unsure_below`) or
        parameters of the aggregation (`eps_km` for dbscan, `bandwidth_km` for kde).
        """
        settings, params = settings_with(settings, options)
        images = list(images)
        out: list[Prediction] = []
        for start in range(0, len(images), chunk):
            encoded = self.encode(images[start:start + chunk], batch_size)
            out += self.predict(encoded, settings, evidence, **params)
        attach_exif_claims(out, images)
        return out

    def predict(self, encoded: EncodedPhotos, settings: LocateSettings | None = None, evidence: bool = True,
                **options: Any) -> list[Prediction]:
        """Predictions from already-encoded photos (to compare settings without re-running the backbone)."""
        settings, params = settings_with(settings, options)
        predictions = [Prediction(image=n, ok=not e, error=e, method=settings.method)
                       for n, e in zip(encoded.names, encoded.errors)]
        rows = [j for j, p in enumerate(predictions) if p.ok]
        if not rows:
            return predictions
        head, probabilities = self.encoder.classify(encoded.features[rows], settings.head)
        fine = self.bundle.partitions[-1]
        for j, row in enumerate(rows):
            predictions[row].cell_token = fine.tokens[int(head.cell[j])]
            predictions[row].cell_probability = float(head.probability[j])
        batch = Batch(encoded.features[rows], encoded.embeddings[rows], head, probabilities,
                      [predictions[row] for row in rows])
        locate_batch(Sources(self.bundle, self.store, self.raw_index), batch, settings, evidence, **params)
        return predictions
