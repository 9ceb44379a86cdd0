"""Cross-batch memory bank: a FIFO of recent embeddings with their cell labels (negatives for infoNCE)."""

from __future__ import annotations

import torch

from locator.errors import SettingsError


class MemoryBank:
    """The `size` most recent (detached) embeddings and labels, oldest first."""

    def __init__(self, size: int, dim: int) -> None:
        if size < 1:
            raise SettingsError(f"memory bank size must be positive, got {size}")
        self.size = size
        self.embeddings = torch.zeros(0, dim)
        self.labels = torch.zeros(0, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def surviving(self, incoming: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Entries that remain once `incoming` new ones are enqueued (the newest `size - incoming`)."""
        keep = max(self.size - incoming, 0)
        start = max(len(self) - keep, 0)
        return self.embeddings[start:], self.labels[start:]

    def enqueue(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        merged_e = torch.cat([self.embeddings.to(embeddings.device), embeddings.detach()])
        merged_l = torch.cat([self.labels.to(labels.device), labels.detach()])
        self.embeddings, self.labels = merged_e[-self.size:], merged_l[-self.size:]
