import numpy as np
import pytest
import torch

from training.batches import TrainingRows, batches, holdout


def _rows(n=1000, block_rows=128):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(n, 4)).astype(np.float16)
    data = TrainingRows.from_arrays(features, rng.uniform(-60, 60, n), rng.uniform(-170, 170, n),
                                    rng.integers(0, 50, n))
    data.block_rows = block_rows
    return data, features


def test_an_epoch_visits_every_row_once_with_its_own_features():
    data, features = _rows()
    chosen = np.sort(np.random.default_rng(1).choice(1000, 700, replace=False))
    seen = []
    for rows, x in batches(data, chosen, 64, np.random.default_rng(2)):
        rows = rows.numpy()
        assert np.array_equal(x.numpy(), features[rows])
        seen.append(rows)
    sizes = [len(r) for r in seen]
    assert sorted(np.concatenate(seen).tolist()) == chosen.tolist()
    assert all(s == 64 for s in sizes[:-1]) and 0 < sizes[-1] <= 64


def test_order_depends_on_the_seed_only():
    data, _ = _rows()
    first = [r.tolist() for r, _ in batches(data, np.arange(1000), 50, np.random.default_rng(3))]
    again = [r.tolist() for r, _ in batches(data, np.arange(1000), 50, np.random.default_rng(3))]
    other = [r.tolist() for r, _ in batches(data, np.arange(1000), 50, np.random.default_rng(4))]
    assert first == again and first != other


def test_holdout_keeps_owners_whole_and_caps_the_validation_rows():
    data, _ = _rows()
    train, validation = holdout(data, np.arange(1000), 0.2, 10_000, seed=0)
    assert not set(data.groups[train].tolist()) & set(data.groups[validation].tolist())
    assert 0.1 < len(validation) / 1000 < 0.3 and len(train) + len(validation) == 1000
    _, capped = holdout(data, np.arange(1000), 0.2, 50, seed=0)
    assert len(capped) == 50 and set(capped.tolist()) <= set(validation.tolist())


def test_batches_larger_than_a_block_gather_rows_across_blocks():
    data, features = _rows(n=1000, block_rows=128)
    seen = []
    for rows, x in batches(data, np.arange(1000), 300, np.random.default_rng(5)):
        assert np.array_equal(x.numpy(), features[rows.numpy()])
        seen.append(rows.numpy())
    assert [len(r) for r in seen] == [300, 300, 300, 100]
    assert sorted(np.concatenate(seen).tolist()) == list(range(1000))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_on_cuda_equal_those_on_the_cpu():
    data, _ = _rows(n=1000, block_rows=128)
    on_cpu = list(batches(data, np.arange(0, 1000, 3), 50, np.random.default_rng(6)))
    on_gpu = list(batches(data, np.arange(0, 1000, 3), 50, np.random.default_rng(6), "cuda"))
    assert len(on_cpu) == len(on_gpu)
    for (rows, x), (rows_gpu, x_gpu) in zip(on_cpu, on_gpu):
        assert rows_gpu.device.type == "cuda"
        assert torch.equal(rows, rows_gpu.cpu()) and torch.equal(x, x_gpu.cpu())
