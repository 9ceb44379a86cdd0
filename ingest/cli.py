"""`geoloc-ingest`: embed photos with a bundle and write them into the vector store (Ray Data pipeline)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ingest.pipeline import IngestSettings, run_ingest
from ingest.sources import list_rows
from locator.backbone import BackboneError
from locator.bundle import BundleError
from locator.datasets import DatasetError
from locator.store import StoreError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geoloc-ingest", description="Embed photos into the background collection.")
    parser.add_argument("--bundle", required=True, type=Path, help="model bundle directory")
    parser.add_argument("--store", default=None, help="edge:/path or http://host:6333[/collection] (default $GEOLOC_STORE)")
    parser.add_argument("--data", help="manifest CSV, benchmark CSV (IMG_ID,AUTHOR,LAT,LON,…) or EXIF-GPS folder")
    parser.add_argument("--images", help="folder that benchmark IMG_IDs are relative to")
    parser.add_argument("--mp16-shards", nargs="+", help="MP16 msgpack shards ({'id', 'image'} records)")
    parser.add_argument("--mp16-metadata", help="MP16 metadata CSV (IMG_ID,AUTHOR,LAT,LON,…)")
    parser.add_argument("--placeable", action="store_true",
                        help="keep only photos the classifier puts in their true cell (the paper's background set)")
    parser.add_argument("--head", choices=["ce", "hc", "mvmf"], help="head for --placeable (default: the bundle's)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--actors", type=int, default=None, help="embedding actors (default: one per GPU, else 1)")
    parser.add_argument("--address", default=None, help="join an existing Ray cluster (e.g. auto or ray://host:10001)")
    parser.add_argument("--object-store-mb", type=int, default=512)
    parser.add_argument("--rejects", type=Path, default=None, help="CSV of rejected photos (default beside the store)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rows = list_rows(args.data, args.images, args.mp16_shards, args.mp16_metadata)
        settings = IngestSettings(placeable_only=args.placeable, placeable_head=args.head, batch_size=args.batch_size,
                                  actors=args.actors, address=args.address, object_store_mb=args.object_store_mb,
                                  rejects=args.rejects)
        summary = run_ingest(args.bundle, args.store, rows, settings)
    except (DatasetError, BundleError, BackboneError, StoreError, ValueError, OSError) as exc:
        print(f"geoloc-ingest: error: {exc}", file=sys.stderr)
        return 2
    print(summary.line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
