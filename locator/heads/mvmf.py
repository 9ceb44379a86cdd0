"""Mixture of von Mises-Fisher distributions on the sphere (eq. 1-2 of the paper).

One component per cell of the finest partition, with its mean direction at the cell centre and a learned
concentration κ > 0; mixture weights are the softmax of a linear layer. The loss is the negative
log-likelihood of the photo's true location; the prediction is the mean of the highest-weight component.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from locator.cells import Partition
from locator.heads.base import Head
from locator.heads.ce import CrossEntropyHead

KAPPA_MIN, KAPPA_MAX = 1.0, 1e6


def vmf_log_density(x: torch.Tensor, mu: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    """log f(x; μ, κ) on the unit sphere S² (3-d unit vectors), stable for κ from ~1e-3 to 1e6 and beyond.

    f = κ / (4π sinh κ) · exp(κ μ·x); with log sinh κ = κ + log(-expm1(-2κ)) - log 2 this is
    log κ - log 2π - log(-expm1(-2κ)) + κ (μ·x - 1).
    """
    cos = (x * mu).sum(dim=-1)
    return torch.log(kappa) - math.log(2 * math.pi) - torch.log(-torch.expm1(-2 * kappa)) + kappa * (cos - 1)


def initial_kappa(partition: Partition) -> np.ndarray:
    """A starting κ per cell from its S2 level: about 1/σ², σ = half the cell's edge in radians."""
    edge_rad = (math.pi / 2) / (2.0 ** partition.levels)
    return np.clip(1.0 / (edge_rad / 2) ** 2, KAPPA_MIN, KAPPA_MAX)


class MvMFHead(Head):
    kind = "mvmf"

    def __init__(self, feature_dim: int, partitions: list[Partition]) -> None:
        super().__init__(feature_dim, partitions)
        fine = partitions[-1]
        self.classifier = nn.Linear(feature_dim, len(fine))
        self.log_kappa = nn.Parameter(torch.tensor(np.log(initial_kappa(fine)), dtype=torch.float32))
        self.register_buffer("mu", torch.tensor(fine.centres_xyz, dtype=torch.float32),
                             persistent=False)

    @property
    def kappa(self) -> torch.Tensor:
        return self.log_kappa.clamp(math.log(KAPPA_MIN), math.log(KAPPA_MAX)).exp()

    def init_from_ce(self, ce: CrossEntropyHead) -> None:
        """Start the mixture weights from a trained PlaNet layer over the same cells."""
        if ce.classifier.weight.shape != self.classifier.weight.shape:
            raise ValueError("the ce head has other cells or feature size than this mvmf head")
        with torch.no_grad():
            self.classifier.weight.copy_(ce.classifier.weight)
            self.classifier.bias.copy_(ce.classifier.bias)

    def log_likelihood(self, features: torch.Tensor, latlon: torch.Tensor) -> torch.Tensor:
        """log p(location | photo) per photo, (N,); in float32 even under autocast."""
        log_w = self.classifier(features).float().log_softmax(dim=1)
        with torch.autocast(device_type=features.device.type, enabled=False):
            phi, lam = torch.deg2rad(latlon[:, 0].double()), torch.deg2rad(latlon[:, 1].double())
            x = torch.stack([phi.cos() * lam.cos(), phi.cos() * lam.sin(), phi.sin()], dim=1).float()
            kappa = self.kappa
            cos = (x @ self.mu.T).clamp(-1.0, 1.0)
            log_f = (torch.log(kappa) - math.log(2 * math.pi) - torch.log(-torch.expm1(-2 * kappa)))[None, :] \
                + kappa[None, :] * (cos - 1)
            return torch.logsumexp(log_w + log_f, dim=1)

    def loss(self, features: torch.Tensor, classes: torch.Tensor, latlon: torch.Tensor) -> torch.Tensor:
        return -self.log_likelihood(features, latlon).mean()

    def cell_probabilities(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features).softmax(dim=1)
