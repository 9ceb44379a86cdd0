"""Settings of the training stages (heads, RRM, backbone fine-tuning): CLI arguments and the bundle's record of
how each part was trained. Kept free of torch so that `geoloc-train --help` starts fast."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from locator.settings import option
from training.losses import LOSSES


@dataclass(frozen=True)
class HeadSettings:
    epochs: int = option(40, "passes over the training photos", minimum=1)
    batch_size: int = option(256, "photos per optimisation step (with an MP16-sized cache on a GPU, "
                                  "1024 trained ce 2.8x faster on an H100)", minimum=1)
    lr: float = option(1e-3, "AdamW learning rate (cosine schedule to 0)", minimum=0)
    weight_decay: float = option(1e-4, "AdamW weight decay", minimum=0)
    seed: int = option(0, "random seed for initialisation, shuffling and the validation owners")
    validation: float = option(0.1, "share of owners held out to validate every epoch (0: none)", minimum=0,
                               maximum=0.5)
    max_validation: int = option(20_000, "at most this many validation photos", minimum=1)
    min_epochs: int = option(20, "train at least this many epochs before stopping early", minimum=1)
    patience: int = option(10, "then stop after this many epochs without better validation accuracy "
                               "(cell, 25 km and 750 km summed)", minimum=1)
    max_seconds: float | None = option(None, "stop training after this much time (benchmarks, smoke runs)",
                                       minimum=0)

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
    batch_pairs: int = option(128, "positive pairs (two photos of one cell, distinct cells) per step", minimum=1)
    steps: int | None = option(None, "optimisation steps (default: 20 pairs per cell with two photos, at least 200 "
                                     "and at most 20,000)", minimum=1)
    lr: float = option(1e-4, "AdamW learning rate (cosine schedule to 0)", minimum=0)
    weight_decay: float = option(1e-4, "AdamW weight decay", minimum=0)
    seed: int = option(0, "random seed (initialisation, pairs, validation owners)")
    validation: float = option(0.1, "share of owners held out to measure same-cell precision@10 (0: none)",
                               minimum=0, maximum=0.5)
    max_validation: int = option(2_000, "at most this many validation photos", minimum=1)
    eval_every: int = option(100, "steps between validations", minimum=1)
    patience: int = option(5, "stop after this many validations without a better precision@10", minimum=1)
    space: str = option("auto", "what the collection embeds: rrm, raw features, or auto (the RRM only if it beats "
                                "raw features on the held-out owners)", choices=("auto", "rrm", "raw"))

    def __post_init__(self) -> None:
        LOSSES.check(self.loss)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class BackboneSettings:
    epochs: int = option(15, "passes over the training photos", minimum=1)
    batch_size: int = option(64, "photos per SGD step, over all ranks together (a multiple of their number)",
                             minimum=1)
    lr: float = option(0.01, "SGD learning rate (halved every --lr-step-epochs)", minimum=0)
    momentum: float = option(0.9, "SGD momentum", minimum=0)
    weight_decay: float = option(1e-4, "SGD weight decay", minimum=0)
    lr_step_epochs: int = option(5, "epochs between learning-rate steps", minimum=1)
    lr_gamma: float = option(0.5, "learning-rate factor at each step", minimum=0)
    image_size: int = option(300, "training crop side in pixels", minimum=32)
    max_steps: int | None = option(None, "stop after this many steps (CPU smoke runs)", minimum=1)
    workers: int = option(2, "data-loading worker processes per rank", minimum=0)
    seed: int = option(0, "random seed")
    batch_norm: str = option("sync", "batch-norm statistics: sync (shared by the GPUs), train (per rank) or frozen "
                                     "(the pretrained ones)", choices=("sync", "train", "frozen"))
    checkpoint_every: int = option(1000, "steps between checkpoints (with --checkpoints)", minimum=1)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FusionSettings:
    folds: int = option(5, "owner-grouped folds; each is held out once and located against a head and RRM "
                           "retrained on the others", minimum=2)
    max_queries: int = option(5000, "locate at most this many held-out photos in all", minimum=20)
    k: int = option(10, "neighbours per search, as at query time", minimum=1)
    cells: int = option(5, "most probable cells searched together for candidates", minimum=1)
    scorer_folds: int = option(5, "owner-grouped folds for the out-of-fold confidence and radius", minimum=2)
    refine_km: float = option(750.0, "after choosing a region, pick the most precise candidate within this distance",
                              minimum=0)
    c: float = option(1.0, "inverse L2 strength of the logistic scorers", minimum=1e-6)
    duplicate_sim: float = option(0.99, "a reference at least this similar is the same photo, and its cluster is "
                                        "chosen whatever the scorers say", minimum=0, maximum=1)
    seed: int = option(0, "seed of the owner split")
