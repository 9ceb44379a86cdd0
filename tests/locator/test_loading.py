import numpy as np
import pytest
import torch
from PIL import Image

from locator.backbone import Preprocessing
from locator.loading import STREAM_ITEMS, decode_threads, default_workers, load_stream


@pytest.fixture()
def photos(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for k, (w, h) in enumerate([(60, 40), (40, 60), (50, 50), (60, 40), (30, 90)]):
        path = tmp_path / f"p{k}.jpg"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths[:2] + [str(tmp_path / "missing.jpg")] + paths[2:]


@pytest.mark.parametrize("workers", [0, 1])
def test_every_photo_once_in_order_with_errors_in_place(photos, workers):
    preprocessing = Preprocessing(size=64)
    out = list(load_stream(photos, preprocessing, torch.device("cpu"), workers=workers))
    assert [position for position, _ in out] == list(range(len(photos)))
    assert isinstance(out[2][1], str) and "missing.jpg" in out[2][1]
    for position, item in out:
        if position != 2:
            expected = preprocessing.to_tensor(Image.open(photos[position]).convert("RGB"))
            assert torch.equal(item, expected)


def test_worker_processes_only_for_long_streams_beside_a_gpu():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert default_workers(cpu, 10 * STREAM_ITEMS) == 0
    assert default_workers(cuda, STREAM_ITEMS - 1) == 0  # a request's photos: no process start-up
    assert 1 <= default_workers(cuda, STREAM_ITEMS) <= 8
    assert decode_threads(cpu) == 2
    assert 2 <= decode_threads(cuda) <= 8
