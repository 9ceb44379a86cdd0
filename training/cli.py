"""`geoloc-train`: partitions, model bundles, feature caches, heads, the RRM, backbone fine-tuning, placeable set.

A bundle directory is the working state: `bundle` starts it (backbone + partitions), `features` embeds a dataset
with its backbone, `head` / `rrm` train on those features and write into it, `backbone` fine-tunes it,
`placeable` lists the background collection. torch and timm load only once a command runs, so `--help` is quick.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from locator.datasets import DatasetError, Record, owner_split, read_dataset
from locator.errors import GeolocError, SettingsError
from locator.feature_cache import FeatureCache, FeatureCacheError
from locator.heads import HEADS
from locator.settings import add_arguments, from_args
from training import run_folder
from training.coordinates import read_coordinates_csv, synthetic_coordinates, write_coordinates_csv
from training.partition import PartitionSettings, adaptive_partition
from training.settings import BackboneSettings, FusionSettings, HeadSettings, RRMSettings

if TYPE_CHECKING:
    from locator.bundle import Bundle
    from training.backbone import Ranks

MIN_DEMO_PHOTOS = 20


def backbone_id(bundle: Bundle) -> str:
    """Identifies the bundle's backbone weights and preprocessing (what a feature cache depends on)."""
    from locator.bundle import BACKBONE
    preprocessing = bundle.backbone.preprocessing
    return f"{bundle.config['files'][BACKBONE][:16]}-{preprocessing.size}-{preprocessing.square}"


def _load_bundle(path: Path) -> Bundle:
    from locator.bundle import Bundle
    return Bundle.load(path)


def _records(args: argparse.Namespace) -> list[Record]:
    records = read_dataset(args.data, images_dir=args.images)
    if args.split == "all":
        return records
    train, val = owner_split(records, args.val_fraction, args.seed)
    return train if args.split == "train" else val


def _cache_for(bundle: Bundle, path: Path) -> FeatureCache:
    cache = FeatureCache.open(path)
    if cache.meta["backbone"] != backbone_id(bundle):
        raise FeatureCacheError(f"{path}: features were made with another backbone than {bundle.directory}'s; "
                                "run `geoloc-train features` again")
    if not cache.done.any():
        raise FeatureCacheError(f"{path}: no photo has features yet")
    return cache


def _partition(args: argparse.Namespace) -> int:
    lat, lon = read_coordinates_csv(args.coords)
    settings = from_args(PartitionSettings, args)
    start = time.perf_counter()
    result = adaptive_partition(lat, lon, settings)
    elapsed = time.perf_counter() - start
    result.partition.write_csv(args.out)
    print(f"partition: {result.summary()} in {elapsed:.1f} s -> {args.out}")
    return 0


def _sample_coords(args: argparse.Namespace) -> int:
    lat, lon = synthetic_coordinates(args.n, seed=args.seed)
    write_coordinates_csv(args.out, lat, lon)
    print(f"sample-coords: wrote {args.n:,} SYNTHETIC coordinates (clustered, not real photos) -> {args.out}")
    return 0


def _bundle(args: argparse.Namespace) -> int:
    from locator.backbone import create_backbone
    from locator.bundle import Bundle
    from locator.cells import Partition
    weights = None if args.weights == "none" else args.weights
    backbone = create_backbone(args.arch, weights=weights, size=args.size, square=args.square, seed=args.seed,
                               draft=not args.full_decode)
    partitions = [Partition.read_csv(p) for p in args.partitions]
    bundle = Bundle.create(args.out, backbone, partitions, weights_source=str(args.weights))
    print(f"bundle: {args.arch} ({backbone.feature_dim}-d, weights {args.weights}), partitions "
          f"{' / '.join(str(len(p)) for p in partitions)} cells -> {args.out} (fingerprint {bundle.fingerprint[:12]})")
    return 0


def _features(args: argparse.Namespace) -> int:
    from training.features import build_feature_cache
    bundle = _load_bundle(args.bundle)
    records, items = _feature_inputs(args)
    start = time.perf_counter()
    cache = build_feature_cache(records, bundle.backbone, args.out, backbone_id(bundle), dtype=args.dtype,
                                batch_size=args.batch_size, device=args.device, precision=args.precision,
                                items=items)
    elapsed = time.perf_counter() - start
    failed = int((cache.status == 2).sum())
    print(f"features: {int(cache.done.sum()):,} of {len(records):,} photos embedded ({failed} failed, see "
          f"{Path(args.out) / 'failures.csv'}) in {elapsed:.0f} s -> {args.out}")
    return 0


def _reads_shards(args: argparse.Namespace) -> bool:
    """True for MP16 shards with their metadata, False for --data; a clear error for anything else."""
    if args.mp16_shards:
        if not args.mp16_metadata:
            raise SettingsError("MP16 shards need their metadata CSV (--mp16-metadata)")
        return True
    if not args.data:
        raise SettingsError("give --data (a manifest) or --mp16-shards with --mp16-metadata")
    return False


def _feature_inputs(args: argparse.Namespace) -> tuple[list[Record], list | None]:
    """The records to embed, and (for MP16 shards) where each photo lies in its shard."""
    if not _reads_shards(args):
        return _records(args), None
    from locator.shards import shard_records
    records, items, missing = shard_records(args.mp16_shards, args.mp16_metadata)
    if missing:
        print(f"features: {missing:,} shard records are not in {args.mp16_metadata} (or have no valid lat/lon) "
              "and are left out")
    if not records:
        raise DatasetError(f"{', '.join(args.mp16_shards)}: no record of these shards is in {args.mp16_metadata}")
    return records, items


def _write_text_log(bundle: Bundle, name: str, text: str) -> Path:
    path = bundle.directory / "logs" / f"{name}.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def _percent(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.1f}%"


def _head(args: argparse.Namespace) -> int:
    from training.batches import TrainingRows
    from training.heads import train_head
    bundle = _load_bundle(args.bundle)
    data = TrainingRows.from_cache(_cache_for(bundle, args.features))
    settings = from_args(HeadSettings, args)
    init = bundle.heads.get("ce") if args.kind == "mvmf" and not args.no_init else None
    head, log = train_head(args.kind, data, bundle.partitions, settings, init_from=init, device=args.device)
    best = log.best()
    bundle.set_head(head, make_default=args.default,
                    training={**settings.to_json(), **log.to_json(), "init_from_ce": init is not None})
    path = _write_text_log(bundle, f"head_{args.kind}", log.csv())
    print(f"head {args.kind}: {log.train_rows:,} photos ({log.validation_rows:,} of other owners held out), best of "
          f"{len(log.epochs)} epochs: {best.epoch}, validation cell accuracy {_percent(best.val_cell_accuracy)}, "
          f"Acc@25 km {_percent(best.val_acc_25km)}, Acc@750 km {_percent(best.val_acc_750km)}; "
          f"{log.samples_per_second:,.0f} photos/s -> {args.bundle} (log {path})")
    return 0


def _rrm(args: argparse.Namespace) -> int:
    from training.batches import TrainingRows
    from training.rrm import train_rrm
    bundle = _load_bundle(args.bundle)
    data = TrainingRows.from_cache(_cache_for(bundle, args.features))
    cells = bundle.partitions[-1].lookup(data.lat, data.lon)
    settings = from_args(RRMSettings, args)
    rrm, log = train_rrm(data, cells, settings, device=args.device)
    bundle.set_rrm(rrm, training={**settings.to_json(), **log.to_json()}, space=log.space, decision=log.decision)
    path = _write_text_log(bundle, "rrm", log.csv())
    print(f"rrm ({settings.loss}): {len(data.usable):,} photos, best step {log.best_step} of {log.steps} "
          f"({log.pairs_per_second:,.0f} pairs/s) -> {args.bundle} (log {path})")
    print(f"rrm: the collection embeds {log.decision}")
    return 0


def _placeable(args: argparse.Namespace) -> int:
    from training.batches import TrainingRows
    from training.placeable import predicted_cells
    bundle = _load_bundle(args.bundle)
    cache = _cache_for(bundle, args.features)
    data = TrainingRows.from_cache(cache)
    head = bundle.heads[args.head] if args.head else bundle.default_head
    true_cells = bundle.partitions[-1].lookup(data.lat, data.lon)
    mask = np.zeros(len(data), dtype=bool)
    mask[data.usable] = (predicted_cells(head, data, data.usable, args.device) == true_cells[data.usable]) & \
        (true_cells[data.usable] >= 0)
    _write_placeable(cache.directory / "index.csv", args.out, mask, true_cells)
    bundle.update_training(placeable={"photos": int(mask.sum()), "of": len(data.usable), "head": head.kind})
    print(f"placeable: {int(mask.sum()):,} of {len(data.usable):,} photos are put in their true cell by the "
          f"{head.kind} head -> {args.out}")
    return 0


def _write_placeable(index: Path, out: Path, mask: np.ndarray, cells: np.ndarray) -> None:
    """The cache's index rows where `mask` holds, as a manifest with their finest cell (streamed, row by row)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with index.open(newline="") as source, out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "photo_id", "owner", "source", "lat", "lon", "cell"])
        for row in csv.DictReader(source):
            k = int(row["row"])
            if mask[k]:
                writer.writerow([row["image"], row["photo_id"], row["owner"], row["source"], row["lat"], row["lon"],
                                 int(cells[k])])


def _fusion(args: argparse.Namespace) -> int:
    from training.batches import TrainingRows
    from training.fusion import fit_fusion
    bundle = _load_bundle(args.bundle)
    cache = _cache_for(bundle, args.features)
    data, settings = TrainingRows.from_cache(cache), from_args(FusionSettings, args)
    collection, training_sources, stored_sources = None, _sources(cache.directory / "index.csv"), set()
    if args.store:
        from locator.store import SOURCE_FIELD, open_store
        from training.fusion import collection_set
        with open_store(args.store, bundle.collection_spec(), create=False) as store:
            collection = collection_set(bundle, store, training_sources, settings, args.device)
            stored_sources = set(store.counts_by(SOURCE_FIELD))  # all of them, sampled by collection_set or not
    model, report = fit_fusion(bundle, data, settings, device=args.device, collection=collection)
    model.info["fitted_sources"] = sorted(training_sources | stored_sources)
    bundle.set_fusion(model)
    added = f" and {report['collection_queries']:,} added references of the collection" \
        if report["collection_queries"] else ""
    print(f"fusion: fitted on {report['held_out_photos'] - report['collection_queries']:,} held-out training photos"
          f"{added} ({report['owners']:,} owners; {report['candidates']:,} candidates); scorers for "
          f"{', '.join(f'{t:g}' for t in model.scorers)} km -> {args.bundle}")
    columns = next(iter(report["accuracy_on_held_out"].values()))
    print("fusion: accuracy on those held-out photos (out of fold), % (" + ", ".join(columns) + "):")
    for name, accuracy in report["accuracy_on_held_out"].items():
        print(f"  {name:<20} " + " ".join(f"{100 * v:5.1f}" for v in accuracy.values()))
    print(f"fusion: {100 * report['share_within_radius']:.0f}% of out-of-fold errors lie within the predicted radius "
          "(a median: 50% expected)")
    for source, row in report.get("added_references", {}).items():
        print(f"fusion: added references ({source}): {row['photos']:,} photos, mean confidence "
              f"{row['mean_confidence']:.3f}, {100 * row['share_within_25km']:.1f}% within 25 km, calibration "
              f"error {row['ece']:.3f}")
    return 0


def _sources(index: Path) -> set[str]:
    """The sources a feature cache's photos come from (read row by row)."""
    with index.open(newline="") as handle:
        return {row["source"] for row in csv.DictReader(handle)}


def _finetune(args: argparse.Namespace) -> int:
    from training.backbone import distributed
    with distributed() as ranks:
        return _finetune_ranks(args, ranks)


def _finetune_ranks(args: argparse.Namespace, ranks: Ranks) -> int:
    from training.backbone import finetune_backbone
    from training.photo_data import PhotoIndex
    bundle = _load_bundle(args.bundle)
    fine = bundle.partitions[-1]
    if _reads_shards(args):
        index = PhotoIndex.from_shards(args.mp16_shards, args.mp16_metadata, fine)
    else:
        index = PhotoIndex.from_records(_records(args), fine)
    settings = from_args(BackboneSettings, args)
    head, losses = finetune_backbone(bundle.backbone, index, fine, settings, device=args.device,
                                     checkpoints=args.checkpoints, resume=args.resume)
    if not ranks.main:
        return 0
    bundle.set_backbone(bundle.backbone, weights_source=f"fine-tuned from {bundle.config['backbone']['weights_source']}")
    if len(bundle.partitions) == 1:
        bundle.set_head(head, make_default=True, training={**settings.to_json(), "joint_with_backbone": True})
    bundle.update_training(backbone={**settings.to_json(), "ranks": ranks.world, "photos": len(index)})
    log = _write_text_log(bundle, "backbone", "epoch,loss\n" + "".join(f"{k + 1},{v:.6f}\n"
                                                                      for k, v in enumerate(losses)))
    print(f"backbone: fine-tuned on {len(index):,} photos over {ranks.world} rank(s), loss per epoch "
          f"{', '.join(f'{v:.3f}' for v in losses)} -> {args.bundle} (log {log}); re-run `features` before training "
          "heads on the new backbone")
    return 0


def _write_manifest(path: Path, records: list[Record], cells: np.ndarray | None = None) -> None:
    """A manifest CSV readable by read_manifest; with `cells`, an extra column of finest-cell classes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "photo_id", "owner", "source", "lat", "lon"] + (["cell"] if cells is not None else []))
        for k, r in enumerate(records):
            extra = [int(cells[k])] if cells is not None else []
            writer.writerow([r.image, r.photo_id, r.owner, r.source, repr(r.lat), repr(r.lon), *extra])


def _split(args: argparse.Namespace) -> int:
    records = read_dataset(args.data, images_dir=args.images)
    train, val = owner_split(records, args.val_fraction, args.seed)
    _write_manifest(args.out / "train.csv", train)
    _write_manifest(args.out / "val.csv", val)
    owners = len({r.group for r in train}), len({r.group for r in val})
    print(f"split: {len(train):,} training photos ({owners[0]} owners), {len(val):,} held-out photos "
          f"({owners[1]} other owners) -> {args.out}/train.csv, val.csv")
    return 0


def hierarchy_thresholds(photos: int, fine_tau_max: int | None = None) -> tuple[list[int], int]:
    """τmax for coarse, middle, fine and a shared τmin, scaled like the paper's 5000 / 2000 / 1000, τmin 50 at
    4.7 M photos, but with fine cells of ~2 % of the photos so that small sets still have tens of cells."""
    fine = fine_tau_max or max(10, round(photos / 50))
    return [round(fine * 6.5), round(fine * 2.5), fine], max(2, fine // 6)


def _hierarchy(args: argparse.Namespace) -> int:
    records = read_dataset(args.data, images_dir=args.images)
    lat, lon = np.array([r.lat for r in records]), np.array([r.lon for r in records])
    taus, tau_min = hierarchy_thresholds(len(records), args.fine_tau_max)
    names = ("coarse", "middle", "fine")
    for name, tau in zip(names, taus):
        result = adaptive_partition(lat, lon, PartitionSettings(tau_max=tau, tau_min=tau_min))
        result.partition.write_csv(args.out / f"{name}.csv")
        print(f"hierarchy {name} (τmax {tau}, τmin {tau_min}): {result.summary()}")
    return 0


def _demo_world(args: argparse.Namespace) -> int:
    from training.demo_world import make_demo_world
    manifest = make_demo_world(args.out, places=args.places, photos_per_place=args.photos_per_place, seed=args.seed)
    print(f"demo-world: rendered {args.places * args.photos_per_place} SYNTHETIC photos of {args.places} places -> {manifest}")
    return 0


def _run_start(args: argparse.Namespace) -> int:
    if args.data:
        records = read_dataset(args.data, images_dir=args.images)
        if len(records) < MIN_DEMO_PHOTOS or len({r.group for r in records}) < 2:
            raise DatasetError(f"{args.data}: {len(records)} photo(s) of {len({r.group for r in records})} owner(s); "
                               f"the demo needs at least {MIN_DEMO_PHOTOS} photos of at least 2 owners")
        print(f"run-start: {args.data}: {len(records):,} photos")
    stage = run_folder.start(args.out)
    print(f"run-start: building in {stage}; {args.out} stays as it is until the new run is complete")
    return 0


def _run_publish(args: argparse.Namespace) -> int:
    run_folder.publish(run_folder.stage_of(args.out), args.out, args.description)
    print(f"run-publish: the new run is in {args.out}")
    return 0


def _add_data_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--data", required=required, help="manifest CSV, benchmark CSV or folder of EXIF-GPS photos")
    parser.add_argument("--images", help="folder that benchmark IMG_IDs are relative to")
    parser.add_argument("--split", choices=["all", "train", "val"], default="all",
                        help="owner-grouped split to use (default: all)")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="held-out share of photos (default: 0.2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the owner split (default: 0)")


def _add_cache_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, type=Path, help="model bundle folder; the result is written into it")
    parser.add_argument("--features", required=True, type=Path, help="feature cache from `geoloc-train features`")


def _commands(commands: argparse._SubParsersAction) -> None:
    part = commands.add_parser("partition", help="adaptive S2 partition of photo coordinates (GeoEstimation CSV)")
    part.add_argument("--coords", required=True, help="CSV with LAT,LON or lat,lon columns (degrees)")
    add_arguments(part, PartitionSettings)
    part.add_argument("--out", required=True, type=Path, help="output partition CSV")
    part.set_defaults(run=_partition)

    sample = commands.add_parser("sample-coords", help="write a synthetic clustered coordinate sample")
    sample.add_argument("--n", type=int, default=100_000, help="number of coordinates (default: 100000)")
    sample.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    sample.add_argument("--out", required=True, type=Path, help="output CSV (lat,lon)")
    sample.set_defaults(run=_sample_coords)

    bundle = commands.add_parser("bundle", help="start a model bundle from a backbone and partitions")
    bundle.add_argument("--out", required=True, type=Path, help="bundle folder to create")
    bundle.add_argument("--arch", default="tf_efficientnet_lite0", help="timm architecture (default: tf_efficientnet_lite0)")
    bundle.add_argument("--weights", default="imagenet",
                        help="imagenet (offline Lite weights), a checkpoint path, or none (default: imagenet)")
    bundle.add_argument("--partitions", nargs="+", required=True, help="partition CSVs, coarse to fine")
    bundle.add_argument("--size", type=int, default=300, help="longest side (or square side) at inference (default: 300)")
    bundle.add_argument("--square", action="store_true", help="resize to size×size instead of keeping the aspect")
    bundle.add_argument("--full-decode", action="store_true",
                        help="decode every JPEG in full (default: large JPEGs decode at a reduced scale that still "
                             "covers their resize target, several times faster)")
    bundle.add_argument("--seed", type=int, default=0, help="seed of the random initialisation with --weights none "
                        "(default: 0)")
    bundle.set_defaults(run=_bundle)

    features = commands.add_parser("features", help="embed a dataset with the bundle's backbone (resumable)")
    features.add_argument("--bundle", required=True, type=Path, help="model bundle folder")
    _add_data_arguments(features, required=False)
    features.add_argument("--mp16-shards", nargs="+", default=None, help="MP16 msgpack shards instead of --data")
    features.add_argument("--mp16-metadata", default=None, help="their metadata CSV (IMG_ID,AUTHOR,LAT,LON,…)")
    features.add_argument("--out", required=True, type=Path, help="feature cache folder")
    features.add_argument("--dtype", choices=["float16", "float32"], default="float16",
                          help="how the cache stores features (default: float16)")
    features.add_argument("--precision", choices=["auto", "float32"], default="auto",
                          help="what the backbone computes in: auto = float16 on CUDA, bfloat16 on a CPU that has it "
                               "natively, else float32; float32 = full precision everywhere (default: auto)")
    features.add_argument("--batch-size", type=int, default=None,
                          help="photos of one shape through the backbone together (default: 128 on a GPU, 4 on a CPU)")
    features.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    features.set_defaults(run=_features)

    head = commands.add_parser("head", help="train a classification head on cached features",
                               description="Train a classification head over the bundle's cells on cached backbone "
                                           "features and store it in the bundle.")
    _add_cache_arguments(head)
    head.add_argument("--kind", choices=HEADS.names(), required=True,
                      help="ce: PlaNet cross-entropy over the finest cells; hc: one classifier per partition, "
                           "probabilities multiplied; mvmf: mixture of von Mises-Fisher (starts from the ce head)")
    add_arguments(head, HeadSettings)
    head.add_argument("--default", action="store_true", help="make this the bundle's default head")
    head.add_argument("--no-init", action="store_true", help="mvmf: do not start from the bundle's ce head")
    head.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    head.set_defaults(run=_head)

    rrm = commands.add_parser("rrm", help="train the Residual Retrieval Module on cached features")
    _add_cache_arguments(rrm)
    add_arguments(rrm, RRMSettings)
    rrm.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    rrm.set_defaults(run=_rrm)

    fusion = commands.add_parser(
        "fusion", help="fit the fused method's scorer and calibration on held-out training photos",
        description="Fit the model of `geoloc locate --method fused` (the default). Training photos are split by "
                    "owner; a head and an RRM are retrained on one part, and the other part is located against it "
                    "to learn which evidence to trust. No evaluation photo is used.")
    _add_cache_arguments(fusion)
    add_arguments(fusion, FusionSettings)
    fusion.add_argument("--store", default=None,
                        help="also learn from the collection: its photos from sources the models were not trained on "
                             "are each located against the rest of it (refit after growing the collection)")
    fusion.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    fusion.set_defaults(run=_fusion)

    placeable = commands.add_parser("placeable", help="list training photos the classifier puts in their true cell")
    _add_cache_arguments(placeable)
    placeable.add_argument("--head", choices=HEADS.names(), default=None, help="default: the bundle's")
    placeable.add_argument("--out", required=True, type=Path, help="manifest CSV of the placeable photos")
    placeable.add_argument("--device", default=None, help="cuda or cpu (default: cuda when present)")
    placeable.set_defaults(run=_placeable)

    split = commands.add_parser("split", help="owner-grouped train / held-out split of a dataset into two manifests")
    _add_data_arguments(split)
    split.add_argument("--out", required=True, type=Path, help="folder for train.csv and val.csv")
    split.set_defaults(run=_split)

    hierarchy = commands.add_parser("hierarchy", help="coarse / middle / fine partitions scaled to a dataset's size")
    hierarchy.add_argument("--data", required=True, help="manifest CSV, benchmark CSV or folder of EXIF-GPS photos")
    hierarchy.add_argument("--images", default=None, help="folder that benchmark IMG_IDs are relative to")
    hierarchy.add_argument("--fine-tau-max", type=int, default=None, help="default: ~2 %% of the photos, at least 10")
    hierarchy.add_argument("--out", required=True, type=Path, help="folder for coarse.csv, middle.csv, fine.csv")
    hierarchy.set_defaults(run=_hierarchy)

    world = commands.add_parser("demo-world", help="render a SYNTHETIC world whose photos' look depends on location")
    world.add_argument("--out", required=True, type=Path, help="folder for images/ and manifest.csv")
    world.add_argument("--places", type=int, default=24, help="(default: 24)")
    world.add_argument("--photos-per-place", type=int, default=25, help="(default: 25)")
    world.add_argument("--seed", type=int, default=0, help="(default: 0)")
    world.set_defaults(run=_demo_world)

    start = commands.add_parser("run-start", help="check a run's inputs and output folder, then stage a new run")
    start.add_argument("--out", required=True, type=Path, help="the run folder (kept until the new run is complete)")
    start.add_argument("--data", default=None, help="the dataset to check (default: none)")
    start.add_argument("--images", default=None, help="folder that benchmark IMG_IDs are relative to")
    start.set_defaults(run=_run_start)

    publish = commands.add_parser("run-publish", help="swap a complete staged run into its run folder")
    publish.add_argument("--out", required=True, type=Path, help="the run folder")
    publish.add_argument("--description", default="", help="recorded in the run's marker file")
    publish.set_defaults(run=_run_publish)

    finetune = commands.add_parser(
        "backbone", help="fine-tune the bundle's backbone with cross-entropy over cells",
        description="Fine-tune the bundle's backbone (one process, or many with torchrun: "
                    "torchrun --nproc_per_node=4 -m training.cli backbone …).")
    finetune.add_argument("--bundle", required=True, type=Path, help="model bundle folder")
    _add_data_arguments(finetune, required=False)
    finetune.add_argument("--mp16-shards", nargs="+", default=None, help="MP16 msgpack shards instead of --data")
    finetune.add_argument("--mp16-metadata", default=None, help="their metadata CSV (IMG_ID,AUTHOR,LAT,LON,…)")
    add_arguments(finetune, BackboneSettings, skip=("seed",))
    finetune.add_argument("--checkpoints", type=Path, default=None, help="folder for periodic checkpoints")
    finetune.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoints")
    finetune.add_argument("--device", default=None, help="cuda or cpu (default: this rank's GPU when present)")
    finetune.set_defaults(run=_finetune)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geoloc-train", description="Train the geolocation models.")
    _commands(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except GeolocError as exc:
        print(f"geoloc-train {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
