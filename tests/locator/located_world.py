"""A small trained bundle and a filled Edge store over the synthetic photo world, for locator tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from locator.backbone import create_backbone
from locator.bundle import Bundle
from locator.datasets import read_manifest
from locator.encoder import PhotoEncoder
from locator.images import load_image
from locator.store import cell_field, open_store, point_id, token_field
from tests.photo_world import make_photo_world
from training.batches import TrainingRows
from training.fusion import fit_fusion
from training.heads import train_head
from training.partition import PartitionSettings, adaptive_partition
from training.rrm import train_rrm
from training.settings import FusionSettings, HeadSettings, RRMSettings


def build(root: Path) -> dict:
    manifest = make_photo_world(root / "world", photos_per_place=10)
    records = read_manifest(manifest)
    queries, background = records[::5], [r for k, r in enumerate(records) if k % 5]
    lat = np.array([r.lat for r in background])
    lon = np.array([r.lon for r in background])
    partition = adaptive_partition(lat, lon, PartitionSettings(tau_max=12, tau_min=2)).partition
    bundle = Bundle.create(root / "bundle", create_backbone("tf_efficientnet_lite0", size=64), [partition], "imagenet")
    encoder = PhotoEncoder(bundle, device="cpu")
    features = encoder.features([encoder.preprocess(load_image(r.image)) for r in background])
    data = TrainingRows.from_arrays(features, lat, lon, [r.group for r in background])
    for kind in ("ce", "mvmf"):
        head, _ = train_head(kind, data, [partition], HeadSettings(epochs=60, lr=0.01, validation=0), progress=False)
        bundle.set_head(head)
    rrm_settings = RRMSettings(hidden_dim=64, steps=20, validation=0, space="rrm")
    rrm, _ = train_rrm(data, partition.lookup(lat, lon), rrm_settings, progress=False)
    bundle.set_rrm(rrm, training=rrm_settings.to_json(), space="rrm")
    model, _ = fit_fusion(Bundle.load(root / "bundle"), data, FusionSettings(folds=3), progress=False)
    bundle.set_fusion(model)
    embeddings = PhotoEncoder(Bundle.load(root / "bundle"), device="cpu").embed_features(features)
    cells = partition.lookup(lat, lon)
    payloads = [{cell_field(0): int(c), token_field(0): partition.tokens[c] if c >= 0 else "", "lat": r.lat,
                 "lon": r.lon, "photo_id": r.photo_id, "owner": r.owner, "source": r.source, "image": r.image,
                 "ingest_time": "test"} for r, c in zip(background, cells)]
    ids = [point_id(r.source, r.photo_id) for r in background]
    store = root / "store"
    with open_store(f"edge:{store}", bundle.collection_spec()) as s:
        s.upsert(ids, embeddings, payloads)
    return {"root": root, "manifest": manifest, "queries": queries, "background": background, "ids": np.array(ids),
            "embeddings": embeddings, "cells": cells, "features": features, "bundle_dir": root / "bundle",
            "store": f"edge:{store}"}
