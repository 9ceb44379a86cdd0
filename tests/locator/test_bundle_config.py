"""BundleConfig: what the light, torch-free view of a bundle tells the ingest CLI."""

from pathlib import Path

from locator.bundle_config import BundleConfig


def _config(fusion):
    return BundleConfig(Path("unused"), {"fusion": fusion})


def test_sources_the_fused_model_was_fitted_without():
    fitted = _config({"file": "fusion.json", "info": {"fitted_sources": ["flickr", "penn"]}})
    assert fitted.fusion_unfitted_sources({"penn": 3, "croatia": 2, "alps": 1}) == ["alps", "croatia"]
    assert fitted.fusion_unfitted_sources(["flickr"]) == []
    # No fused model, or one fitted before sources were recorded: nothing can be said.
    assert _config(None).fusion_unfitted_sources(["croatia"]) == []
    assert _config({"file": "fusion.json", "info": {}}).fusion_unfitted_sources(["croatia"]) == []
