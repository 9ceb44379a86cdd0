"""Settings of the training stages (heads, RRM, backbone fine-tuning): CLI arguments and the bundle's record of
how each part was trained. Kept free of torch so that `geoloc-train --help` starts fast."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from locator.settings import option
from training.losses import LOSSES


@dataclass(frozen=True)
class HeadSettings:
    epochs: int = option(40, "passes over the training photos", minimum=1)
    batch_size: int = option(256, "photos per optimisation step", minimum=1)
    lr: float = option(1e-3, "AdamW learning rate (cosine schedule to 0)", minimum=0)
    weight_decay: float = option(1e-4, "AdamW weight decay", minimum=0)
    seed: int = option(0, "random seed for initialisation and shuffling")

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RRMSettings:
    hidden_dim: int = option(4096, "width of the RRM's hidden layer", minimum=1)
    residual: bool = option(True, "keep the residual connection (--no-residual: the paper's ablation)")
    loss: str = option("infonce", "retrieval loss", choices=LOSSES)
    temperature: float = option(0.05, "infoNCE temperature τ", minimum=1e-6)
    memory_size: int = option(4096, "infoNCE memory bank size (negatives from earlier batches)", minimum=1)
    margin: float = option(0.01, "triplet margin", minimum=0)
    batch_pairs: int = option(128, "positive pairs (two photos of one cell) per step", minimum=1)
    epochs: int = option(200, "epochs; each draws one pair per cell", minimum=1)
    lr: float = option(1e-4, "AdamW learning rate (cosine schedule to 0)", minimum=0)
    weight_decay: float = option(1e-4, "AdamW weight decay", minimum=0)
    seed: int = option(0, "random seed")

    def __post_init__(self) -> None:
        LOSSES.check(self.loss)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BackboneSettings:
    epochs: int = option(15, "passes over the training photos", minimum=1)
    batch_size: int = option(64, "photos per SGD step", minimum=1)
    lr: float = option(0.01, "SGD learning rate (halved every --lr-step-epochs)", minimum=0)
    momentum: float = option(0.9, "SGD momentum", minimum=0)
    weight_decay: float = option(1e-4, "SGD weight decay", minimum=0)
    lr_step_epochs: int = option(5, "epochs between learning-rate steps", minimum=1)
    lr_gamma: float = option(0.5, "learning-rate factor at each step", minimum=0)
    image_size: int = option(300, "training crop side in pixels", minimum=32)
    max_steps: int | None = option(None, "stop after this many steps (CPU smoke runs)", minimum=1)
    workers: int = option(2, "data-loading worker processes", minimum=0)
    seed: int = option(0, "random seed")

    def to_json(self) -> dict:
        return asdict(self)
