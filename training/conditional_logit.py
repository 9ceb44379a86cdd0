"""Conditional logit (McFadden's choice model) with several acceptable choices per group.

Each group (one photo) offers its candidates; P(candidate i | group) = softmax over the group of x_i · w. The fit
maximises, over the groups that have both acceptable and unacceptable candidates, log Σ_{i acceptable} P(i | group),
with an L2 penalty ½‖w‖²/c (as scikit-learn's `C`). Only differences between candidates of one group inform w, so
evidence shared by all of a group's candidates cannot bias the choice between them.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize


def _informative(positive: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Rows of the groups that hold both an acceptable and an unacceptable candidate."""
    _, index = np.unique(group, return_inverse=True)
    accepted = np.bincount(index, weights=positive.astype(float))
    total = np.bincount(index)
    return ((accepted > 0) & (accepted < total))[index]


def informative_groups(positive: np.ndarray, group: np.ndarray) -> int:
    return len(np.unique(np.asarray(group)[_informative(np.asarray(positive, bool), np.asarray(group))]))


def negative_log_likelihood(w: np.ndarray, x: np.ndarray, positive: np.ndarray, index: np.ndarray,
                            groups: int) -> tuple[float, np.ndarray]:
    """-Σ_g log Σ_{i ∈ g acceptable} softmax_g(x w)_i and its gradient (`index`: group of each row, 0..groups-1)."""
    s = x @ w
    top = np.full(groups, -np.inf)
    np.maximum.at(top, index, s)
    e = np.exp(s - top[index])
    everything = np.bincount(index, e, groups)
    accepted = np.bincount(index, e * positive, groups)
    loss = -(np.log(accepted) - np.log(everything)).sum()
    gradient = -x.T @ (e * positive / accepted[index] - e / everything[index])
    return float(loss), gradient


def fit_conditional_logit(x: np.ndarray, positive: np.ndarray, group: np.ndarray, c: float = 1.0) -> np.ndarray:
    """Coefficients w (no intercept: it cancels within a group)."""
    positive, group = np.asarray(positive, bool), np.asarray(group)
    keep = _informative(positive, group)
    x, positive = np.asarray(x, float)[keep], positive[keep].astype(float)
    _, index = np.unique(group[keep], return_inverse=True)
    groups = int(index.max()) + 1 if len(index) else 0
    if not groups:
        return np.zeros(x.shape[1])

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        loss, gradient = negative_log_likelihood(w, x, positive, index, groups)
        return loss + 0.5 * w @ w / c, gradient + w / c

    return minimize(objective, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B").x
