"""What every classification head shares: cells of the finest partition, probabilities, a predicted (lat, lon)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from locator.cells import Partition


@dataclass(frozen=True)
class HeadPrediction:
    """Per photo: the best cell of the finest partition, its probability and the predicted (lat, lon) degrees."""

    cell: np.ndarray
    probability: np.ndarray
    lat: np.ndarray
    lon: np.ndarray


class Head(nn.Module):
    """A classifier over S2 cells fed by backbone features.

    `partitions` are ordered coarse → fine; heads that use one partition use the finest. `classes` passed to
    `loss` has one column per partition (the photo's class in each, -1 where it has none).
    """

    kind: ClassVar[str]

    def __init__(self, feature_dim: int, partitions: list[Partition]) -> None:
        super().__init__()
        if not partitions:
            raise ValueError("a head needs at least one partition")
        self.feature_dim = feature_dim
        self.num_levels = len(partitions)
        fine = partitions[-1]
        self.register_buffer("centres", torch.tensor(np.stack([fine.lat, fine.lon], 1), dtype=torch.float64),
                             persistent=False)

    @property
    def num_cells(self) -> int:
        return int(self.centres.shape[0])

    def loss(self, features: torch.Tensor, classes: torch.Tensor, latlon: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def cell_probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """(N, num_cells) probabilities over the finest partition's cells."""
        raise NotImplementedError

    def cell_latlon(self, cells: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
        """(N, 2) location predicted for the chosen cells: the cell centres, unless a head knows better."""
        return self.centres[cells]

    @torch.inference_mode()
    def predict(self, features: torch.Tensor) -> HeadPrediction:
        probabilities = self.cell_probabilities(features)
        best_p, cells = probabilities.max(dim=1)
        latlon = self.cell_latlon(cells, probabilities).cpu().numpy()
        return HeadPrediction(cells.cpu().numpy(), best_p.float().cpu().numpy(), latlon[:, 0], latlon[:, 1])
