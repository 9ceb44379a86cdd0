import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from locator import backbone as backbone_module
from locator.backbone import (BackboneError, Preprocessing, autocast_dtype, create_backbone, extract_features,
                              forward_batch, padded_size, prepare, warm_batch_sizes, warm_up)


@pytest.fixture(scope="module")
def lite0():
    return create_backbone("tf_efficientnet_lite0", size=96)


def test_lite_weights_classify_a_real_photo():
    skimage_data = pytest.importorskip("skimage.data")
    backbone = create_backbone("tf_efficientnet_lite0", size=224, square=True)
    x = backbone.preprocessing.to_tensor(Image.fromarray(skimage_data.coffee()))[None]
    with torch.no_grad():
        probabilities = backbone.imagenet_logits(x).softmax(-1)[0]
    assert probabilities.argmax().item() == 967  # ImageNet "espresso"
    assert probabilities[967] > 0.5


def test_preprocessing_keeps_aspect_or_squares():
    image = Image.new("RGB", (400, 100))
    assert Preprocessing(size=300, bucket=0).to_tensor(image).shape == (3, 75, 300)
    assert Preprocessing(size=300).to_tensor(image).shape == (3, 64, 300)  # 75 px rounded to a multiple of 32
    assert Preprocessing(size=300).to_tensor(Image.new("RGB", (100, 400))).shape == (3, 300, 64)
    assert Preprocessing(size=300).to_tensor(Image.new("RGB", (400, 10))).shape == (3, 32, 300)  # never below one bucket
    assert Preprocessing(size=300, square=True).to_tensor(image).shape == (3, 300, 300)
    tensor = Preprocessing(size=10).to_tensor(Image.new("RGB", (10, 10), (255, 0, 127)))
    assert torch.allclose(tensor[:, 0, 0], torch.tensor([1.0, -1.0, 127 / 255 * 2 - 1]), atol=1e-6)


def test_batched_features_equal_one_at_a_time(lite0):
    rng = np.random.default_rng(0)
    sizes = [(120, 90), (90, 120), (120, 90), (100, 100), (120, 90), (90, 120), (100, 100)]
    tensors = [lite0.preprocessing.to_tensor(Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)))
               for w, h in sizes]
    batched = extract_features(lite0, tensors, batch_size=3, device="cpu")
    single = np.concatenate([extract_features(lite0, [t], batch_size=1, device="cpu") for t in tensors])
    assert batched.shape == (7, 1280)
    assert np.max(np.abs(batched - single)) <= 1e-4


def test_padded_batches_give_the_same_features(lite0):
    assert [padded_size(n) for n in (1, 2, 3, 4, 5, 64, 65, 128)] == [1, 2, 4, 4, 8, 64, 128, 128]
    assert all(padded_size(n) >= n > padded_size(n) // 2 for n in range(2, 300))  # the next power of two
    rng = np.random.default_rng(1)
    batch = torch.stack([lite0.preprocessing.to_tensor(Image.fromarray(rng.integers(0, 255, (90, 120, 3), np.uint8)))
                         for _ in range(5)])
    model, cpu = prepare(lite0, torch.device("cpu")), torch.device("cpu")
    padded = forward_batch(model, batch, cpu, torch.float32, pad=True)
    assert padded.shape == (5, 1280)
    assert np.max(np.abs(padded - forward_batch(model, batch, cpu, torch.float32, pad=False))) <= 1e-4


def test_cpu_precision_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(backbone_module, "cpu_has_native_bfloat16", lambda: True)
    assert autocast_dtype(torch.device("cpu")) == torch.bfloat16
    monkeypatch.setattr(backbone_module, "cpu_has_native_bfloat16", lambda: False)
    assert autocast_dtype(torch.device("cpu")) is None
    assert autocast_dtype(torch.device("cuda")) == torch.float16


def test_bfloat16_features_stay_close_to_float32(lite0):
    rng = np.random.default_rng(1)
    batch = torch.stack([lite0.preprocessing.to_tensor(Image.fromarray(rng.integers(0, 255, (90, 120, 3), np.uint8)))
                         for _ in range(4)])
    model = prepare(lite0, torch.device("cpu"))
    full = forward_batch(model, batch, torch.device("cpu"), torch.float32)
    half = forward_batch(model, batch, torch.device("cpu"), torch.bfloat16)
    assert not np.array_equal(full, half)  # autocast really ran in bfloat16
    cosine = (full * half).sum(1) / np.linalg.norm(full, axis=1) / np.linalg.norm(half, axis=1)
    assert cosine.min() > 0.99


def test_checkpoint_round_trip_and_errors(tmp_path, lite0):
    path = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in lite0.feature_state_dict().items()}, str(path))
    again = create_backbone("tf_efficientnet_lite0", weights=path, size=96)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(again(x), lite0(x), atol=1e-4)
    torch.save({"state_dict": {"module." + k: v for k, v in lite0.feature_state_dict().items()}}, tmp_path / "c.pth")
    assert create_backbone("tf_efficientnet_lite0", weights=tmp_path / "c.pth").feature_dim == 1280
    with pytest.raises(BackboneError, match="no offline ImageNet weights; pass a checkpoint path"):
        create_backbone("tf_efficientnet_b4")
    with pytest.raises(BackboneError, match="unknown architecture 'efficientnet_b99'"):
        create_backbone("efficientnet_b99")
    with pytest.raises(BackboneError, match="missing.pth: checkpoint file not found"):
        create_backbone("tf_efficientnet_b4", weights=tmp_path / "missing.pth")
    with pytest.raises(BackboneError, match="do not fit"):
        create_backbone("tf_efficientnet_b4", weights=path)
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(BackboneError, match="junk.pth: cannot read checkpoint"):
        create_backbone("tf_efficientnet_lite0", weights=tmp_path / "junk.pth")


def test_b4_architecture_by_name_with_random_weights():
    backbone = create_backbone("tf_efficientnet_b4", weights=None)
    assert backbone.feature_dim == 1792


def test_random_initialisation_is_seeded_and_leaves_the_callers_random_state_alone():
    def weights(seed):
        return create_backbone("test_efficientnet", weights=None, size=64, seed=seed).model.state_dict()

    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    a, b, c = weights(0), weights(0), weights(1)
    assert torch.equal(torch.rand(3), expected_draw)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_prepare_keeps_one_inference_copy_until_the_weights_change(lite0):
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in prepare(lite0, torch.device("cpu"), fold=False).modules())
    cpu = torch.device("cpu")
    before = {k: v.clone() for k, v in lite0.state_dict().items()}
    modes = [m.training for m in lite0.modules()]
    prepared = prepare(lite0, cpu, fold=True)
    assert prepared is not lite0 and prepare(lite0, cpu, fold=True) is prepared
    # The backbone itself is left as it was: weights, norms and modes (a bundle saves these weights).
    assert all(torch.equal(before[k], v) for k, v in lite0.state_dict().items())
    assert [m.training for m in lite0.modules()] == modes
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(prepared(x), lite0.eval()(x), rtol=1e-4, atol=1e-4)
        lite0.model.conv_head.weight.mul_(2.0)  # as an optimiser step would
        try:
            again = prepare(lite0, cpu, fold=True)
            assert again is not prepared and torch.allclose(again(x), lite0(x), rtol=1e-4, atol=1e-4)
        finally:
            lite0.model.conv_head.weight.div_(2.0)


def test_normalise_equals_torchvision_bit_for_bit():
    functional = pytest.importorskip("torchvision.transforms.functional")
    preprocessing = Preprocessing(size=96)
    pixels = np.random.default_rng(3).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    expected = functional.normalize(functional.to_tensor(pixels), preprocessing.mean, preprocessing.std)
    assert torch.equal(preprocessing.normalise(pixels), expected)  # bit for bit: stored collections were embedded so


def test_bundles_made_before_drafts_decode_in_full():
    old = {"mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bicubic", "size": 300, "square": False}
    assert Preprocessing.from_json(old).bucket == 0 and Preprocessing.from_json(old).draft_to is None
    new = Preprocessing(size=300)
    assert Preprocessing.from_json(new.to_json()) == new and new.draft_to(4000, 3000) == (300, 224)


def test_describe_device_names_the_cpu_its_cores_and_bfloat16(monkeypatch):
    monkeypatch.setattr(backbone_module.os, "cpu_count", lambda: 7)
    monkeypatch.setattr(backbone_module, "cpu_model", lambda: "Some CPU")
    for native, said in ((True, "native bfloat16"), (False, "no native bfloat16")):
        monkeypatch.setattr(backbone_module, "cpu_has_native_bfloat16", lambda: native)
        assert backbone_module.describe_device(torch.device("cpu")) == f"CPU (Some CPU, 7 cores, {said})"
    assert backbone_module.cpu_model()  # this machine's, from /proc/cpuinfo or platform


def test_a_float16_copy_computes_without_autocast_and_close_to_float32(lite0):
    cpu = torch.device("cpu")
    half = prepare(lite0, cpu, half=True)
    assert all(p.dtype == torch.float16 for p in half.parameters())
    assert prepare(lite0, cpu, half=True) is half  # kept
    assert all(p.dtype == torch.float32 for p in prepare(lite0, cpu).parameters())  # not the float16 one
    half = prepare(lite0, cpu, half=True)
    assert all(p.dtype == torch.float32 for p in lite0.parameters())  # the backbone itself is left as it is
    x = torch.randn(3, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    full = forward_batch(prepare(lite0, cpu), x, cpu, torch.float32)
    got = forward_batch(half, x, cpu, torch.float32)  # the copy's float16, whatever dtype asks for autocast
    assert got.dtype == np.float32
    cosine = (got * full).sum(axis=1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(full, axis=1))
    assert cosine.min() > 0.999 and not np.array_equal(got, full)


def test_warm_up_computes_every_shape_at_every_size(lite0):
    model = prepare(lite0, torch.device("cpu"))
    seen = []
    hook = model.register_forward_pre_hook(lambda _, inputs: seen.append(tuple(inputs[0].shape)))
    try:
        warm_up(lite0, [(32, 96), (96, 64)], [1, 4], "cpu")
    finally:
        hook.remove()
    assert sorted(seen) == sorted((n, 3, h, w) for (h, w) in [(32, 96), (96, 64)] for n in (1, 4))


def test_warm_batch_sizes_are_the_sizes_a_gpu_computes_batches_in():
    cuda = torch.device("cuda")
    for largest in (1, 2, 5, 32, 33, 128):
        computed = {2 ** int(np.ceil(np.log2(n))) for n in range(1, largest + 1)}  # padded to powers of two
        assert warm_batch_sizes(cuda, largest) == sorted(computed)
    assert warm_batch_sizes(torch.device("cpu"), 32) == [1]

