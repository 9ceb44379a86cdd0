"""PlaNet: one linear layer over the cells of the finest partition, softmax cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from locator.cells import Partition
from locator.heads.base import Head


class CrossEntropyHead(Head):
    kind = "ce"

    def __init__(self, feature_dim: int, partitions: list[Partition]) -> None:
        super().__init__(feature_dim, partitions)
        self.classifier = nn.Linear(feature_dim, len(partitions[-1]))

    def loss(self, features: torch.Tensor, classes: torch.Tensor, latlon: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.classifier(features), classes[:, -1], ignore_index=-1)

    def cell_probabilities(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features).softmax(dim=1)
