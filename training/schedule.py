"""Optimiser set-up shared by the head and RRM trainers: AdamW with a cosine learning-rate schedule."""

from __future__ import annotations

import torch


def adamw_cosine(parameters, lr: float, weight_decay: float, total_steps: int):
    parameters = list(parameters)
    fused = bool(parameters) and all(p.is_cuda for p in parameters)  # one kernel per step on the GPU
    optimiser = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay, fused=True if fused else None)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(total_steps, 1))
    return optimiser, scheduler
