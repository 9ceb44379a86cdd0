"""Triplet loss with semi-hard negative mining (FaceNet), the paper's baseline for retrieval training.

Distance is cosine distance (1 - cos) of ℓ2-normalised embeddings. For each anchor and its positive, the
negative is the closest one farther than the positive; when none is, the farthest negative (TensorFlow's
`triplet_semihard_loss` rule).
"""

from __future__ import annotations

import functools

import torch


def semi_hard_triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, partner: torch.Tensor,
                           margin: float = 0.01) -> torch.Tensor:
    distance = 1.0 - embeddings @ embeddings.T
    rows = torch.arange(len(embeddings), device=embeddings.device)
    d_ap = distance[rows, partner]
    negative = labels[:, None] != labels[None, :]
    farther = negative & (distance > d_ap[:, None])
    inf = torch.tensor(float("inf"), device=embeddings.device)
    closest_farther = torch.where(farther, distance, inf).min(dim=1).values
    farthest = torch.where(negative, distance, -inf).max(dim=1).values
    d_an = torch.where(farther.any(dim=1), closest_farther, farthest)
    has_negative = negative.any(dim=1)
    losses = torch.clamp(d_ap - d_an + margin, min=0.0)[has_negative]
    return losses.mean() if len(losses) else embeddings.sum() * 0.0


def from_settings(dim: int, settings):
    """The registry's `triplet` loss (see training.losses); `dim` is unused."""
    return functools.partial(semi_hard_triplet_loss, margin=settings.margin)
