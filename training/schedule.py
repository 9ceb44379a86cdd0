"""Optimiser set-up shared by the head and RRM trainers: AdamW with a cosine learning-rate schedule."""

from __future__ import annotations

import torch


def adamw_cosine(parameters, lr: float, weight_decay: float, total_steps: int):
    parameters = list(parameters)
    # One fused kernel per step, on the GPU and on the CPU (there 6x faster than the per-tensor loop for the RRM's
    # 10.5 M weights: 13 ms a step against 79 on 2 cores).
    fused = bool(parameters) and all(p.device.type in ("cuda", "cpu") for p in parameters)
    optimiser = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay, fused=True if fused else None)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(total_steps, 1))
    return optimiser, scheduler
