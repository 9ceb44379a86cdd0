"""Fitting the fused method: only training rows are ever read, and its confidence keeps its promises."""

import numpy as np
import pytest

from locator.bundle import Bundle
from locator.fusion import CONFIDENCE_KM, FEATURES
from tests.locator.located_world import build
from training.batches import TrainingRows
from training.fusion import fit_fusion, owner_folds
from training.settings import FusionSettings


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build(tmp_path_factory.mktemp("fit"))


def _rows_with_evaluation_photos(world, poison: float, shift: float) -> TrainingRows:
    """The world's training photos, followed by 'evaluation' photos that are not usable for training."""
    lat = np.array([r.lat for r in world["background"]])
    lon = np.array([r.lon for r in world["background"]])
    groups = [r.group for r in world["background"]]
    n = len(lat)
    features = np.concatenate([world["features"], np.full((10, world["features"].shape[1]), poison, np.float32)])
    data = TrainingRows.from_arrays(features, np.concatenate([lat, np.full(10, 10.0 + shift)]),
                                    np.concatenate([lon, np.full(10, 20.0 - shift)]), groups + [f"eval{k}" for k in range(10)])
    data.usable = np.arange(n)
    return data


def test_the_scorer_never_sees_evaluation_photos(world):
    bundle = Bundle.load(world["bundle_dir"])
    settings = FusionSettings(folds=3)
    one, report = fit_fusion(bundle, _rows_with_evaluation_photos(world, np.nan, 0.0), settings, progress=False)
    two, _ = fit_fusion(bundle, _rows_with_evaluation_photos(world, 1e6, 40.0), settings, progress=False)
    assert one.to_json()["scorers"] == two.to_json()["scorers"]
    assert one.to_json()["rankers"] == two.to_json()["rankers"] and one.rankers
    assert report["held_out_photos"] == len(world["background"])
    assert list(report["accuracy_on_held_out"]["swc"]) == ["0.1 km", "1 km", "5 km", "10 km", "25 km", "200 km",
                                                           "750 km", "2500 km"]  # the evaluation's thresholds
    assert all(np.isfinite(s.coef).all() for s in one.scorers.values())


def test_folds_hold_out_whole_owners_and_balance_their_sizes():
    groups = np.repeat(np.arange(40), np.arange(40) % 5 + 1)
    folds = owner_folds(groups, 4, seed=1)
    for owner in range(40):
        assert len(set(folds[groups == owner].tolist())) == 1
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 5


def test_confidence_is_a_probability_and_monotone_in_its_evidence(world):
    model = Bundle.load(world["bundle_dir"]).fusion
    scorer = model.scorers[CONFIDENCE_KM]
    rng = np.random.default_rng(0)
    for _ in range(50):
        x = scorer.mean + scorer.scale * rng.normal(size=len(FEATURES))
        base = model.choose(x[None, :], np.zeros(1), np.zeros(1)).confidence
        assert 0.0 <= base <= 1.0
        for f in range(len(FEATURES)):
            stronger = x.copy()
            stronger[f] += np.sign(scorer.coef[f]) * scorer.scale[f]
            assert model.choose(stronger[None, :], np.zeros(1), np.zeros(1)).confidence >= base - 1e-12
