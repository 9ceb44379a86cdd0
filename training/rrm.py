"""Training the Residual Retrieval Module on cached features: infoNCE with a memory bank, or the triplet baseline.

The schedule is counted in optimisation steps (each a batch of positive pairs from distinct cells), so that it
means the same on 100 cells and on 12,893: by default 20 pairs per usable cell, at least 200 steps and at most
20,000. Rows are gathered from the cache per step (memory does not grow with the rows) and cast on the device.
Every `eval_every` steps, same-cell precision@10 of owners held out, searched among the training photos, is
measured; the best step is kept and training stops after `patience` evaluations without improvement. The same
precision is measured for the raw backbone features, and the result says which space retrieval should use:
`auto` takes the RRM only if it beats raw features (beyond the paper; recorded in the bundle, and `rrm` or `raw`
overrides it).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from locator.rrm import ResidualRetrievalModule
from training.batches import TrainingRows, holdout
from training.heads import resolve_device, to_device
from training.losses import LOSSES
from training.pair_sampler import CellPairSampler
from training.schedule import adamw_cosine
from training.settings import RRMSettings

MAX_REFERENCES = 20_000  # training photos searched by the validation queries


@dataclass
class RRMLog:
    losses: list[float] = field(default_factory=list)  # mean loss per evaluation interval
    evaluations: list[dict] = field(default_factory=list)  # step, precision_at_10
    best_step: int = 0
    steps: int = 0
    raw_precision_at_10: float = float("nan")
    rrm_precision_at_10: float = float("nan")
    validation_queries: int = 0
    references: int = 0
    space: str = "rrm"
    decision: str = ""
    pairs_per_second: float = 0.0

    def to_json(self) -> dict:
        return {"steps": self.steps, "best_step": self.best_step, "validation_queries": self.validation_queries,
                "references": self.references, "precision_at_10": {"rrm": self.rrm_precision_at_10,
                                                                     "raw": self.raw_precision_at_10},
                "space": self.space, "decision": self.decision, "pairs_per_second": self.pairs_per_second}

    def csv(self) -> str:
        rows = [f"{e['step']},{loss:.6f},{e['precision_at_10']:.6f}" for e, loss in zip(self.evaluations, self.losses)]
        return "step,loss,val_precision_at_10\n" + "".join(r + "\n" for r in rows)


def default_steps(cells: int, batch_pairs: int) -> int:
    return int(np.clip(20 * cells // batch_pairs, 200, 20_000))


@torch.inference_mode()
def embed_rows(rrm: ResidualRetrievalModule | None, x: np.ndarray, device: torch.device) -> torch.Tensor:
    out = []
    for s in range(0, len(x), 4096):
        xb = to_device(x[s:s + 4096], device)
        out.append(F.normalize(xb, dim=1) if rrm is None else rrm(xb).float())
    return torch.cat(out) if out else torch.zeros(0, x.shape[1] if x.ndim == 2 else 0)


@torch.inference_mode()
def precision_at_10(rrm: ResidualRetrievalModule | None, queries: np.ndarray, query_cells: np.ndarray,
                    references: np.ndarray, reference_cells: np.ndarray, device: torch.device) -> float:
    """Mean share of each query's 10 most similar references that lie in its own cell."""
    if rrm is not None:
        rrm.eval()
    q, r = embed_rows(rrm, queries, device), embed_rows(rrm, references, device)
    k = min(10, len(r))
    top = (q @ r.T).topk(k, dim=1).indices.cpu().numpy()
    return float(np.mean(reference_cells[top] == query_cells[:, None]))


def _validation(data: TrainingRows, cells: np.ndarray, settings: RRMSettings):
    usable = data.usable[cells[data.usable] >= 0]
    train, val = holdout(data, usable, settings.validation, settings.max_validation, settings.seed)
    rng = np.random.default_rng(settings.seed)
    refs = np.sort(rng.choice(train, min(len(train), MAX_REFERENCES), replace=False)) if len(train) else train
    return train, val, refs


def train_rrm(data: TrainingRows, cells: np.ndarray, settings: RRMSettings = RRMSettings(),
              device: str | torch.device | None = None, progress: bool = True,
              stop_at: int | None = None) -> tuple[ResidualRetrievalModule, RRMLog]:
    """Train an RRM so that photos of the same cell embed close together; returns the best one and the log.
    `stop_at` ends the run at that step of its schedule (the fused model's folds stop at the bundle's best step)."""
    device = resolve_device(device)
    torch.manual_seed(settings.seed)
    cells = np.asarray(cells, dtype=np.int64)
    train, val, refs = _validation(data, cells, settings)
    sampler = CellPairSampler(cells[train], seed=settings.seed)
    steps = settings.steps or default_steps(sampler.num_cells, settings.batch_pairs)
    rrm = ResidualRetrievalModule(data.dim, settings.hidden_dim, settings.residual).to(device)
    criterion = LOSSES.create(settings.loss, data.dim, settings)
    optimiser, scheduler = adamw_cosine(rrm.parameters(), settings.lr, settings.weight_decay, steps)
    labels = torch.from_numpy(cells)
    val_x, ref_x = data.gather(val), data.gather(refs)
    log = RRMLog(steps=steps, validation_queries=len(val), references=len(refs))

    def evaluate(model: ResidualRetrievalModule | None) -> float:
        return precision_at_10(model, val_x, cells[val], ref_x, cells[refs], device) if len(val) else float("nan")

    log.raw_precision_at_10 = evaluate(None)
    best, best_state, waited, interval, start = -1.0, copy.deepcopy(rrm.state_dict()), 0, [], time.perf_counter()
    last = min(steps, stop_at or steps)
    for step in tqdm(range(1, last + 1), desc=f"rrm {settings.loss}", unit="step", disable=not progress):
        rrm.train()
        pairs = train[sampler.draw(settings.batch_pairs)]
        b = len(pairs)
        rows = np.concatenate([pairs[:, 0], pairs[:, 1]])
        partner = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            embeddings = rrm(to_device(data.gather(rows), device))
        loss = criterion(embeddings.float(), labels[rows].to(device), partner)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        scheduler.step()
        interval.append(loss.item())
        if step % settings.eval_every and step != last:
            continue
        score = evaluate(rrm)
        log.losses.append(float(np.mean(interval)))
        log.evaluations.append({"step": step, "precision_at_10": score})
        interval = []
        if not len(val) or score > best:
            best, best_state, waited, log.best_step = score, copy.deepcopy(rrm.state_dict()), 0, step
        else:
            waited += 1
            if waited >= settings.patience:
                break
    done = log.evaluations[-1]["step"] if log.evaluations else 0
    log.pairs_per_second = settings.batch_pairs * done / max(time.perf_counter() - start, 1e-9)
    rrm.load_state_dict(best_state)
    log.rrm_precision_at_10 = best if len(val) else float("nan")
    log.space, log.decision = choose_space(settings.space, log.rrm_precision_at_10, log.raw_precision_at_10)
    return rrm.cpu().eval(), log


def choose_space(requested: str, rrm: float, raw: float) -> tuple[str, str]:
    """Which embeddings the collection should hold, and why (a recorded decision, never a silent one)."""
    measured = f"same-cell precision@10 on held-out owners: RRM {100 * rrm:.1f}%, raw features {100 * raw:.1f}%"
    if requested != "auto":
        return requested, f"{requested} chosen by the user ({measured})"
    if np.isnan(rrm) or np.isnan(raw):
        return "rrm", "rrm: no held-out owners to compare with (the paper's choice)"
    if rrm > raw:
        return "rrm", f"rrm: it beats raw features ({measured})"
    return "raw", f"raw features: the RRM does not beat them ({measured}); `--space rrm` overrides"
