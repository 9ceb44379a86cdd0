import json

import pytest
import torch

from locator.backbone import create_backbone
from locator.bundle import Bundle, BundleError
from locator.heads import create_head
from locator.rrm import ResidualRetrievalModule
from tests.locator.heads.helpers import nested_partitions


@pytest.fixture
def bundle_dir(tmp_path):
    partitions = nested_partitions()
    backbone = create_backbone("tf_efficientnet_lite0", size=64)
    bundle = Bundle.create(tmp_path / "bundle", backbone, partitions, weights_source="imagenet",
                           training={"dataset": "unit test"})
    torch.manual_seed(0)
    for kind in ("ce", "hc", "mvmf"):
        bundle.set_head(create_head(kind, backbone.feature_dim, partitions))
    bundle.set_rrm(ResidualRetrievalModule(backbone.feature_dim, hidden_dim=32))
    return tmp_path / "bundle"


def test_load_restores_everything(bundle_dir):
    original_config = json.loads((bundle_dir / "config.json").read_text())
    bundle = Bundle.load(bundle_dir)
    assert bundle.fingerprint == original_config["fingerprint"]
    assert [len(p) for p in bundle.partitions] == [len(p) for p in nested_partitions()]
    assert set(bundle.heads) == {"ce", "hc", "mvmf"} and bundle.default_head.kind == "ce"
    assert bundle.backbone.preprocessing.size == 64 and bundle.rrm.hidden_dim == 32
    assert set(original_config["versions"]) >= {"torch", "timm", "geoloc"}
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = bundle.backbone(x)
        assert torch.allclose(features, create_backbone("tf_efficientnet_lite0")(x), atol=1e-5)
        again = Bundle.load(bundle_dir)
        for kind in bundle.heads:
            assert torch.equal(bundle.heads[kind].cell_probabilities(features),
                               again.heads[kind].cell_probabilities(features))
        assert torch.equal(bundle.rrm(features), again.rrm(features))


def test_changed_or_missing_files_are_clear_errors(bundle_dir):
    (bundle_dir / "heads" / "hc.safetensors").write_bytes(b"tampered")
    with pytest.raises(BundleError, match="heads/hc.safetensors does not match"):
        Bundle.load(bundle_dir)
    (bundle_dir / "heads" / "hc.safetensors").unlink()
    with pytest.raises(BundleError, match="missing bundle file heads/hc.safetensors"):
        Bundle.load(bundle_dir)


def test_edited_config_and_non_bundles_are_errors(bundle_dir, tmp_path):
    config = json.loads((bundle_dir / "config.json").read_text())
    config["default_head"] = "hc"
    (bundle_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="fingerprint does not match"):
        Bundle.load(bundle_dir)
    with pytest.raises(BundleError, match="not a model bundle"):
        Bundle.load(tmp_path)
