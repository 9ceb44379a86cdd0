"""Full fine-tuning of the backbone with cross-entropy over cells (§4.2), on one process or many (DDP).

SGD (lr 0.01, momentum 0.9, weight decay 1e-4), learning rate halved every 5 epochs, RandomResizedCrop (scale
0.7-1, ratio 3/4-4/3) to 300×300 and horizontal flips. On CUDA: AMP, channels_last, pinned memory, and NCCL
between the GPUs; on CPUs, gloo. Launch with `torchrun --nproc_per_node=N -m training.cli backbone …` (any
number of nodes): each rank takes its share of every global batch (training.photo_data), so the run is the
same for any number of ranks up to batch-norm statistics (`--batch-norm sync` shares them on CUDA, `frozen`
keeps the pretrained ones). Checkpoints hold the model, optimiser, scheduler, loss scaler and data position, and
`--resume` continues exactly where the last one was written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms
from tqdm import tqdm

from locator.backbone import Backbone, default_device
from locator.cells import Partition
from locator.heads.ce import CrossEntropyHead
from training import checkpoint
from training.photo_data import FineTuneDataset, GlobalBatchSampler, PhotoIndex
from training.settings import BackboneSettings


@dataclass(frozen=True)
class Ranks:
    """This process's place among the fine-tuning processes (torchrun's environment variables)."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> Ranks:
        return cls(int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0)),
                   int(os.environ.get("LOCAL_RANK", 0)))

    @property
    def main(self) -> bool:
        return self.rank == 0


class CellClassifier(nn.Module):
    def __init__(self, backbone: Backbone, head: CrossEntropyHead) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head.classifier(self.backbone(images))


def training_transform(backbone: Backbone, size: int) -> transforms.Compose:
    return transforms.Compose([
        transforms.RandomResizedCrop(size, scale=(0.7, 1.0), ratio=(3 / 4, 4 / 3),
                                     interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(backbone.preprocessing.mean, backbone.preprocessing.std),
    ])


def _device(ranks: Ranks, device: str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", ranks.local_rank)
    return default_device()


def _setup(model: CellClassifier, settings: BackboneSettings, ranks: Ranks, device: torch.device) -> nn.Module:
    if settings.batch_norm == "frozen":
        for module in model.backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
                for parameter in module.parameters(recurse=False):
                    parameter.requires_grad_(False)
    elif settings.batch_norm == "sync" and ranks.world > 1 and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    if ranks.world > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return model


def _train_mode(model: nn.Module, settings: BackboneSettings) -> None:
    model.train()
    if settings.batch_norm == "frozen":
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if not (targets >= 0).any():  # a batch of unreadable photos only
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), targets, ignore_index=-1)


def finetune_backbone(backbone: Backbone, index: PhotoIndex, partition: Partition,
                      settings: BackboneSettings = BackboneSettings(), device: str | None = None,
                      checkpoints: Path | None = None, resume: bool = False,
                      progress: bool = True) -> tuple[CrossEntropyHead, list[float]]:
    """Fine-tune `backbone` in place with a PlaNet head over `partition`; returns the head and this rank's mean
    loss per epoch. Call within an initialised process group when several processes train together."""
    ranks = Ranks.from_environment() if dist.is_available() and dist.is_initialized() else Ranks()
    device = _device(ranks, device)
    torch.manual_seed(settings.seed)
    head = CrossEntropyHead(backbone.feature_dim, [partition])
    net = CellClassifier(backbone, head)
    model = _setup(net, settings, ranks, device)
    parameters = [p for p in net.parameters() if p.requires_grad]
    optimiser = torch.optim.SGD(parameters, lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimiser, step_size=settings.lr_step_epochs, gamma=settings.lr_gamma)
    on_gpu = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=on_gpu)
    dataset = FineTuneDataset(index, training_transform(backbone, settings.image_size), settings.image_size,
                              settings.seed)
    sampler = GlobalBatchSampler(len(index), settings.batch_size, ranks.world, ranks.rank, settings.seed)
    position = {"epoch": 0, "step": 0, "global_step": 0, "losses": []}
    if resume and checkpoints is not None and checkpoint.exists(checkpoints):
        saved = checkpoint.load(checkpoints, {"backbone": net.backbone, "head": net.head}, optimiser)
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        position = {k: saved[k] for k in position}
    losses = list(position["losses"])
    global_step = position["global_step"]
    for epoch in range(position["epoch"], settings.epochs):
        start_step = position["step"] if epoch == position["epoch"] else 0
        sampler.set_position(epoch, start_step)
        dataset.epoch = epoch
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=settings.workers, pin_memory=on_gpu,
                            prefetch_factor=4 if settings.workers else None)
        _train_mode(model, settings)
        total, seen, step, start = 0.0, 0, start_step, time.perf_counter()
        bar = tqdm(loader, desc=f"backbone epoch {epoch + 1}", unit="batch", disable=not (progress and ranks.main))
        for images, targets in bar:
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            if on_gpu:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=on_gpu):
                loss = _loss(model(images), targets)
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            total, seen = total + loss.item() * len(targets), seen + len(targets)
            step, global_step = step + 1, global_step + 1
            bar.set_postfix(photos_per_s_per_rank=f"{seen / (time.perf_counter() - start):.0f}")
            done = settings.max_steps is not None and global_step >= settings.max_steps
            if checkpoints is not None and ranks.main and (done or global_step % settings.checkpoint_every == 0):
                _save(checkpoints, net, optimiser, scheduler, scaler, epoch, step, global_step, losses)
            if done:
                break
        losses.append(total / max(seen, 1))
        scheduler.step()
        if settings.max_steps is not None and global_step >= settings.max_steps:
            break
        if checkpoints is not None and ranks.main:
            _save(checkpoints, net, optimiser, scheduler, scaler, epoch + 1, 0, global_step, losses)
    backbone.eval().cpu()
    return head.eval().cpu(), losses


def _save(directory: Path, net: CellClassifier, optimiser, scheduler, scaler, epoch: int, step: int,
          global_step: int, losses: list[float]) -> None:
    checkpoint.save(directory, {"backbone": net.backbone, "head": net.head}, optimiser,
                    {"scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "epoch": epoch,
                     "step": step, "global_step": global_step, "losses": losses})


@contextmanager
def distributed() -> Iterator[Ranks]:
    """Join the process group that torchrun describes (NCCL on CUDA, gloo on CPUs) and leave it on the way out.

    One process: nothing. Leaving waits for every rank (rank 0 writes the bundle after training) and then
    destroys the group: a rank whose interpreter exits with gloo's threads still running aborts.
    """
    ranks = Ranks.from_environment()
    if ranks.world == 1 or dist.is_initialized():
        yield ranks
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(ranks.local_rank)
    dist.init_process_group(backend)
    try:
        yield ranks
        dist.barrier()
    finally:
        dist.destroy_process_group()
