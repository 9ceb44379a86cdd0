"""`geoloc-train`: builds partitions (and, as they land, features, heads, the RRM and model bundles)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from locator.cells import PartitionError
from locator.datasets import DatasetError
from training.coordinates import read_coordinates_csv, synthetic_coordinates, write_coordinates_csv
from training.partition import PartitionSettings, adaptive_partition


def _partition(args: argparse.Namespace) -> int:
    lat, lon = read_coordinates_csv(args.coords)
    settings = PartitionSettings(tau_max=args.tau_max, tau_min=args.tau_min, max_cells=args.max_cells,
                                 max_level=args.max_level)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geoloc-train", description="Train the geolocation models.")
    commands = parser.add_subparsers(dest="command", required=True)
    part = commands.add_parser("partition", help="adaptive S2 partition of photo coordinates (GeoEstimation CSV)")
    part.add_argument("--coords", required=True, help="CSV with LAT,LON or lat,lon columns (degrees)")
    part.add_argument("--tau-max", type=int, required=True, help="split cells holding more photos than this")
    part.add_argument("--tau-min", type=int, default=1, help="drop cells holding fewer photos than this")
    part.add_argument("--max-cells", type=int, default=None, help="stop splitting at this many cells")
    part.add_argument("--max-level", type=int, default=30, help="never split cells at this S2 level")
    part.add_argument("--out", required=True, type=Path, help="output partition CSV")
    part.set_defaults(run=_partition)
    sample = commands.add_parser("sample-coords", help="write a synthetic clustered coordinate sample")
    sample.add_argument("--n", type=int, default=100_000)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", required=True, type=Path)
    sample.set_defaults(run=_sample_coords)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (DatasetError, PartitionError, ValueError, OSError) as exc:
        print(f"geoloc-train {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
