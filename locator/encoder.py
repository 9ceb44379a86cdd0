"""Photos → backbone features → (cell probabilities, location-aware embeddings), for one bundle.

Used by the locator at query time and by the ingest actors, so both embed exactly alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from locator.backbone import default_device, extract_features
from locator.bundle import Bundle
from locator.heads import HeadPrediction
from locator.images import ImageLoadError, load_image, to_model_image
from locator.rrm import embed

ImageInput = str | Path | Image.Image | np.ndarray


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

    @classmethod
    def concat(cls, parts: Sequence[EncodedPhotos]) -> EncodedPhotos:
        return cls(names=[n for p in parts for n in p.names], errors=[e for p in parts for e in p.errors],
                   features=np.concatenate([p.features for p in parts]),
                   embeddings=np.concatenate([p.embeddings for p in parts]))


def photo_name(item: ImageInput, index: int) -> str:
    return str(item) if isinstance(item, (str, Path)) else f"<image {index}>"


def read_photo(item: ImageInput) -> Image.Image:
    """A path, PIL image or uint8 array as an upright, metadata-free RGB image; ImageLoadError otherwise."""
    if isinstance(item, (str, Path)):
        return load_image(item)
    if isinstance(item, Image.Image):
        return to_model_image(item)
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim not in (2, 3):
            raise ImageLoadError(f"<array {item.shape} {item.dtype}>: need a uint8 H×W or H×W×C array")
        return to_model_image(Image.fromarray(item))
    raise ImageLoadError(f"<{type(item).__name__}>: not a path, PIL image or numpy array")


class PhotoEncoder:
    """Runs a bundle's backbone, RRM and head; the device is chosen per call (CUDA when present)."""

    def __init__(self, bundle: Bundle, device: str | torch.device | None = None) -> None:
        self.bundle = bundle
        self.device = torch.device(device) if device is not None else default_device()

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self.bundle.backbone.preprocessing.to_tensor(image)

    def features(self, tensors: Sequence[torch.Tensor], batch_size: int | None = None) -> np.ndarray:
        return extract_features(self.bundle.backbone, tensors, batch_size=batch_size, device=self.device)

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

    def encode_photos(self, images: Sequence[ImageInput]) -> EncodedPhotos:
        """Read and embed photos; one that cannot be read gets its reason in `errors` and zero vectors."""
        names, errors, tensors = [], [], []
        for index, item in enumerate(images):
            names.append(photo_name(item, index))
            try:
                tensors.append(self.preprocess(read_photo(item)))
                errors.append("")
            except ImageLoadError as exc:
                errors.append(str(exc))
        features = np.zeros((len(names), self.bundle.backbone.feature_dim), dtype=np.float32)
        embeddings = np.zeros((len(names), self.bundle.embedding_dim), dtype=np.float32)
        ok = np.array([not e for e in errors], dtype=bool)
        if tensors:
            features[ok] = self.features(tensors)
            embeddings[ok] = self.embed_features(features[ok])
        return EncodedPhotos(names, errors, features, embeddings)
