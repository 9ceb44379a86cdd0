import csv

import numpy as np
import pytest

from locator.backbone import create_backbone, extract_features
from locator.datasets import read_manifest
from locator.images import load_image
from tests.photo_world import make_photo_world
from training.features import DONE, FAILED, PENDING, FeatureCache, FeatureCacheError, build_feature_cache


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("tf_efficientnet_lite0", size=64)


def test_cache_matches_direct_extraction_and_records_failures(tmp_path, backbone):
    records = read_manifest(make_photo_world(tmp_path / "world", photos_per_place=3, bad_files=True))
    cache = build_feature_cache(records, backbone, tmp_path / "cache", "bb1", dtype="float32", progress=False)
    assert (cache.status == FAILED).sum() == 2 and (cache.status == DONE).sum() == len(records) - 2
    direct = extract_features(backbone, [backbone.preprocessing.to_tensor(load_image(records[0].image))], device="cpu")
    assert np.max(np.abs(cache.features[0] - direct[0])) <= 1e-4
    with (tmp_path / "cache" / "failures.csv").open() as handle:
        failures = list(csv.DictReader(handle))
    assert {f["image"].rsplit("/", 1)[-1] for f in failures} == {"empty.jpg", "text.jpg"}
    assert all(f["reason"] for f in failures)
    reopened = FeatureCache.open(tmp_path / "cache")
    assert reopened.records == records


def test_resume_fills_only_pending_rows(tmp_path, backbone):
    records = read_manifest(make_photo_world(tmp_path / "world", photos_per_place=3))
    full = build_feature_cache(records, backbone, tmp_path / "full", "bb1", progress=False)
    partial = build_feature_cache(records, backbone, tmp_path / "partial", "bb1", progress=False)
    # Simulate a run killed mid-way: some rows never got features.
    partial.status[5:] = PENDING
    partial.features[5:] = 0
    partial.status.flush()
    partial.features.flush()
    resumed = build_feature_cache(records, backbone, tmp_path / "partial", "bb1", progress=False)
    assert (resumed.status == DONE).all()
    # Equal up to float16 rounding of tiny kernel differences between batch compositions.
    assert np.allclose(np.asarray(resumed.features, np.float32), np.asarray(full.features, np.float32), rtol=2e-3, atol=2e-3)
    assert np.array_equal(np.asarray(resumed.features[:5]), np.asarray(full.features[:5]))
    assert resumed.features.dtype == np.float16


def test_cache_with_other_settings_is_refused(tmp_path, backbone):
    records = read_manifest(make_photo_world(tmp_path / "world", photos_per_place=2))
    build_feature_cache(records, backbone, tmp_path / "cache", "bb1", progress=False)
    with pytest.raises(FeatureCacheError, match="other settings \\(backbone\\)"):
        build_feature_cache(records, backbone, tmp_path / "cache", "bb2", progress=False)
    with pytest.raises(FeatureCacheError, match="records_sha256"):
        build_feature_cache(records[:-1], backbone, tmp_path / "cache", "bb1", progress=False)


def test_float32_precision_equals_a_plain_forward_and_is_recorded(tmp_path, backbone):
    import json

    import torch

    from locator.backbone import compute_dtype
    records = read_manifest(make_photo_world(tmp_path / "world", photos_per_place=2))
    cache = build_feature_cache(records, backbone, tmp_path / "cache", "bb1", dtype="float32", progress=False,
                                precision="float32", device="cpu")
    assert cache.meta["computed_in"] == "float32"
    with torch.no_grad():
        plain = backbone.eval()(backbone.preprocessing.to_tensor(load_image(records[0].image))[None]).numpy()
    np.testing.assert_allclose(cache.features[0], plain[0], rtol=1e-4, atol=1e-5)
    if compute_dtype(torch.device("cpu")) != torch.float32:  # this CPU computes bfloat16 by default: resuming in it would mix precisions
        with pytest.raises(FeatureCacheError, match="computed_in"):
            build_feature_cache(records, backbone, tmp_path / "cache", "bb1", dtype="float32", progress=False,
                                device="cpu")
    # A cache made before the precision was recorded resumes whatever the precision.
    meta = json.loads((tmp_path / "cache" / "meta.json").read_text())
    del meta["computed_in"]
    (tmp_path / "cache" / "meta.json").write_text(json.dumps(meta))
    build_feature_cache(records, backbone, tmp_path / "cache", "bb1", dtype="float32", progress=False, device="cpu")
    with pytest.raises(FeatureCacheError, match="precision must be"):
        build_feature_cache(records, backbone, tmp_path / "other", "bb1", progress=False, precision="half")


def test_a_cache_made_before_drafted_decoding_resumes_with_full_decoding_only(tmp_path, backbone):
    import json
    records = read_manifest(make_photo_world(tmp_path / "world", photos_per_place=2))
    build_feature_cache(records, backbone, tmp_path / "cache", "bb1", progress=False)
    meta_path = tmp_path / "cache" / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["preprocessing"]["draft"] is True
    del meta["preprocessing"]["draft"]  # as written before the setting existed: every JPEG decoded in full
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(FeatureCacheError, match="other settings \\(preprocessing\\)"):
        build_feature_cache(records, backbone, tmp_path / "cache", "bb1", progress=False)
    full_decode = create_backbone("tf_efficientnet_lite0", size=64, draft=False)
    cache = build_feature_cache(records, full_decode, tmp_path / "cache", "bb1", progress=False)
    assert (cache.status == DONE).all()
