"""`geoloc-ingest`: embed photos with a bundle and write them into the vector store (Ray Data pipeline).

Ray and torch load only once the command runs; only GeolocError becomes a one-line message (exit 2).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ingest.settings import IngestSettings
from ingest.sources import IngestSource
from locator.errors import GeolocError
from locator.settings import add_arguments, from_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geoloc-ingest", description="Embed photos into the background collection.")
    parser.add_argument("--bundle", required=True, type=Path, help="model bundle folder")
    parser.add_argument("--store", default=None, help="edge:DIR or http://host:6333/collection (default: $GEOLOC_STORE)")
    add_arguments(parser, IngestSource)
    parser.add_argument("--mp16-shards", nargs="+", default=(), help="MP16 msgpack shards ({'id', 'image'} records)")
    parser.add_argument("--placeable", dest="placeable_only", action="store_true", default=None,
                        help="same as --placeable-only")
    add_arguments(parser, IngestSettings)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    store = args.store or os.environ.get("GEOLOC_STORE") or None
    try:
        settings = from_args(IngestSettings, args)
        source = from_args(IngestSource, args, mp16_shards=tuple(args.mp16_shards))
        source.check()
        from ingest.pipeline import run_ingest
        summary = run_ingest(args.bundle, store, source, settings)
    except GeolocError as exc:
        print(f"geoloc-ingest: error: {exc}", file=sys.stderr)
        return 2
    print(summary.line())
    _refit_hint(args.bundle, store, summary.written_sources)
    return 0


def _refit_hint(bundle_dir: Path, store: str | None, written_sources: dict[str, int]) -> None:
    from locator.bundle_config import BundleConfig
    unfitted = BundleConfig.load(bundle_dir).fusion_unfitted_sources(written_sources)
    if unfitted:
        print(f"geoloc-ingest: the fused model (the default method) was fitted without photos from "
              f"{', '.join(unfitted)}; refit it so that it trusts them: geoloc-train fusion --bundle {bundle_dir} "
              f"--features <the bundle's training feature cache> --store {store or '$GEOLOC_STORE'}")


if __name__ == "__main__":
    sys.exit(main())
