"""Full fine-tuning of the backbone with cross-entropy over cells (§4.2).

SGD (lr 0.01, momentum 0.9, weight decay 1e-4), learning rate halved every 5 epochs, RandomResizedCrop
(scale 0.7-1, ratio 3/4-4/3) to 300×300 and horizontal flips. On a GPU it runs with AMP and channels_last;
on a CPU, `max_steps` makes a smoke run.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from tqdm import tqdm

from locator.backbone import Backbone, default_device
from locator.cells import Partition
from locator.datasets import Record
from locator.heads.ce import CrossEntropyHead
from locator.images import ImageLoadError, load_image
from training.settings import BackboneSettings


class _CellPhotos(Dataset):
    def __init__(self, records: list[Record], classes: np.ndarray, transform) -> None:
        self.records, self.classes, self.transform = records, classes, transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        try:
            image = load_image(self.records[index].image)
        except ImageLoadError:
            return None  # dropped by the collate function; counted there
        return self.transform(image), int(self.classes[index])


def _collate(items):
    kept = [item for item in items if item is not None]
    if not kept:
        return None
    return torch.stack([k[0] for k in kept]), torch.tensor([k[1] for k in kept])


def training_transform(backbone: Backbone, size: int) -> transforms.Compose:
    return transforms.Compose([
        transforms.RandomResizedCrop(size, scale=(0.7, 1.0), ratio=(3 / 4, 4 / 3),
                                     interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(backbone.preprocessing.mean, backbone.preprocessing.std),
    ])


def finetune_backbone(backbone: Backbone, records: list[Record], partition: Partition,
                      settings: BackboneSettings = BackboneSettings(), device: str | None = None,
                      progress: bool = True) -> tuple[CrossEntropyHead, list[float]]:
    """Fine-tune `backbone` in place with a PlaNet head over `partition`; returns the head and loss per epoch."""
    torch.manual_seed(settings.seed)
    device = torch.device(device) if device else default_device()
    on_gpu = device.type == "cuda"
    classes = partition.lookup([r.lat for r in records], [r.lon for r in records])
    keep = np.flatnonzero(classes >= 0)
    dataset = _CellPhotos([records[k] for k in keep], classes[keep], training_transform(backbone, settings.image_size))
    loader = DataLoader(dataset, batch_size=settings.batch_size, shuffle=True, num_workers=settings.workers,
                        collate_fn=_collate, drop_last=False, pin_memory=on_gpu,
                        generator=torch.Generator().manual_seed(settings.seed))
    head = CrossEntropyHead(backbone.feature_dim, [partition])
    backbone.train().to(device)
    head.train().to(device)
    if on_gpu:
        backbone.to(memory_format=torch.channels_last)
    parameters = list(backbone.parameters()) + list(head.parameters())
    optimiser = torch.optim.SGD(parameters, lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimiser, step_size=settings.lr_step_epochs, gamma=settings.lr_gamma)
    scaler = torch.amp.GradScaler("cuda", enabled=on_gpu)
    zeros = torch.zeros(1, 2)
    log, steps = [], 0
    for _ in range(settings.epochs):
        total, seen = 0.0, 0
        for batch in tqdm(loader, desc=f"backbone epoch {len(log) + 1}", unit="batch", disable=not progress):
            if batch is None:
                continue
            images, targets = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
            if on_gpu:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=on_gpu):
                loss = head.loss(backbone(images), targets[:, None], zeros)
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            total, seen, steps = total + loss.item() * len(targets), seen + len(targets), steps + 1
            if settings.max_steps is not None and steps >= settings.max_steps:
                break
        scheduler.step()
        log.append(total / max(seen, 1))
        if settings.max_steps is not None and steps >= settings.max_steps:
            break
    backbone.eval().cpu()
    return head.eval().cpu(), log
