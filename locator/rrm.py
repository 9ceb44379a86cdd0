"""Residual Retrieval Module (§3.3): LayerNorm → Linear(D, Dh) → ReLU → Linear(Dh, D) + residual → LayerNorm → ℓ2."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class ResidualRetrievalModule(nn.Module):
    """Maps backbone features (N, D) to ℓ2-normalised location-aware embeddings (N, D).

    `residual=False` drops the skip connection (the paper's ablation).
    """

    def __init__(self, dim: int, hidden_dim: int = 4096, residual: bool = True) -> None:
        super().__init__()
        self.dim, self.hidden_dim, self.residual = dim, hidden_dim, residual
        self.norm_in = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.norm_in(features)
        y = self.fc2(F.relu(self.fc1(x)))
        if self.residual:
            y = y + x
        return F.normalize(self.norm_out(y), dim=-1)

    def config(self) -> dict:
        return {"dim": self.dim, "hidden_dim": self.hidden_dim, "residual": self.residual}


@torch.inference_mode()
def embed(rrm: ResidualRetrievalModule | None, features: np.ndarray, batch_size: int = 4096,
          device: str | torch.device = "cpu") -> np.ndarray:
    """Embeddings of backbone features in the store's space: the RRM's output (computed on `device`, where the
    RRM is moved), or ℓ2-normalised raw features."""
    x = torch.from_numpy(np.asarray(features, dtype=np.float32))
    if rrm is None:
        return F.normalize(x, dim=1).numpy()
    rrm = rrm.to(device)
    return torch.cat([rrm(x[s:s + batch_size].to(device)).cpu() for s in range(0, len(x), batch_size)]).numpy()
