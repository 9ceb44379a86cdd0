"""RRM training: streamed equals in memory, precision@10 against brute force, and the recorded space decision."""

import numpy as np
import pytest
import torch

from training.batches import TrainingRows
from training.features import create_array_cache
from training.rrm import choose_space, default_steps, precision_at_10, train_rrm
from training.settings import RRMSettings


def _world(n=400, dim=24, seed=0):
    rng = np.random.default_rng(seed)
    which = rng.integers(0, 20, n)
    features = (rng.normal(size=(20, dim))[which] + rng.normal(0, 1.0, (n, dim))).astype(np.float16)
    lat, lon = rng.uniform(-50, 50, 20)[which], rng.uniform(-150, 150, 20)[which]
    return features, lat, lon, rng.integers(0, 60, n), which


def test_streamed_rrm_training_equals_in_memory(tmp_path):
    features, lat, lon, groups, cells = _world()
    cache = create_array_cache(tmp_path / "c", [features], len(features), features.shape[1], lat, lon, groups,
                               {"backbone": "t"})
    settings = RRMSettings(hidden_dim=32, steps=30, eval_every=10, batch_pairs=16, memory_size=64)
    _, a = train_rrm(TrainingRows.from_cache(cache), cells, settings, device="cpu", progress=False)
    _, b = train_rrm(TrainingRows.from_arrays(features, lat, lon, groups), cells, settings, device="cpu",
                     progress=False)
    assert np.allclose(a.losses, b.losses, rtol=0, atol=1e-5) and len(a.losses) == 3
    assert [e["precision_at_10"] for e in a.evaluations] == [e["precision_at_10"] for e in b.evaluations]


def test_precision_at_10_matches_brute_force():
    rng = np.random.default_rng(1)
    queries, references = rng.normal(size=(30, 8)).astype(np.float32), rng.normal(size=(200, 8)).astype(np.float32)
    q_cells, r_cells = rng.integers(0, 5, 30), rng.integers(0, 5, 200)
    normed = references / np.linalg.norm(references, axis=1, keepdims=True)
    expected = np.mean([np.mean(r_cells[np.argsort(-(normed @ q))[:10]] == c) for q, c in zip(queries, q_cells)])
    assert precision_at_10(None, queries, q_cells, references, r_cells, torch.device("cpu")) == pytest.approx(expected)


def test_the_space_decision_is_recorded_and_overridable():
    assert choose_space("auto", 0.30, 0.20)[0] == "rrm"
    space, why = choose_space("auto", 0.10, 0.20)
    assert space == "raw" and "does not beat" in why and "--space rrm" in why
    assert choose_space("rrm", 0.10, 0.20) == ("rrm", "rrm chosen by the user (same-cell precision@10 on held-out "
                                                      "owners: RRM 10.0%, raw features 20.0%)")
    assert default_steps(100, 128) == 200 and default_steps(12_893, 128) == 2014 and default_steps(10**7, 128) == 20_000


def test_training_reports_both_spaces_and_keeps_the_best_step():
    features, lat, lon, groups, cells = _world()
    data = TrainingRows.from_arrays(features, lat, lon, groups)
    _, log = train_rrm(data, cells, RRMSettings(hidden_dim=32, steps=60, eval_every=10, batch_pairs=16,
                                                 memory_size=64, patience=10), device="cpu", progress=False)
    scores = [e["precision_at_10"] for e in log.evaluations]
    assert log.rrm_precision_at_10 == max(scores) and log.best_step == log.evaluations[scores.index(max(scores))]["step"]
    assert 0 <= log.raw_precision_at_10 <= 1 and log.space in ("rrm", "raw") and log.decision


def test_stop_at_ends_the_same_schedule_early():
    features, lat, lon, groups, cells = _world()
    data = TrainingRows.from_arrays(features, lat, lon, groups)
    settings = RRMSettings(hidden_dim=32, steps=60, eval_every=20, batch_pairs=16, memory_size=64, patience=10)
    full_rrm, full = train_rrm(data, cells, settings, device="cpu", progress=False)
    short_rrm, short = train_rrm(data, cells, settings, device="cpu", progress=False, stop_at=full.best_step)
    assert short.steps == 60 and short.evaluations[-1]["step"] == full.best_step
    # Same seed and schedule up to the best step: the same model as the full run kept.
    for key, value in full_rrm.state_dict().items():
        assert torch.allclose(value, short_rrm.state_dict()[key], atol=1e-6)
