import numpy as np
import pytest
from scipy.stats import bootstrap

from locator.significance import paired_bootstrap

THRESHOLDS = (25.0, 750.0)


def _errors(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"fused": rng.exponential(1500.0, n), "swc": rng.exponential(2000.0, n),
            "retrieval": rng.exponential(2500.0, n)}


def _scipy_interval(errors: dict[str, np.ndarray], threshold: float) -> tuple[float, float]:
    """scipy's paired percentile bootstrap of accuracy(fused) - max(accuracy(swc), accuracy(retrieval))."""
    hits = [(errors[m] < threshold).astype(float) for m in ("fused", "swc", "retrieval")]

    def statistic(f, s, r, axis):
        return f.mean(axis=axis) - np.maximum(s.mean(axis=axis), r.mean(axis=axis))
    result = bootstrap(hits, statistic, paired=True, vectorized=True, n_resamples=20_000, method="percentile",
                       confidence_level=0.95, random_state=np.random.default_rng(7))
    return result.confidence_interval.low, result.confidence_interval.high


def test_one_photo_per_owner_matches_scipys_paired_bootstrap():
    errors = _errors(400)
    for difference in paired_bootstrap(errors, "fused", ["swc", "retrieval"], thresholds=THRESHOLDS,
                                       resamples=20_000):
        low, high = _scipy_interval(errors, difference.threshold_km)
        hits = {m: np.mean(e < difference.threshold_km) for m, e in errors.items()}
        assert difference.observed == pytest.approx(hits["fused"] - max(hits["swc"], hits["retrieval"]))
        # Monte Carlo error of two independent bootstraps: within two photos of 400.
        assert difference.low == pytest.approx(low, abs=2 / 400)
        assert difference.high == pytest.approx(high, abs=2 / 400)
        assert difference.low < difference.observed < difference.high


def test_owners_are_resampled_whole():
    base = _errors(200, seed=3)
    repeated = {m: np.repeat(e, 4) for m, e in base.items()}  # each owner's four photos fare alike
    owners = np.repeat(np.arange(200), 4)
    clustered = paired_bootstrap(repeated, "fused", ["swc", "retrieval"], owners, THRESHOLDS)
    reference = paired_bootstrap(base, "fused", ["swc", "retrieval"], None, THRESHOLDS, seed=1)
    naive = paired_bootstrap(repeated, "fused", ["swc", "retrieval"], None, THRESHOLDS)
    for c, r, n in zip(clustered, reference, naive):
        assert c.observed == pytest.approx(r.observed)
        assert c.high - c.low == pytest.approx(r.high - r.low, abs=2 / 200)
        assert n.high - n.low < 0.7 * (c.high - c.low)  # ignoring the owners would claim twice the certainty


def test_a_method_equal_to_a_rival_is_never_ahead_of_it():
    errors = _errors(100)
    same = {"fused": errors["swc"], "swc": errors["swc"], "retrieval": errors["retrieval"]}
    for d in paired_bootstrap(same, "fused", ["swc", "retrieval"], thresholds=THRESHOLDS):
        assert d.observed <= 0.0 and d.high <= 0.0  # never better than a rival it equals


def test_a_clearly_better_method_has_an_interval_above_zero_and_failures_are_misses():
    errors = _errors(300)
    better = dict(errors, fused=errors["swc"] / 10.0)
    better["fused"][:5] = np.nan  # failed photos
    (d,) = paired_bootstrap(better, "fused", ["swc", "retrieval"], thresholds=(750.0,))
    expected = np.mean(np.nan_to_num(better["fused"], nan=np.inf) < 750.0) - max(
        np.mean(errors["swc"] < 750.0), np.mean(errors["retrieval"] < 750.0))
    assert d.observed == pytest.approx(expected)
    assert d.low > 0.0 and d.best_rival == "swc"


def test_mismatched_groups_are_refused():
    with pytest.raises(ValueError, match="groups"):
        paired_bootstrap(_errors(10), "fused", ["swc"], groups=np.arange(9))
