import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from locator.backbone import BackboneError, Preprocessing, create_backbone, extract_features


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
