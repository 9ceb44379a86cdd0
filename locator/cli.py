"""`geoloc`: the locator's command line (evaluate now; locate arrives with the search-within-cell pipeline)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from locator.datasets import DatasetError, read_dataset
from locator.geo import CoordinateError
from locator.metrics import geolocation_metrics, markdown_table, metrics_json
from locator.predictions import align, read_predictions_csv


def _evaluate(args: argparse.Namespace) -> int:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geoloc", description="Estimate where photos were taken, and evaluate.")
    commands = parser.add_subparsers(dest="command", required=True)
    evaluate = commands.add_parser("evaluate", help="Acc@km, median and mean error of a predictions CSV")
    evaluate.add_argument("--predictions", required=True, help="CSV with columns image,lat,lon (degrees)")
    evaluate.add_argument("--truth", required=True, help="manifest CSV, benchmark CSV (IMG_ID,AUTHOR,LAT,LON,…) or EXIF folder")
    evaluate.add_argument("--images", help="folder that benchmark IMG_IDs are relative to")
    evaluate.add_argument("--json", help="where to write the metrics JSON (default: beside the predictions)")
    evaluate.set_defaults(run=_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (DatasetError, CoordinateError, OSError) as exc:
        print(f"geoloc {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
