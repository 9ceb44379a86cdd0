"""Training a classification head (ce, hc, mvmf) on cached backbone features, streamed in minibatches.

Batches come from training.batches (shuffled blocks of the cache; memory does not grow with the rows) and are
cast to float32 on the device: CUDA when present, with bfloat16 autocast for the linear layers (the losses are
computed in float32), else the CPU. Owners held out (`validation`) score every epoch: loss, cell accuracy and
accuracy within 25 km and 750 km of the head's predicted location. The best epoch (the sum of the three
accuracies; a tie goes to the later epoch) is kept, and after `min_epochs` training stops once `patience` epochs
have brought no improvement. MvMF starts from a trained ce layer.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from locator.backbone import default_device
from locator.cells import Partition
from locator.geo import haversine_km
from locator.heads import Head, create_head
from locator.heads.ce import CrossEntropyHead
from training.batches import TrainingRows, batches, holdout
from training.schedule import adamw_cosine
from training.settings import HeadSettings

VALIDATION_BATCH = 4096


def photo_classes(partitions: list[Partition], lat: np.ndarray, lon: np.ndarray, chunk: int = 500_000) -> np.ndarray:
    """(N, levels) class of each photo in every partition (-1 where its cell was dropped); looked up a chunk at a
    time, so that the S2 arithmetic's temporaries stay small for millions of photos."""
    out = np.empty((len(lat), len(partitions)), dtype=np.int64)
    for s in range(0, len(lat), chunk):
        out[s:s + chunk] = np.stack([p.lookup(lat[s:s + chunk], lon[s:s + chunk]) for p in partitions], axis=1)
    return out


@dataclass
class EpochLog:
    epoch: int
    loss: float
    val_loss: float = float("nan")
    val_cell_accuracy: float = float("nan")
    val_acc_25km: float = float("nan")
    val_acc_750km: float = float("nan")


@dataclass
class HeadLog:
    epochs: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0
    train_rows: int = 0
    validation_rows: int = 0
    samples_seen: int = 0  # rows trained on, over every epoch (an epoch cut short by max_seconds counts its part)
    samples_per_second: float = 0.0

    @property
    def losses(self) -> list[float]:
        return [e.loss for e in self.epochs]

    def best(self) -> EpochLog:
        return self.epochs[self.best_epoch - 1]

    def to_json(self) -> dict:
        return {"best_epoch": self.best_epoch, "train_rows": self.train_rows, "validation_rows": self.validation_rows,
                "samples_seen": self.samples_seen, "samples_per_second": self.samples_per_second,
                "best": asdict(self.best()) if self.epochs else None}

    def csv(self) -> str:
        names = list(asdict(EpochLog(0, 0.0)))
        return ",".join(names) + "\n" + "".join(",".join(f"{getattr(e, n):.6g}" for n in names) + "\n"
                                                for e in self.epochs)


def resolve_device(device: str | torch.device | None) -> torch.device:
    return torch.device(device) if device is not None else default_device()


def upload(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """An array as a tensor on the device (pinned and non-blocking on CUDA), in its own dtype."""
    tensor = torch.from_numpy(np.ascontiguousarray(x))
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def to_device(x: np.ndarray, device: torch.device) -> torch.Tensor:
    """Stored-dtype rows → float32 on the device (the cast happens there)."""
    return upload(x, device).float()


def _loss(head: Head, x: torch.Tensor, classes: torch.Tensor, latlon: torch.Tensor) -> torch.Tensor:
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
        return head.loss(x, classes, latlon).float()


@torch.inference_mode()
def validate(head: Head, x: np.ndarray, classes: np.ndarray, lat: np.ndarray, lon: np.ndarray,
             device: torch.device) -> dict[str, float]:
    """Loss, cell accuracy and Acc@25/750 km of the head's predicted location, on held-out rows."""
    head.eval()
    losses, cells, p_lat, p_lon = [], [], [], []
    for s in range(0, len(x), VALIDATION_BATCH):
        xb = to_device(x[s:s + VALIDATION_BATCH], device)
        yb = torch.from_numpy(classes[s:s + VALIDATION_BATCH]).to(device)
        ll = torch.from_numpy(np.stack([lat[s:s + VALIDATION_BATCH], lon[s:s + VALIDATION_BATCH]], 1)).to(device)
        losses.append(float(_loss(head, xb, yb, ll)) * len(xb))
        prediction = head.predict(xb)
        cells.append(prediction.cell)
        p_lat.append(prediction.lat)
        p_lon.append(prediction.lon)
    cell, errors = np.concatenate(cells), haversine_km(lat, lon, np.concatenate(p_lat), np.concatenate(p_lon))
    return {"val_loss": sum(losses) / len(x), "val_cell_accuracy": float(np.mean(cell == classes[:, -1])),
            "val_acc_25km": float(np.mean(errors < 25)), "val_acc_750km": float(np.mean(errors < 750))}


def train_head(kind: str, data: TrainingRows, partitions: list[Partition], settings: HeadSettings = HeadSettings(),
               init_from: CrossEntropyHead | None = None, device: str | torch.device | None = None,
               progress: bool = True) -> tuple[Head, HeadLog]:
    """Train a head of `kind`; returns the best epoch's head (in eval mode, on the CPU) and the log."""
    device = resolve_device(device)
    torch.manual_seed(settings.seed)
    head = create_head(kind, data.dim, partitions)
    if init_from is not None and hasattr(head, "init_from_ce"):
        head.init_from_ce(init_from)
    head.to(device)
    classes = photo_classes(partitions, data.lat, data.lon)
    usable = data.usable if kind == "mvmf" else data.usable[classes[data.usable, -1] >= 0]
    train_rows, val_rows = holdout(data, usable, settings.validation, settings.max_validation, settings.seed)
    val_x = data.gather(val_rows)
    # every row's classes and (lat, lon) live on the device, and batches arrive there: a step uploads nothing
    classes_t = torch.from_numpy(classes).to(device)
    latlon_t = torch.from_numpy(np.stack([data.lat, data.lon], axis=1)).to(device)
    steps = max(1, -(-len(train_rows) // settings.batch_size))
    optimiser, scheduler = adamw_cosine(head.parameters(), settings.lr, settings.weight_decay, settings.epochs * steps)
    rng = np.random.default_rng(settings.seed)
    log = HeadLog(train_rows=len(train_rows), validation_rows=len(val_rows))
    best_key, best_state, waited, seen, start, training_seconds = None, None, 0, 0, time.perf_counter(), 0.0
    for epoch in tqdm(range(1, settings.epochs + 1), desc=f"head {kind}", unit="epoch", disable=not progress):
        head.train()
        total = torch.zeros((), dtype=torch.float64, device=device)  # summed on the device: no sync per step
        epoch_rows, epoch_start = 0, time.perf_counter()
        for rows, x in batches(data, train_rows, settings.batch_size, rng, device):
            loss = _loss(head, x.float(), classes_t[rows], latlon_t[rows])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            total += loss.detach().double() * len(rows)
            epoch_rows += len(rows)
            if settings.max_seconds is not None and time.perf_counter() - start > settings.max_seconds:
                break
        entry = EpochLog(epoch, total.item() / max(epoch_rows, 1))
        seen += epoch_rows
        training_seconds += time.perf_counter() - epoch_start  # after .item(): the device has finished the epoch
        if len(val_rows):
            for name, value in validate(head, val_x, classes[val_rows], data.lat[val_rows], data.lon[val_rows],
                                        device).items():
                setattr(entry, name, value)
        log.epochs.append(entry)
        score = entry.val_cell_accuracy + entry.val_acc_25km + entry.val_acc_750km if len(val_rows) else 0.0
        waited = 0 if best_key is None or score > best_key else waited + 1
        if best_key is None or score >= best_key:  # a tie goes to the later, longer-trained epoch
            best_key, best_state, log.best_epoch = score, copy.deepcopy(head.state_dict()), epoch
        if epoch >= settings.min_epochs and waited >= settings.patience:
            break
        if settings.max_seconds is not None and time.perf_counter() - start > settings.max_seconds:
            break
    log.samples_seen = seen
    log.samples_per_second = seen / max(training_seconds, 1e-9)  # optimisation steps only, validation excluded
    head.load_state_dict(best_state)
    return head.cpu().eval(), log
