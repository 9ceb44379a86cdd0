"""Training the Residual Retrieval Module on cached features: infoNCE with a memory bank, or the triplet baseline."""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from locator.rrm import ResidualRetrievalModule
from training.pair_sampler import CellPairSampler
from training.losses import LOSSES
from training.schedule import adamw_cosine
from training.settings import RRMSettings


def train_rrm(features: np.ndarray, cells: np.ndarray, settings: RRMSettings = RRMSettings(),
              progress: bool = True) -> tuple[ResidualRetrievalModule, list[float]]:
    """Train an RRM so that photos of the same cell embed close together; returns it and the loss per epoch."""
    torch.manual_seed(settings.seed)
    x = torch.from_numpy(np.asarray(features, dtype=np.float32))
    labels = torch.from_numpy(np.asarray(cells, dtype=np.int64))
    sampler = CellPairSampler(np.asarray(cells), seed=settings.seed)
    rrm = ResidualRetrievalModule(x.shape[1], settings.hidden_dim, settings.residual)
    criterion = LOSSES.create(settings.loss, x.shape[1], settings)
    steps_per_epoch = max(1, -(-sampler.num_cells // settings.batch_pairs))
    optimiser, scheduler = adamw_cosine(rrm.parameters(), settings.lr, settings.weight_decay,
                                        settings.epochs * steps_per_epoch)
    log = []
    rrm.train()
    for _ in tqdm(range(settings.epochs), desc=f"rrm {settings.loss}", unit="epoch", disable=not progress):
        pairs = torch.from_numpy(sampler.epoch())
        total = 0.0
        for start in range(0, len(pairs), settings.batch_pairs):
            batch = pairs[start:start + settings.batch_pairs]
            b = len(batch)
            rows = torch.cat([batch[:, 0], batch[:, 1]])
            partner = torch.cat([torch.arange(b, 2 * b), torch.arange(b)])
            embeddings = rrm(x[rows])
            loss = criterion(embeddings, labels[rows], partner)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            scheduler.step()
            total += loss.item() * b
        log.append(total / len(pairs))
    return rrm.eval(), log
