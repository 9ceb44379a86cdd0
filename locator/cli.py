"""`geoloc`: locate photos, and evaluate (a predictions file, or a bundle on a benchmark)."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

from tqdm import tqdm

from locator.api import METHODS, Locator, Prediction
from locator.backbone import BackboneError
from locator.bundle import BundleError
from locator.datasets import IMAGE_SUFFIXES, DatasetError, read_dataset
from locator.feature_cache import FeatureCacheError
from locator.geo import CoordinateError
from locator.metrics import geolocation_metrics, markdown_table, metrics_json
from locator.predictions import align, read_predictions_csv
from locator.store import StoreError

_CSV_COLUMNS = ["image", "lat", "lon", "ok", "error", "method", "cell_token", "cell_probability", "cluster_size",
                "radius_km", "confidence", "nearest_photo_id", "nearest_similarity", "note"]


def _expand(paths: list[str], images_dir: str | None) -> tuple[list[str], dict[str, tuple[float, float]]]:
    """Photo paths from files, folders and dataset CSVs; the CSVs also give ground truth for the map."""
    out, truth = [], {}
    for item in paths:
        path = Path(item)
        if path.is_dir():
            out += sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.suffix.lower() == ".csv":
            records = read_dataset(path, images_dir=images_dir)
            out += [r.image for r in records]
            truth.update({r.image: (r.lat, r.lon) for r in records})
        else:
            out.append(item)
    return out, truth


def _number(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6f}"


def write_predictions_csv(path: Path, predictions: list[Prediction]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(_CSV_COLUMNS)
        for p in predictions:
            top = p.neighbours[0] if p.neighbours else None
            writer.writerow([p.image, _number(p.lat), _number(p.lon), int(p.ok), p.error, p.method, p.cell_token,
                             _number(p.cell_probability), p.cluster_size, _number(p.radius_km), _number(p.confidence),
                             top.photo_id if top else "", _number(top.similarity) if top else "", p.note])


def _json_safe(value: object) -> object:
    """NaN (a failed photo's lat, probability, radius…) becomes null: GeoJSON is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_predictions_geojson(path: Path, predictions: list[Prediction]) -> None:
    features = []
    for p in predictions:
        properties = {k: v for k, v in vars(p).items() if k not in ("lat", "lon", "neighbours")}
        properties["neighbours"] = [vars(n) for n in p.neighbours]
        geometry = None if not p.ok or math.isnan(p.lat) else {"type": "Point", "coordinates": [p.lon, p.lat]}
        features.append({"type": "Feature", "geometry": geometry, "properties": properties})
    path.parent.mkdir(parents=True, exist_ok=True)
    collection = _json_safe({"type": "FeatureCollection", "features": features})
    path.write_text(json.dumps(collection, indent=1, allow_nan=False))


def _locate(args: argparse.Namespace) -> int:
    images, truth = _expand(args.photos, args.images)
    if not images:
        raise DatasetError("no photos given")
    if args.truth:
        truth.update({r.image: (r.lat, r.lon) for r in read_dataset(args.truth, images_dir=args.images)})
    truth.update({str(Path(k).name): v for k, v in list(truth.items())})
    with Locator.load(args.bundle, store=args.store, raw_features=args.raw_features) as locator:
        predictions: list[Prediction] = []
        for start in tqdm(range(0, len(images), args.batch_size), desc="locate", unit="batch"):
            predictions += locator.locate(images[start:start + args.batch_size], k=args.k, method=args.method,
                                          aggregation=args.aggregation, head=args.head, top_cells=args.top_cells,
                                          unsure_below=args.unsure_below, batch_size=args.batch_size)
    out = Path(args.out)
    if out.suffix.lower() in (".geojson", ".json"):
        write_predictions_geojson(out, predictions)
    else:
        write_predictions_csv(out, predictions)
    if args.map:
        from locator.map_html import write_map
        matched = {p.image: truth.get(p.image) or truth.get(Path(p.image).name) for p in predictions}
        write_map(args.map, predictions, {k: v for k, v in matched.items() if v}, title=args.title or "geoloc locate")
    failed = sum(not p.ok for p in predictions)
    print(f"locate: {len(predictions)} photos, {failed} unreadable, method {args.method} "
          f"({args.aggregation}, K={args.k}) -> {out}" + (f", map {args.map}" if args.map else ""))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    if args.bundle:
        return _evaluate_bundle(args)
    if not (args.predictions and args.truth):
        raise DatasetError("give --predictions and --truth, or --bundle and --benchmark")
    truth = read_dataset(args.truth, images_dir=args.images)
    predictions = read_predictions_csv(args.predictions)
    pred_lat, pred_lon, unmatched = align(predictions, truth)
    if unmatched:
        print(f"warning: {len(unmatched)} prediction(s) match no image of {args.truth} "
              f"(first: {unmatched[0]}); they are ignored", file=sys.stderr)
    metrics = geolocation_metrics([r.lat for r in truth], [r.lon for r in truth], pred_lat, pred_lon,
                                  name=Path(args.predictions).name)
    print(markdown_table([metrics]), end="")
    out = Path(args.json) if args.json else Path(args.predictions).with_suffix(".metrics.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(metrics_json([metrics]) + "\n")
    print(f"{metrics.images} images, {metrics.failed} without a prediction (counted as misses); JSON: {out}")
    return 0


def _evaluate_bundle(args: argparse.Namespace) -> int:
    from locator.evaluation import evaluate
    if not args.benchmark:
        raise DatasetError("--bundle needs --benchmark (manifest CSV, benchmark CSV or EXIF folder)")
    records = read_dataset(args.benchmark, images_dir=args.images)
    with Locator.load(args.bundle, store=args.store, raw_features=args.raw_features) as locator:
        rows = evaluate(locator, records, batch_size=args.batch_size)
    table = markdown_table(rows)
    header = (f"Benchmark `{Path(args.benchmark).name}`: {len(records)} images, {rows[0].failed} could not be read "
              f"(misses in every row). Accuracy in % (strict <), errors in km.\n\n")
    print(header + table, end="")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text((args.title + "\n\n" if args.title else "") + header + table)
    out = Path(args.json) if args.json else Path(args.markdown or "evaluation.md").with_suffix(".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(metrics_json(rows) + "\n")
    print(f"evaluate: {len(rows)} rows over {len(records)} images -> {args.markdown or '(stdout)'}, {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geoloc", description="Estimate where photos were taken, and evaluate.")
    commands = parser.add_subparsers(dest="command", required=True)

    locate = commands.add_parser("locate", help="predict where photos were taken, with the evidence")
    locate.add_argument("photos", nargs="+", help="photo files, folders, or dataset CSVs (their truth goes on the map)")
    locate.add_argument("--bundle", required=True, type=Path)
    locate.add_argument("--store", default=None, help="edge:/path or http://host:6333[/collection] (default $GEOLOC_STORE)")
    locate.add_argument("--out", default="predictions.csv", help="predictions .csv or .geojson")
    locate.add_argument("--map", default=None, help="also write a self-contained HTML map")
    locate.add_argument("--truth", default=None, help="ground truth (any dataset format) to show on the map")
    locate.add_argument("--images", default=None, help="folder that benchmark IMG_IDs in --truth are relative to")
    locate.add_argument("--title", default=None)
    _add_method_arguments(locate)
    locate.set_defaults(run=_locate)

    evaluate = commands.add_parser("evaluate", help="Acc@km tables: of a predictions CSV, or of a bundle on a benchmark")
    evaluate.add_argument("--predictions", help="CSV with columns image,lat,lon (degrees)")
    evaluate.add_argument("--truth", help="manifest CSV, benchmark CSV (IMG_ID,AUTHOR,LAT,LON,…) or EXIF folder")
    evaluate.add_argument("--bundle", type=Path, help="evaluate this bundle on --benchmark (all the paper's rows)")
    evaluate.add_argument("--benchmark", help="benchmark images with ground truth, any dataset format")
    evaluate.add_argument("--images", help="folder that benchmark IMG_IDs are relative to")
    evaluate.add_argument("--store", default=None)
    evaluate.add_argument("--raw-features", default=None, help="feature cache of the background photos (raw ablation)")
    evaluate.add_argument("--batch-size", type=int, default=16)
    evaluate.add_argument("--markdown", help="write the table here too")
    evaluate.add_argument("--title", default="", help="heading for the markdown file")
    evaluate.add_argument("--json", help="where to write the metrics JSON")
    evaluate.set_defaults(run=_evaluate)
    return parser


def _add_method_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=METHODS, default="swc")
    parser.add_argument("--aggregation", choices=["dbscan", "average", "kde", "nn"], default="dbscan")
    parser.add_argument("--k", type=int, default=10, help="neighbours to retrieve (default 10)")
    parser.add_argument("--head", choices=["ce", "hc", "mvmf"], default=None, help="default: the bundle's")
    parser.add_argument("--top-cells", type=int, default=1, help="search the n most probable cells together")
    parser.add_argument("--unsure-below", type=float, default=None,
                        help="with --top-cells: widen only when the best cell's probability is below this or it is sparse")
    parser.add_argument("--raw-features", default=None, help="feature cache of the background photos (--method raw)")
    parser.add_argument("--batch-size", type=int, default=16)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (DatasetError, CoordinateError, BundleError, BackboneError, StoreError, FeatureCacheError, ValueError,
            OSError) as exc:
        print(f"geoloc {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
