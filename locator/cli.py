"""`geoloc`: locate photos, evaluate (a predictions file, or a bundle on a benchmark), serve, and take reference
photos out of a collection.

Heavy libraries (torch, timm, sklearn) load only once a command runs, so `--help` answers at once. Only
GeolocError becomes a one-line message (exit 2); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from pathlib import Path

from locator.datasets import IMAGE_SUFFIXES, DatasetError, read_dataset
from locator.errors import GeolocError, OutputError, SettingsError, StoreError
from locator.methods import STORE_METHODS, LocateSettings
from locator.predictions import Prediction
from locator.service.settings import ServiceSettings
from locator.settings import add_arguments, from_args

_CSV_COLUMNS = ["image", "lat", "lon", "ok", "error", "method", "cell_token", "cell_probability", "cluster_size",
                "radius_km", "confidence", "nearest_photo_id", "nearest_similarity", "note", "exif_lat", "exif_lon",
                "exif_distance_km"]
OUT_SUFFIXES = (".csv", ".geojson", ".json")
MAP_SUFFIXES = (".html", ".htm")
SHOWN_FAILURES = 5
PROGRESS_CHUNK = 256
EXIT_ERROR, EXIT_NONE_LOCATED = 2, 1


def _expand(paths: list[str], images_dir: str | None) -> tuple[list[str], dict[str, tuple[float, float]]]:
    """Photo paths from files, folders and dataset CSVs; the CSVs also give ground truth for the map."""
    out, truth = [], {}
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                raise DatasetError(f"{path}: the folder holds no images (looked for "
                                   f"{', '.join(sorted(IMAGE_SUFFIXES))}, in subfolders too)")
            out += found
        elif path.suffix.lower() == ".csv":
            records = read_dataset(path, images_dir=images_dir)
            if not records:
                raise DatasetError(f"{path}: the dataset lists no photos")
            out += [r.image for r in records]
            truth.update({r.image: (r.lat, r.lon) for r in records})
        else:
            out.append(item)
    return out, truth


def _number(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6f}"


def predictions_csv(predictions: list[Prediction], handle: io.TextIOBase) -> None:
    writer = csv.writer(handle)
    writer.writerow(_CSV_COLUMNS)
    for p in predictions:
        top = p.neighbours[0] if p.neighbours else None
        writer.writerow([p.image, _number(p.lat), _number(p.lon), int(p.ok), p.error, p.method, p.cell_token,
                         _number(p.cell_probability), p.cluster_size, _number(p.radius_km), _number(p.confidence),
                         top.photo_id if top else "", _number(top.similarity) if top else "", p.note,
                         _number(p.exif_lat), _number(p.exif_lon), _number(p.exif_distance_km)])


def _json_safe(value: object) -> object:
    """NaN (a failed photo's lat, probability, radius…) becomes null: GeoJSON is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def predictions_geojson(predictions: list[Prediction]) -> str:
    features = []
    for p in predictions:
        properties = {k: v for k, v in vars(p).items() if k not in ("lat", "lon", "neighbours")}
        properties["neighbours"] = [vars(n) for n in p.neighbours]
        geometry = None if not p.ok or math.isnan(p.lat) else {"type": "Point", "coordinates": [p.lon, p.lat]}
        features.append({"type": "Feature", "geometry": geometry, "properties": properties})
    return json.dumps(_json_safe({"type": "FeatureCollection", "features": features}), indent=1, allow_nan=False)


def write_predictions(path: Path | None, predictions: list[Prediction]) -> None:
    """To `path` (.csv, or .geojson / .json), or as CSV on stdout when no path is given."""
    if path is None:
        predictions_csv(predictions, sys.stdout)
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".csv":
            with path.open("w", newline="") as handle:
                predictions_csv(predictions, handle)
        else:
            path.write_text(predictions_geojson(predictions))
    except OSError as exc:
        raise OutputError(f"{path}: cannot write predictions ({exc.strerror or exc})") from exc


def _output(value: str | None, suffixes: tuple[str, ...], option: str) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if path.suffix.lower() not in suffixes:
        raise SettingsError(f"{option} {value}: unknown file type {path.suffix or '(no suffix)'!r}; "
                            f"use {' or '.join(suffixes)}")
    if path.is_dir():
        raise SettingsError(f"{option} {value}: is a folder; give a file name")
    return path


def report_failures(predictions: list[Prediction]) -> None:
    failed = [p for p in predictions if not p.ok]
    if not failed:
        return
    print(f"geoloc locate: {len(failed)} of {len(predictions)} photo(s) could not be located:", file=sys.stderr)
    for p in failed[:SHOWN_FAILURES]:
        print(f"  {p.error}", file=sys.stderr)
    if len(failed) > SHOWN_FAILURES:
        print(f"  … and {len(failed) - SHOWN_FAILURES} more (each reason is in the output's error column)",
              file=sys.stderr)


def _check_sources(args: argparse.Namespace, settings: LocateSettings) -> None:
    """Before any work: the store or feature cache that the method needs."""
    if settings.method in STORE_METHODS and not args.store:
        raise SettingsError(f"--method {settings.method} searches the reference collection: give --store "
                            "(edge:DIR for an embedded store, http://host:6333/collection for a Qdrant server) "
                            "or set GEOLOC_STORE")
    if settings.method == "raw" and not args.raw_features:
        raise SettingsError("--method raw needs --raw-features (a feature cache of the background photos)")


def _locate(args: argparse.Namespace) -> int:
    out, map_path = _output(args.out, OUT_SUFFIXES, "--out"), _output(args.map, MAP_SUFFIXES, "--map")
    settings = from_args(LocateSettings, args)
    _check_sources(args, settings)
    images, truth = _expand(args.photos, args.images)
    if not images:
        raise DatasetError("no photos given")
    if args.truth:
        truth.update({r.image: (r.lat, r.lon) for r in read_dataset(args.truth, images_dir=args.images)})
    truth.update({str(Path(k).name): v for k, v in list(truth.items())})
    from tqdm import tqdm

    from locator.api import Locator
    with Locator.load(args.bundle, store=args.store, raw_features=args.raw_features) as locator:
        predictions: list[Prediction] = []
        with tqdm(total=len(images), desc="locate", unit="photo", file=sys.stderr) as bar:
            for start in range(0, len(images), PROGRESS_CHUNK):
                predictions += locator.locate(images[start:start + PROGRESS_CHUNK], settings, args.batch_size)
                bar.update(len(images[start:start + PROGRESS_CHUNK]))
    write_predictions(out, predictions)
    if map_path:
        from locator.map_html import write_map
        matched = {p.image: truth.get(p.image) or truth.get(Path(p.image).name) for p in predictions}
        write_map(map_path, predictions, {k: v for k, v in matched.items() if v}, title=args.title or "geoloc locate")
    report_failures(predictions)
    located = sum(p.ok for p in predictions)
    print(f"geoloc locate: {located} of {len(predictions)} photo(s) located, method {settings.method} "
          f"({settings.aggregation}, K={settings.k}) -> {out or 'stdout'}" + (f", map {map_path}" if map_path else ""),
          file=sys.stderr)
    return 0 if located else EXIT_NONE_LOCATED


def _evaluate(args: argparse.Namespace) -> int:
    if args.bundle:
        return _evaluate_bundle(args)
    if not (args.predictions and args.truth):
        raise SettingsError("give --predictions and --truth, or --bundle and --benchmark")
    from locator.metrics import geolocation_metrics, markdown_table, metrics_json
    from locator.predictions import align, read_predictions_csv
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
    _write_text(out, metrics_json([metrics]) + "\n")
    print(f"{metrics.images} images, {metrics.failed} without a prediction (counted as misses); JSON: {out}")
    return 0


def _write_text(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from exc


def _evaluate_bundle(args: argparse.Namespace) -> int:
    if not args.benchmark:
        raise SettingsError("--bundle needs --benchmark (manifest CSV, benchmark CSV or EXIF folder)")
    from locator.api import Locator
    from locator.evaluation import evaluate
    from locator.metrics import markdown_table, metrics_json, reliability_markdown
    records = read_dataset(args.benchmark, images_dir=args.images)
    with Locator.load(args.bundle, store=args.store, raw_features=args.raw_features) as locator:
        result = evaluate(locator, records, batch_size=args.batch_size)
    rows = result.rows
    table = markdown_table(rows) + _comparison_markdown(result.fused_vs_best, records) + "".join(
        "\n" + reliability_markdown(r) for r in result.reliability)
    header = (f"Benchmark `{Path(args.benchmark).name}`: {len(records)} images, {rows[0].failed} could not be read "
              f"(misses in every row). Accuracy in % (strict <), errors in km.\n\n")
    print(header + table, end="")
    if args.markdown:
        _write_text(Path(args.markdown), (args.title + "\n\n" if args.title else "") + header + table)
    out = Path(args.json) if args.json else Path(args.markdown or "evaluation.md").with_suffix(".json")
    extra = {"fused_vs_best_rival": [d.to_json() for d in result.fused_vs_best]} if result.fused_vs_best else None
    _write_text(out, metrics_json(rows, result.reliability, extra) + "\n")
    print(f"evaluate: {len(rows)} rows over {len(records)} images -> {args.markdown or '(stdout)'}, {out}")
    return 0


def _comparison_markdown(differences: list, records: list) -> str:
    if not differences:
        return ""
    from locator.significance import LEVEL, RESAMPLES, difference_markdown
    owners = len({r.group for r in records})
    return (f"\nFused against the better of the methods `swc` and `retrieval` as they run by default, at each "
            f"threshold: the difference in points, with a {100 * LEVEL:g} % bootstrap interval ({owners:,} owners "
            f"resampled with their photos, {RESAMPLES:,} times). An interval that holds 0 is a difference this "
            f"benchmark cannot tell from chance.\n\n" + difference_markdown(differences, "fused"))


def _warm_up(collection, largest_batch: int) -> None:
    from tqdm import tqdm

    shapes, sizes = collection.locator.encoder.warm_up_plan(largest_batch)
    with tqdm(total=len(shapes) * len(sizes), desc="warm-up: shapes x batch sizes", file=sys.stderr) as bar:
        running = collection.worker.submit(collection.warm_up, largest_batch, bar.update)
        try:
            done = running.result()
        except KeyboardInterrupt:  # stop the worker too, so that closing does not wait for the whole warm-up
            collection.stop_warm_up.set()
            raise
    print(f"warm-up: {done['shapes']} shapes at batch sizes {done['batch_sizes']}, then one photo located by "
          f"{done['method']}: {done['seconds']} s", file=sys.stderr, flush=True)


def _serve(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("GEOLOC_TOKEN")
    settings = from_args(ServiceSettings, args, token=token)
    location = args.store
    if not location:
        raise SettingsError("geoloc serve needs the collection: give --store (edge:DIR, or http://host:6333/collection "
                            "for a Qdrant server, where several replicas can serve side by side) or set GEOLOC_STORE")
    import uvicorn

    from locator.service.app import create_app
    from locator.service.collection import ServedCollection
    collection = ServedCollection.load(args.bundle, location, Path(settings.uploads) if settings.uploads else None)
    app = create_app(collection, settings)
    try:
        if settings.warm_up:  # a request of more photos than --max-batch is a batch of its own
            _warm_up(collection, max(settings.max_batch, settings.max_photos))
        points = collection.worker.submit(collection.count).result()
        print(f"geoloc serve: http://{settings.host}:{settings.port}/ — bundle {args.bundle}, "
              f"{collection.store.location} ({points:,} points); writes "
              f"{'need the token' if settings.token else 'are open'}", file=sys.stderr, flush=True)
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
    finally:
        collection.close()
    return 0


def _remove(args: argparse.Namespace) -> int:
    """Named photos of one source, or all of it, out of the collection: all of them or, if one is missing, none."""
    if bool(args.photo_id) == args.all_of_source:
        raise SettingsError("name the photos to remove with --photo-id, or give --all-of-source (not both)")
    from locator.bundle import Bundle
    from locator.store import open_store, point_id
    spec = Bundle.load(args.bundle).collection_spec()
    with open_store(args.store, spec, create=False) as store:
        if args.all_of_source:
            ids = [int(i) for i in store.all_ids(source=args.source)]
            if not ids:
                raise StoreError(f"{store.location} holds no photos of source {args.source!r}")
        else:
            wanted = {point_id(args.source, photo): photo for photo in args.photo_id}
            present = store.payloads(list(wanted))
            missing = [photo for i, photo in wanted.items() if i not in present]
            if missing:
                raise StoreError(f"{store.location} holds no photo {', '.join(map(repr, missing))} of source "
                                 f"{args.source!r}; nothing removed")
            ids = list(wanted)
        removed = store.remove(ids)
        store.flush()
        remain = store.count()
    print(f"removed {len(removed):,} photo(s) of source {args.source!r} from {args.store}; {remain:,} remain")
    return 0


def _bundle_and_store(command: argparse.ArgumentParser) -> None:
    command.add_argument("--bundle", required=True, type=Path, help="model bundle folder (from geoloc-train)")
    command.add_argument("--store", default=None, help="edge:DIR or http://host:6333/collection (default: "
                                                        "$GEOLOC_STORE)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geoloc", description="Estimate where photos were taken, and evaluate.")
    commands = parser.add_subparsers(dest="command", required=True)

    locate = commands.add_parser(
        "locate", help="predict where photos were taken, with the evidence",
        description="Predict where photos were taken. Results go to --out, or as CSV to stdout; messages and the "
                    "progress bar go to stderr. Exit status: 0 when at least one photo was located, 1 when none "
                    "could be, 2 for an error in the input or options.")
    locate.add_argument("photos", nargs="+", help="photo files, folders (searched recursively), or dataset CSVs "
                                                  "(their ground truth goes on the map)")
    locate.add_argument("--bundle", required=True, type=Path, help="model bundle folder (from geoloc-train)")
    locate.add_argument("--store", default=None, help="reference collection: edge:DIR or http://host:6333/collection "
                                                      "(default: $GEOLOC_STORE)")
    locate.add_argument("--out", default=None, help="write predictions to this .csv or .geojson file, replacing it "
                                                    "(default: CSV on stdout)")
    locate.add_argument("--map", default=None, help="also write a self-contained HTML map (.html)")
    locate.add_argument("--truth", default=None, help="ground truth (any dataset format) to show on the map")
    locate.add_argument("--images", default=None, help="folder that benchmark IMG_IDs are relative to")
    locate.add_argument("--title", default=None, help="title of the map page (default: geoloc locate)")
    add_arguments(locate, LocateSettings)
    locate.add_argument("--raw-features", default=None, help="feature cache of the background photos (--method raw)")
    locate.add_argument("--batch-size", type=int, default=None,
                        help="photos of one shape through the backbone together (default: 128 on a GPU, 4 on a CPU)")
    locate.set_defaults(run=_locate)

    evaluate = commands.add_parser("evaluate", help="Acc@km tables: of a predictions CSV, or of a bundle on a benchmark")
    evaluate.add_argument("--predictions", help="CSV with columns image,lat,lon (degrees)")
    evaluate.add_argument("--truth", help="manifest CSV, benchmark CSV (IMG_ID,AUTHOR,LAT,LON,…) or EXIF folder")
    evaluate.add_argument("--bundle", type=Path, help="evaluate this bundle on --benchmark (all the paper's rows)")
    evaluate.add_argument("--benchmark", help="benchmark images with ground truth, any dataset format")
    evaluate.add_argument("--images", help="folder that benchmark IMG_IDs are relative to")
    evaluate.add_argument("--store", default=None, help="reference collection (default: $GEOLOC_STORE)")
    evaluate.add_argument("--raw-features", default=None, help="feature cache of the background photos (raw ablation)")
    evaluate.add_argument("--batch-size", type=int, default=None,
                          help="photos of one shape through the backbone together (default: 128 on a GPU, 4 on a CPU)")
    evaluate.add_argument("--markdown", help="write the table here too")
    evaluate.add_argument("--title", default="", help="heading for the markdown file")
    evaluate.add_argument("--json", help="where to write the metrics JSON (default: beside --markdown or --predictions)")
    evaluate.set_defaults(run=_evaluate)

    serve = commands.add_parser("serve", help="a locate service with a web page, whose collection grows while it serves",
                                description="Serve the locator over HTTP (API under /v1, the page at /, metrics at "
                                            "/metrics). Only the environment variables GEOLOC_STORE and GEOLOC_TOKEN "
                                            "are read.")
    _bundle_and_store(serve)
    add_arguments(serve, ServiceSettings)
    serve.set_defaults(run=_serve)

    remove = commands.add_parser("remove", help="take reference photos out of a collection (e.g. misattributed ones)",
                                 description="Remove reference photos, named by source and photo id as at ingest, "
                                             "from the collection. If one of them is not there, nothing is removed. "
                                             "The photo files themselves are left where they are. Each removal is "
                                             "recorded in the collection's ledger of removals: ingesting a manifest "
                                             "that still lists the photo leaves it out (geoloc-ingest "
                                             "--include-removed adds it back).")
    _bundle_and_store(remove)
    remove.add_argument("--source", required=True, help="the photos' source, as at ingest (see /v1/health's sources)")
    remove.add_argument("--photo-id", nargs="+", default=[], help="photo ids to remove")
    remove.add_argument("--all-of-source", action="store_true", help="remove every photo of --source")
    remove.set_defaults(run=_remove)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "store"):
        args.store = args.store or os.environ.get("GEOLOC_STORE") or None
    try:
        return args.run(args)
    except GeolocError as exc:
        print(f"geoloc {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
