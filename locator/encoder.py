"""Photos → backbone features → (cell probabilities, location-aware embeddings), for one bundle.

Used by the locator at query time and by the ingest actors, so both embed exactly alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from locator.backbone import (default_batch_size, default_device, extract_features, stream_features, warm_batch_sizes,
                              warm_up)
from locator.bundle import Bundle
from locator.heads import HeadPrediction
from locator.loading import ImageInput, load_stream, photo_name
from locator.rrm import embed

@dataclass(frozen=True)
class Encoded:
    """Per photo: raw backbone features (N, D), stored-space embeddings (N, E) and, if asked, the head's prediction."""

    features: np.ndarray
    embeddings: np.ndarray
    prediction: HeadPrediction | None = None
    probabilities: np.ndarray | None = None


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

    def take(self, rows: Sequence[int]) -> EncodedPhotos:
        rows = list(rows)
        return EncodedPhotos([self.names[r] for r in rows], [self.errors[r] for r in rows], self.features[rows],
                             self.embeddings[rows])

    @classmethod
    def concat(cls, parts: Sequence[EncodedPhotos]) -> EncodedPhotos:
        return cls(names=[n for p in parts for n in p.names], errors=[e for p in parts for e in p.errors],
                   features=np.concatenate([p.features for p in parts]),
                   embeddings=np.concatenate([p.embeddings for p in parts]))


class PhotoEncoder:
    """Runs a bundle's backbone, RRM and head; the device is chosen per call (CUDA when present)."""

    def __init__(self, bundle: Bundle, device: str | torch.device | None = None) -> None:
        self.bundle = bundle
        self.device = torch.device(device) if device is not None else default_device()

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.bundle.backbone.preprocessing.to_tensor(image)

    def features(self, tensors: Sequence[torch.Tensor], batch_size: int | None = None) -> np.ndarray:
        return extract_features(self.bundle.backbone, tensors, batch_size=batch_size, device=self.device)

    def warm_up_plan(self, largest_batch: int) -> tuple[list[tuple[int, int]], list[int]]:
        """(shapes, batch sizes) that `warm_up` computes: every shape the preprocessing makes, at every batch size
        that batches of at most `largest_batch` photos compute in on this device."""
        largest = min(largest_batch, default_batch_size(self.device))
        return self.bundle.backbone.preprocessing.shapes(), warm_batch_sizes(self.device, largest)

    def warm_up(self, largest_batch: int,
                progress: Callable[[], None] | None = None) -> tuple[list[tuple[int, int]], list[int]]:
        """Run the backbone over `warm_up_plan`'s shapes and sizes (backbone.warm_up); returns that plan."""
        shapes, sizes = self.warm_up_plan(largest_batch)
        warm_up(self.bundle.backbone, shapes, sizes, self.device, progress=progress)
        return shapes, sizes

    def embed_features(self, features: np.ndarray) -> np.ndarray:
        """ℓ2-normalised embeddings in the store's space: the RRM's output, or normalised raw features."""
        return embed(self.bundle.retrieval_rrm, features)

    @torch.inference_mode()
    def classify(self, features: np.ndarray, head_kind: str | None = None) -> tuple[HeadPrediction, np.ndarray]:
        """The head's prediction and its (N, cells) probabilities over the finest partition."""
        head = self.bundle.heads[head_kind] if head_kind else self.bundle.default_head
        x = torch.from_numpy(np.asarray(features, dtype=np.float32))
        return head.predict(x), head.cell_probabilities(x).numpy()

    def encode(self, tensors: Sequence[torch.Tensor], classify: bool = False, head_kind: str | None = None,
               batch_size: int | None = None) -> Encoded:
        features = self.features(tensors, batch_size)
        embeddings = self.embed_features(features)
        if not classify:
            return Encoded(features, embeddings)
        prediction, probabilities = self.classify(features, head_kind)
        return Encoded(features, embeddings, prediction, probabilities)

    def encode_photos(self, images: Sequence[ImageInput], batch_size: int | None = None,
                      workers: int | None = None) -> EncodedPhotos:
        """Read and embed photos (decoding overlaps the model; batches by shape bucket); one that cannot be read
        gets its reason in `errors` and zero vectors."""
        names = [photo_name(item, index) for index, item in enumerate(images)]
        errors = [""] * len(names)
        features = np.zeros((len(names), self.bundle.backbone.feature_dim), dtype=np.float32)

        def readable() -> Iterator[tuple[int, torch.Tensor]]:
            for index, item in load_stream(images, self.bundle.backbone.preprocessing, self.device, workers):
                if isinstance(item, str):
                    errors[index] = item
                else:
                    yield index, item

        for indices, values in stream_features(self.bundle.backbone, readable(), batch_size, self.device):
            features[indices] = values
        ok = np.array([not e for e in errors], dtype=bool)
        embeddings = np.zeros((len(names), self.bundle.embedding_dim), dtype=np.float32)
        if ok.any():
            embeddings[ok] = self.embed_features(features[ok])
        return EncodedPhotos(names, errors, features, embeddings)
