"""How sure a difference in accuracy is (beyond the paper): a paired bootstrap, resampling owners.

A method is compared with the best of its rivals at each threshold: the statistic is its accuracy minus the
highest of the rivals' accuracies, on the same photos. Photos of one owner are alike (the same trip, the same
camera), so whole owners are resampled with replacement, each bringing all of its photos; with one photo per owner
this is the ordinary paired bootstrap. The interval is the percentile interval of the resampled statistic. A
failed photo (NaN error) is a miss for every method, as in the accuracy tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike

from locator.metrics import THRESHOLDS_KM

RESAMPLES = 10_000
LEVEL = 0.95


@dataclass(frozen=True)
class Difference:
    """Accuracy of the method minus the best rival's at one threshold (fractions), with its bootstrap interval."""

    threshold_km: float
    observed: float
    low: float
    high: float
    best_rival: str

    def to_json(self) -> dict:
        return asdict(self)


def paired_bootstrap(errors_km: dict[str, ArrayLike], method: str, rivals: Sequence[str],
                     groups: ArrayLike | None = None, thresholds: Sequence[float] = THRESHOLDS_KM,
                     resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0) -> list[Difference]:
    """`method` against the best of `rivals` at each threshold; `errors_km` holds each method's per-photo errors
    (the same photos in the same order), `groups` each photo's owner (None: every photo its own)."""
    names = [method, *rivals]
    errors = np.stack([np.asarray(errors_km[name], float) for name in names])
    if errors.ndim != 2 or errors.shape[1] == 0:
        raise ValueError("errors_km needs one non-empty row of errors per method, all of the same length")
    n = errors.shape[1]
    _, group_of = np.unique(np.arange(n) if groups is None else np.asarray(groups), return_inverse=True)
    group_of = group_of.reshape(-1)
    if len(group_of) != n:
        raise ValueError(f"groups has {len(group_of)} entries for {n} photos")
    hits = np.stack([errors < t for t in thresholds], axis=-1).astype(float)  # (methods, photos, thresholds)
    per_group = np.stack([np.bincount(group_of, weights=hits[m, :, j])
                          for m in range(len(names)) for j in range(len(thresholds))], axis=1)
    per_group = per_group.reshape(-1, len(names), len(thresholds))  # (groups, methods, thresholds)
    sizes = np.bincount(group_of).astype(float)
    observed = _statistic(per_group.sum(axis=0)[None] / n)[0]
    samples = _resampled(per_group, sizes, resamples, seed)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(samples, [tail, 1.0 - tail], axis=0)
    accuracy = per_group.sum(axis=0) / n
    best = [rivals[int(np.argmax(accuracy[1:, j]))] for j in range(len(thresholds))]
    return [Difference(float(t), float(observed[j]), float(low[j]), float(high[j]), best[j])
            for j, t in enumerate(thresholds)]


def _statistic(accuracy: np.ndarray) -> np.ndarray:
    """(resamples, methods, thresholds) accuracies -> (resamples, thresholds): the first minus the best other."""
    return accuracy[:, 0, :] - accuracy[:, 1:, :].max(axis=1)


def _resampled(per_group: np.ndarray, sizes: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """The statistic over `resamples` draws of as many groups as there are, with replacement (each draw as the
    number of times it takes each group)."""
    rng = np.random.default_rng(seed)
    count = len(sizes)
    flat = per_group.reshape(count, -1)
    chunk = max(1, min(1000, 2_000_000 // count))
    out = []
    for start in range(0, resamples, chunk):
        weights = rng.multinomial(count, np.full(count, 1.0 / count), size=min(chunk, resamples - start))
        weights = weights.astype(float)
        accuracy = (weights @ flat).reshape(len(weights), *per_group.shape[1:]) / (weights @ sizes)[:, None, None]
        out.append(_statistic(accuracy))
    return np.concatenate(out)


def difference_markdown(differences: list[Difference], method: str, level: float = LEVEL) -> str:
    """One line per threshold: the difference in points and its interval."""
    head = ["threshold", "best rival", f"{method} − best rival (pt)", f"{100 * level:g} % interval (pt)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for d in differences:
        lines.append(f"| {d.threshold_km:g} km | {d.best_rival} | {100 * d.observed:+.2f} | "
                     f"{100 * d.low:+.2f} to {100 * d.high:+.2f} |")
    return "\n".join(lines) + "\n"
