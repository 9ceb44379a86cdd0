"""Train every model of the paper on an owner-grouped 80/20 split of the 1,944 real im2gps2k photos (CPU) and
report, on the held-out owners: Acc@ thresholds of each head, and same-cell precision@10 of raw features vs
RRM vs no-residual RRM vs triplet. Needs $GEOLOC_SHARED (default ../shared); work files go to $GEOLOC_OUT (default runs/im2gps2k_training, apart from the demo run).

Writes benchmarks/results/im2gps2k_training.md and .json.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from locator.backbone import create_backbone
from locator.bundle import Bundle
from locator.datasets import owner_split, read_manifest
from locator.metrics import geolocation_metrics, markdown_table
from locator.rrm import embed
from training.batches import TrainingRows
from training.features import build_feature_cache
from training.heads import train_head
from training.partition import PartitionSettings, adaptive_partition
from training.rrm import train_rrm
from training.settings import HeadSettings, RRMSettings

RESULTS = Path(__file__).parent / "results"
ARCH, SIZE = "tf_efficientnet_lite0", 300
# The paper's MP16 partitions use τmax 5000 / 2000 / 1000 and τmin 50 for 4.7 M photos; scaled to ~1,550 photos.
TAU_MAX, TAU_MIN = (200, 80, 30), 5


def precision_at_k(queries: np.ndarray, query_cells: np.ndarray, base: np.ndarray, base_cells: np.ndarray,
                   k: int = 10) -> float:
    """Mean fraction of each query's k most similar base photos (cosine) that lie in the query's true cell."""
    use = query_cells >= 0
    similarity = queries[use] @ base.T
    top = np.argsort(-similarity, axis=1)[:, :k]
    return float((base_cells[top] == query_cells[use, None]).mean())


def timed(label: str, times: dict, fn, *args, **kwargs):
    start = time.process_time()
    result = fn(*args, **kwargs)
    times[label] = round(time.process_time() - start, 1)
    print(f"{label}: {times[label]} s CPU", flush=True)
    return result


def main() -> int:
    shared = os.environ.get("GEOLOC_SHARED", "../shared")
    if not (Path(shared) / "datasets" / "im2gps2k" / "manifest.csv").is_file():
        print(f"no im2gps2k under {shared}: set GEOLOC_SHARED to the shared/ folder", file=sys.stderr)
        return 2
    out = Path(os.environ.get("GEOLOC_OUT", "runs/im2gps2k_training"))
    records = read_manifest(Path(shared) / "datasets" / "im2gps2k" / "manifest.csv")
    train, val = owner_split(records, 0.2, seed=0)
    lat_t, lon_t = np.array([r.lat for r in train]), np.array([r.lon for r in train])
    lat_v, lon_v = np.array([r.lat for r in val]), np.array([r.lon for r in val])
    partitions = [adaptive_partition(lat_t, lon_t, PartitionSettings(tau_max=t, tau_min=TAU_MIN)).partition
                  for t in TAU_MAX]
    backbone = create_backbone(ARCH, size=SIZE)
    bundle = Bundle.create(out / "bundle", backbone, partitions, weights_source="imagenet",
                           training={"dataset": "im2gps2k owner-grouped 80/20 split, seed 0",
                                     "train_photos": len(train), "val_photos": len(val)})
    times: dict[str, float] = {}
    wall = time.perf_counter()
    cache_t = build_feature_cache(train, backbone, out / "features_train", ARCH, dtype="float16")
    cache_v = build_feature_cache(val, backbone, out / "features_val", ARCH, dtype="float16")
    feature_seconds = time.perf_counter() - wall
    ok_t, ok_v = cache_t.done, cache_v.done
    x_t, x_v = cache_t.as_float32()[ok_t], cache_v.as_float32()[ok_v]
    lat_t, lon_t, lat_v, lon_v = lat_t[ok_t], lon_t[ok_t], lat_v, lon_v

    data_t = TrainingRows.from_cache(cache_t)
    head_settings = HeadSettings()
    heads = {}
    heads["ce"], _ = timed("head ce", times, train_head, "ce", data_t, partitions, head_settings)
    heads["hc"], _ = timed("head hc", times, train_head, "hc", data_t, partitions, head_settings)
    heads["mvmf"], _ = timed("head mvmf", times, train_head, "mvmf", data_t, partitions, head_settings,
                             init_from=heads["ce"])
    for kind, head in heads.items():
        bundle.set_head(head, make_default=(kind == "ce"), training=head_settings.to_json())
    rows = []
    x_v_full = np.full((len(val), x_t.shape[1]), np.nan, dtype=np.float32)
    x_v_full[ok_v] = x_v
    for kind, head in heads.items():
        prediction = head.predict(torch.from_numpy(np.nan_to_num(x_v_full)))
        p_lat = np.where(ok_v, prediction.lat, np.nan)
        p_lon = np.where(ok_v, prediction.lon, np.nan)
        rows.append(geolocation_metrics(lat_v, lon_v, p_lat, p_lon, name=f"{kind} head (cell centre)"))

    fine = partitions[-1]
    biggest = int(np.argmax(fine.counts))
    rows.append(geolocation_metrics(lat_v, lon_v, np.full(len(val), fine.lat[biggest]),
                                    np.full(len(val), fine.lon[biggest]), name="baseline: fullest cell's centre"))
    cells_t = fine.lookup(lat_t, lon_t)
    cells_v = fine.lookup(lat_v[ok_v], lon_v[ok_v])
    share = np.bincount(cells_t[cells_t >= 0], minlength=len(fine)) / len(cells_t)
    placed_v = cells_v[cells_v >= 0]
    precision = {"chance (random training photos)": float(share[placed_v].mean()),
                 "raw features": precision_at_k(embed(None, x_v), cells_v, embed(None, x_t), cells_t)}
    variants = {"RRM (infoNCE)": RRMSettings(space="rrm"), "RRM without residual": RRMSettings(residual=False, space="rrm"),
                "RRM (triplet, semi-hard)": RRMSettings(loss="triplet", space="rrm")}
    all_cells_t = fine.lookup(data_t.lat, data_t.lon)
    for name, settings in variants.items():
        rrm, log = timed(name, times, train_rrm, data_t, all_cells_t, settings)
        precision[name] = precision_at_k(embed(rrm, x_v), cells_v, embed(rrm, x_t), cells_t)
        if name == "RRM (infoNCE)":
            bundle.set_rrm(rrm, training={**settings.to_json(), **log.to_json()}, space="rrm", decision=log.decision)
    total_cpu = round(sum(times.values()), 1)

    report = {"train_photos": len(train), "val_photos": len(val), "failed_images": int((~ok_t).sum() + (~ok_v).sum()),
              "partitions": [len(p) for p in partitions], "tau_max": TAU_MAX, "tau_min": TAU_MIN,
              "backbone": f"{ARCH} ImageNet (offline Lite weights), longest side {SIZE}",
              "feature_cache_wall_seconds": round(feature_seconds, 1), "cpu_seconds": times,
              "total_cpu_seconds_after_cache": total_cpu, "precision_at_10": precision,
              "heads": [r.to_json() for r in rows], "bundle_fingerprint": bundle.fingerprint}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "im2gps2k_training.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# im2gps2k training report\n",
        f"Owner-grouped 80/20 split of the 1,944 real im2gps2k photos (seed 0): {len(train)} training photos, "
        f"{len(val)} held-out photos of other owners. Backbone: {report['backbone']}, frozen (features cached, "
        f"{feature_seconds:.0f} s wall for both splits on {os.cpu_count()} CPU cores). Partitions built from the "
        f"training photos with τmax {'/'.join(map(str, TAU_MAX))}, τmin {TAU_MIN}: "
        f"{' / '.join(str(len(p)) for p in partitions)} cells.\n",
        "## Heads on the held-out owners (prediction = centre of the predicted cell)\n",
        markdown_table(rows),
        "## Same-cell precision@10 on the held-out owners\n",
        "For each held-out photo with a cell, the 10 most similar training photos (cosine); the fraction in the "
        "photo's true finest cell.\n",
        "| embedding | precision@10 |", "|---|---|",
        *(f"| {name} | {100 * value:.1f} % |" for name, value in precision.items()),
        "",
        f"## CPU time after the feature cache: {total_cpu} s in total\n",
        "| step | CPU seconds |", "|---|---|", *(f"| {k} | {v} |" for k, v in times.items()), "",
    ]
    (RESULTS / "im2gps2k_training.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
