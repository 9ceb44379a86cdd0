"""Shape buckets: few shapes, every photo once and in order, and features equal to those of photos one by one."""

import numpy as np
import pytest
import torch
from PIL import Image

from locator.backbone import Preprocessing, create_backbone, extract_features, stream_features
from locator.bucketing import bucketed


def test_every_photo_comes_out_exactly_once_in_full_batches_until_the_end():
    rng = np.random.default_rng(0)
    shapes = [(3, 32 * rng.integers(1, 4), 64) for _ in range(200)]
    stream = [(k, torch.zeros(s)) for k, s in enumerate(shapes)]
    batches = list(bucketed(stream, 8))
    seen = [i for indices, _ in batches for i in indices]
    assert sorted(seen) == list(range(200))
    for indices, batch in batches:
        assert batch.shape[0] == len(indices) and len({shapes[i] for i in indices}) == 1
    full = [b for b in batches if len(b[0]) == 8]
    assert len(batches) - len(full) <= 3  # one partial batch per shape, flushed when the stream ends


def test_a_photo_waits_for_its_bucket_across_the_stream():
    stream = [(0, torch.zeros(3, 32, 8)), (1, torch.zeros(3, 64, 8)), (2, torch.zeros(3, 32, 8))]
    assert [indices for indices, _ in bucketed(stream, 2)] == [[0, 2], [1]]


def test_shapes_stay_bounded_for_any_aspect():
    rng = np.random.default_rng(1)
    preprocessing = Preprocessing(size=300)
    shapes = {preprocessing.target_size(int(w), int(h)) for w, h in rng.integers(20, 4000, size=(5000, 2))}
    assert len(shapes) <= 2 * (300 // 32 + 1)
    for w, h in rng.integers(200, 4000, size=(500, 2)):
        tw, th = preprocessing.target_size(int(w), int(h))
        short = min(w, h) * 300 / max(w, h)
        assert abs(min(tw, th) - short) <= 16.0 + 0.5 and max(tw, th) == 300


@pytest.fixture(scope="module")
def lite0():
    return create_backbone("tf_efficientnet_lite0", size=96)


def test_stream_features_equal_photo_by_photo_features_in_order(lite0):
    rng = np.random.default_rng(2)
    images = [Image.fromarray(rng.integers(0, 255, (int(h), int(w), 3), dtype=np.uint8))
              for w, h in rng.integers(40, 200, size=(13, 2))]
    tensors = [lite0.preprocessing.to_tensor(im) for im in images]
    assert len({tuple(t.shape) for t in tensors}) > 1
    together = extract_features(lite0, tensors, batch_size=4, device="cpu")
    alone = np.concatenate([extract_features(lite0, [t], batch_size=1, device="cpu") for t in tensors])
    assert np.allclose(together, alone, atol=1e-4)
    order = [i for indices, _ in stream_features(lite0, enumerate(tensors), 4, "cpu") for i in indices]
    assert sorted(order) == list(range(13))
