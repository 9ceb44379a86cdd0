"""Training a classification head (ce, hc, mvmf) on cached backbone features."""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from locator.cells import Partition
from locator.heads import Head, create_head
from locator.heads.ce import CrossEntropyHead
from training.schedule import adamw_cosine
from training.settings import HeadSettings


def photo_classes(partitions: list[Partition], lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(N, levels) class of each photo in every partition (-1 where its cell was dropped)."""
    return np.stack([p.lookup(lat, lon) for p in partitions], axis=1)


def train_head(kind: str, features: np.ndarray, lat: np.ndarray, lon: np.ndarray, partitions: list[Partition],
               settings: HeadSettings = HeadSettings(), init_from: CrossEntropyHead | None = None,
               progress: bool = True) -> tuple[Head, list[float]]:
    """Train a head of `kind`; returns it (in eval mode) and the mean loss of every epoch."""
    torch.manual_seed(settings.seed)
    head = create_head(kind, features.shape[1], partitions)
    if init_from is not None and hasattr(head, "init_from_ce"):
        head.init_from_ce(init_from)
    classes = photo_classes(partitions, lat, lon)
    usable = np.flatnonzero(classes[:, -1] >= 0) if kind != "mvmf" else np.arange(len(features))
    x = torch.from_numpy(np.asarray(features[usable], dtype=np.float32))
    y = torch.from_numpy(classes[usable])
    latlon = torch.tensor(np.stack([lat[usable], lon[usable]], 1), dtype=torch.float32)
    steps_per_epoch = max(1, -(-len(x) // settings.batch_size))
    optimiser, scheduler = adamw_cosine(head.parameters(), settings.lr, settings.weight_decay,
                                        settings.epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(settings.seed)
    log = []
    head.train()
    for _ in tqdm(range(settings.epochs), desc=f"head {kind}", unit="epoch", disable=not progress):
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), settings.batch_size):
            batch = order[start:start + settings.batch_size]
            optimiser.zero_grad()
            loss = head.loss(x[batch], y[batch], latlon[batch])
            loss.backward()
            optimiser.step()
            scheduler.step()
            total += loss.item() * len(batch)
        log.append(total / len(x))
    return head.eval(), log
