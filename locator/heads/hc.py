"""Hierarchical classification: one linear head per partition (coarse, middle, fine).

Training: the mean of the per-partition cross-entropies. Inference: each fine cell's probability times its
ancestors' probabilities; the best fine cell wins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from locator.cells import Hierarchy, Partition
from locator.heads.base import Head


class HierarchicalHead(Head):
    kind = "hc"

    def __init__(self, feature_dim: int, partitions: list[Partition]) -> None:
        super().__init__(feature_dim, partitions)
        self.classifiers = nn.ModuleList(nn.Linear(feature_dim, len(p)) for p in partitions)
        ancestors = torch.from_numpy(Hierarchy(partitions).ancestors).long()
        self.register_buffer("ancestors", ancestors, persistent=False)

    def loss(self, features: torch.Tensor, classes: torch.Tensor, latlon: torch.Tensor) -> torch.Tensor:
        losses = [F.cross_entropy(head(features), classes[:, level], ignore_index=-1)
                  for level, head in enumerate(self.classifiers)]
        return torch.stack(losses).mean()

    def cell_probabilities(self, features: torch.Tensor) -> torch.Tensor:
        log_p = torch.zeros(features.shape[0], self.num_cells, device=features.device, dtype=features.dtype)
        for level, head in enumerate(self.classifiers):
            log_p = log_p + head(features).log_softmax(dim=1)[:, self.ancestors[:, level]]
        return log_p.softmax(dim=1)  # the product of probabilities, renormalised over the fine cells
