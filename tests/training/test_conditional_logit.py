"""The conditional logit against independent oracles: scikit-learn on paired differences, a per-group loop, and
the process that generated the data."""

import numpy as np
import pytest
from scipy.optimize import approx_fprime
from scipy.special import logsumexp
from sklearn.linear_model import LogisticRegression

from training.conditional_logit import fit_conditional_logit, informative_groups, negative_log_likelihood


def _naive_loss(w, x, positive, group):
    loss = 0.0
    for g in np.unique(group):
        s = x[group == g] @ w
        loss -= logsumexp(s[positive[group == g]]) - logsumexp(s)
    return loss


def test_pairs_equal_logistic_regression_on_differences():
    """With two candidates and one acceptable per group, P(acceptable) = σ((x_a - x_b) · w): scikit-learn's
    logistic regression without intercept on the mirrored differences maximises the same penalised likelihood."""
    rng = np.random.default_rng(0)
    pairs, d = 400, 4
    x = rng.normal(size=(2 * pairs, d))
    group = np.repeat(np.arange(pairs), 2)
    first_wins = rng.random(pairs) < 1 / (1 + np.exp(-(x[0::2] - x[1::2]) @ np.array([1.0, -0.5, 0.0, 2.0])))
    positive = np.zeros(2 * pairs, bool)
    positive[0::2], positive[1::2] = first_wins, ~first_wins
    ours = fit_conditional_logit(x, positive, group, c=1.0)
    diff = np.where(first_wins[:, None], x[0::2] - x[1::2], x[1::2] - x[0::2])
    # Mirrored rows double the log-loss, so scikit-learn's C = 0.5 matches c = 1.
    sk = LogisticRegression(C=0.5, fit_intercept=False, tol=1e-10, max_iter=10_000).fit(
        np.concatenate([diff, -diff]), np.r_[np.ones(pairs), np.zeros(pairs)])
    np.testing.assert_allclose(ours, sk.coef_[0], atol=1e-4)


def test_loss_and_gradient_match_a_loop_over_groups():
    rng = np.random.default_rng(1)
    group = rng.integers(0, 30, 200)
    x = rng.normal(size=(200, 3))
    positive = rng.random(200) < 0.3
    keep = np.isin(group, [g for g in np.unique(group) if 0 < positive[group == g].sum() < (group == g).sum()])
    x, positive, group = x[keep], positive[keep], group[keep]
    _, index = np.unique(group, return_inverse=True)
    w = rng.normal(size=3)
    loss, gradient = negative_log_likelihood(w, x, positive.astype(float), index, int(index.max()) + 1)
    assert loss == pytest.approx(_naive_loss(w, x, positive, group), rel=1e-10)
    numeric = approx_fprime(w, _naive_loss, 1e-6, x, positive, group)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-4, atol=1e-4)


def test_recovers_the_weights_that_generated_the_choices():
    rng = np.random.default_rng(2)
    groups, size, w_true = 3000, 6, np.array([1.5, -1.0, 0.5])
    x = rng.normal(size=(groups * size, 3))
    group = np.repeat(np.arange(groups), size)
    positive = np.zeros(len(x), bool)
    for g in range(groups):
        s = x[g * size:(g + 1) * size] @ w_true
        p = np.exp(s - s.max())
        positive[g * size + rng.choice(size, p=p / p.sum())] = True
    np.testing.assert_allclose(fit_conditional_logit(x, positive, group, c=1e6), w_true, atol=0.12)


def test_groups_without_a_choice_to_make_change_nothing():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 2))
    group = np.repeat(np.arange(20), 3)
    positive = np.tile([True, False, False], 20)
    extra_x = rng.normal(size=(12, 2)) * 50
    extra_group = np.repeat([100, 101, 102, 103], 3)
    extra_positive = np.repeat([True, False, True, False], 3)  # all acceptable, or none
    base = fit_conditional_logit(x, positive, group)
    more = fit_conditional_logit(np.concatenate([x, extra_x]), np.r_[positive, extra_positive],
                                 np.r_[group, extra_group])
    np.testing.assert_allclose(base, more, atol=1e-8)
    assert informative_groups(np.r_[positive, extra_positive], np.r_[group, extra_group]) == 20
