"""infoNCE (eq. 3 of the paper, τ = 0.05) over pairs of photos from the same cell, with a cross-batch memory.

For each embedding, its partner (the other photo of its pair) is the positive; every embedding of another cell,
in the batch or in the memory bank, is a negative. Bank entries of the query's own cell are neither: they are
left out of the loss, since photos of one cell are not negatives of each other.
"""

from __future__ import annotations

import torch
from torch import nn

from training.memory_bank import MemoryBank


def info_nce(embeddings: torch.Tensor, labels: torch.Tensor, partner: torch.Tensor, keys: torch.Tensor,
             key_labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean infoNCE loss. `keys` start with `embeddings` themselves (so `partner` indexes into both)."""
    n = len(embeddings)
    logits = embeddings @ keys.T / temperature
    rows = torch.arange(n, device=embeddings.device)
    negative = labels[:, None] != key_labels[None, :]
    allowed = negative.clone()
    allowed[rows, partner] = True
    logits = logits.masked_fill(~allowed, float("-inf"))
    return (torch.logsumexp(logits, dim=1) - logits[rows, partner]).mean()


class InfoNCEWithMemory(nn.Module):
    """infoNCE against the batch plus a FIFO memory bank that each call updates with the batch."""

    def __init__(self, dim: int, temperature: float = 0.05, memory_size: int = 4096) -> None:
        super().__init__()
        self.temperature = temperature
        self.bank = MemoryBank(memory_size, dim)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
        bank_e, bank_l = self.bank.surviving(len(embeddings))
        keys = torch.cat([embeddings, bank_e.to(embeddings)])
        key_labels = torch.cat([labels, bank_l.to(labels.device)])
        loss = info_nce(embeddings, labels, partner, keys, key_labels, self.temperature)
        self.bank.enqueue(embeddings, labels)
        return loss


def from_settings(dim: int, settings) -> InfoNCEWithMemory:
    """The registry's `infonce` loss for an RRM of width `dim` (see training.losses)."""
    return InfoNCEWithMemory(dim, settings.temperature, settings.memory_size)
