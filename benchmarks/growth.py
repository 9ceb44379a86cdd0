"""Benchmark: does growing the collection pay off? Every locate method before and after adding reference photos.

Scenario (issue #10): the im2gps2k demo run (`GEOLOC_DATA=../shared/datasets/im2gps2k/manifest.csv make demo`,
a bundle trained on 1,555 Flickr photos) grows with 560 reference photos from `shared/datasets/extra`, and 164
other photos of the same sources are located:

- Croatian Street View: headings 90 / 180 / 270 of 100 places are references, heading 0 the queries (100);
- Penn campus: 80 references, 20 queries; the traveller's phone photos: 180 references, 44 queries (queries drawn
  with a fixed seed).

The run's store is copied, so the run itself stays as it was. The references go in through the real Ray ingest.

    python benchmarks/growth.py --run runs/im2gps2k [--extra ../shared/datasets/extra]

Writes benchmarks/results/growth.json and growth.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from ingest.pipeline import run_ingest
from ingest.settings import IngestSettings
from ingest.sources import IngestSource
from locator.api import Locator
from locator.bundle import Bundle
from locator.datasets import Record, read_manifest
from locator.evaluation import encode_all, errors_km
from locator.metrics import geolocation_metrics, reliability
from locator.significance import LEVEL, RESAMPLES, Difference, difference_markdown, paired_bootstrap
from training.cli import main as geoloc_train

RESULTS = Path(__file__).parent / "results"
THRESHOLDS = (1.0, 25.0, 200.0, 750.0, 2500.0)
METHODS = {"classifier (cell centre)": {"method": "classifier"},
           "SwC (the paper)": {"method": "swc"},
           "SwC over the 5 most probable cells": {"method": "swc", "top_cells": 5},
           "global retrieval": {"method": "retrieval"},
           "fused (default)": {"method": "fused"}}
REFIT = "fused, refit on the grown collection (`geoloc-train fusion --store`)"
QUERY_COUNTS = {"penn_campus_whuang06": 20, "travel_photos_losandos": 44}


def split_extra(extra: Path, seed: int = 0) -> tuple[list[Record], list[Record]]:
    """(references, queries) of the scenario."""
    records = [r for r in read_manifest(extra / "manifest.csv") if r.source in ("croatia_gsv_ciglenecki", *QUERY_COUNTS)]
    references, queries = [], []
    rng = np.random.default_rng(seed)
    for source, count in QUERY_COUNTS.items():
        mine = sorted((r for r in records if r.source == source), key=lambda r: r.image)
        chosen = set(rng.choice(len(mine), count, replace=False).tolist())
        queries += [r for k, r in enumerate(mine) if k in chosen]
        references += [r for k, r in enumerate(mine) if k not in chosen]
    for r in sorted((r for r in records if r.source == "croatia_gsv_ciglenecki"), key=lambda r: r.image):
        (queries if Path(r.image).stem.endswith("_0") else references).append(r)
    return references, queries


def write_manifest(path: Path, records: list[Record]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "photo_id", "owner", "source", "lat", "lon"])
        writer.writerows([r.image, r.photo_id, r.owner, r.source, repr(r.lat), repr(r.lon)] for r in records)
    return path


def refit_fusion(run: Path, work: Path, store: str) -> tuple[Path, float]:
    """A copy of the run's bundle whose fusion model is fitted again, now also on the added references."""
    shutil.copytree(run / "bundle", work / "bundle")
    start = time.perf_counter()
    code = geoloc_train(["fusion", "--bundle", str(work / "bundle"), "--features", str(run / "features" / "train"),
                         "--store", store])
    if code:
        raise SystemExit(f"geoloc-train fusion failed ({code})")
    return work / "bundle", time.perf_counter() - start


def evaluate_methods(bundle: Path, store: str, queries: list[Record], methods: dict | None = None) -> dict:
    with Locator.load(bundle, store=store) as locator:
        encoded = encode_all(locator, queries, progress=False)
        out = {}
        for name, settings in (methods or METHODS).items():
            predictions = locator.predict(encoded, evidence=False, **settings)
            errors = errors_km(queries, predictions)
            metrics = geolocation_metrics([r.lat for r in queries], [r.lon for r in queries],
                                          [p.lat if p.ok else np.nan for p in predictions],
                                          [p.lon if p.ok else np.nan for p in predictions], name=name)
            out[name] = {"accuracy": {f"{t:g} km": metrics.accuracy[f"{t:g} km"] for t in THRESHOLDS},
                         "median_km": metrics.median_km, "errors_km": np.round(errors, 3).tolist()}
            if settings["method"] in ("fused", "swc"):
                rel = reliability(name, [p.confidence for p in predictions], errors,
                                  radius_km=[p.radius_km for p in predictions])
                out[name].update(ece=rel.ece, within_radius=rel.within_radius, reliability=rel.bins,
                                 by_source=by_source(queries, predictions, errors))
        return out


def by_source(queries: list[Record], predictions: list, errors: np.ndarray) -> dict:
    """Per source of the queries: photos, mean confidence and the share located within 25 km."""
    sources = np.array([q.source for q in queries])
    confidence = np.array([p.confidence for p in predictions], float)
    return {str(s): {"photos": int((sources == s).sum()), "mean_confidence": float(np.nanmean(confidence[sources == s])),
                     "share_within_25km": float(np.mean(np.asarray(errors)[sources == s] < 25.0))}
            for s in np.unique(sources)}


def heading_control(run: Path, refit: Path, references: list[Record], queries: list[Record], work: Path) -> dict:
    """Are heading-0 Street View views easier than the others? A collection grown without heading 90, and the
    refit bundle locating heading 0 and heading 90 of the same places, each with the same two other headings."""
    def croatian(records: list[Record], heading: str) -> list[Record]:
        return [r for r in records if r.source == "croatia_gsv_ciglenecki" and Path(r.image).stem.endswith(heading)]
    held = croatian(references, "_90")
    kept = [r for r in references if r not in held]
    shutil.copytree(run / "store", work / "control_store")
    store = f"edge:{work / 'control_store'}"
    run_ingest(run / "bundle", store, IngestSource(data=str(write_manifest(work / "control.csv", kept))),
               IngestSettings(progress=False))
    return {name: evaluate_methods(refit, store, photos, {REFIT: {"method": "fused"}})[REFIT]["by_source"]
            ["croatia_gsv_ciglenecki"] for name, photos in (("heading 0", croatian(queries, "_0")),
                                                             ("heading 90", held))}


def refit_vs_best(after: dict, queries: list[Record]) -> list[dict]:
    """The refit fused method against the better of SwC and retrieval, with a bootstrap interval over owners."""
    rivals = ["SwC (the paper)", "global retrieval"]
    errors = {name: np.array(after[name]["errors_km"], float) for name in (REFIT, *rivals)}
    return [d.to_json() for d in paired_bootstrap(errors, REFIT, rivals, [q.group for q in queries], THRESHOLDS)]


def markdown(result: dict) -> str:
    head = "| method | " + " | ".join(f"Acc@{t:g} km" for t in THRESHOLDS) + " | median km |"
    lines = [f"# Growth: {result['references']} references added, {result['queries']} other photos of the same "
             f"sources located", "", result["scenario"], "", f"Run: `{result['run']}`; ingest of the references: "
             f"{result['ingest_seconds']:.0f} s. Accuracy in % (strict <).", ""]
    for phase in ("before", "after"):
        lines += [f"## {phase.capitalize()} adding the references", "", head, "|---" * (len(THRESHOLDS) + 2) + "|"]
        for name, row in result[phase].items():
            cells = [f"{100 * row['accuracy'][f'{t:g} km']:.1f}" for t in THRESHOLDS]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {row['median_km']:,.1f} |")
        lines.append("")
        for name, row in result[phase].items():
            if "ece" in row:
                lines.append(f"- {name}: confidence's expected calibration error {row['ece']:.3f} (P(error < 25 km), "
                             f"10 bins); {100 * row['within_radius']:.1f}% of errors within `radius_km`.")
        lines.append("")
    lines += [f"The refit fused method against the better of SwC and retrieval: the difference in points, with a "
              f"{100 * LEVEL:g} % bootstrap interval ({result['query_owners']} owners resampled with their photos, {RESAMPLES:,} "
              "times; the Penn and travel queries are one owner each). An interval that holds 0 is a difference "
              f"these {result['queries']} photos cannot tell from chance.", "",
              difference_markdown([Difference(**d) for d in result["refit_vs_best"]], "refit fused")]
    lines += ["The refit's confidence on the added references themselves, each located against the rest of the "
              "collection (leave-one-out; scores out of fold by owner, the calibration map fitted on them pooled with "
              "the held-out training photos):", "",
              "| added references | photos | mean confidence | share within 25 km | calibration error |",
              "|---|---|---|---|---|"]
    lines += [f"| {name} | {v['photos']} | {v['mean_confidence']:.3f} | {v['share_within_25km']:.3f} | {v['ece']:.3f} |"
              for name, v in result["refit_added_references"].items()] + [""]
    lines += ["Control: the Croatian queries are all heading-0 views, the references headings 90/180/270. Here the "
              "collection is grown without heading 90, and heading-0 and heading-90 views of the same places (each "
              "with the same two other headings in the collection) are located with the refit bundle:", "",
              "| Croatian views located | photos | mean confidence | share within 25 km |", "|---|---|---|---|"]
    lines += [f"| {name} | {v['photos']} | {v['mean_confidence']:.3f} | {v['share_within_25km']:.3f} |"
              for name, v in result["heading_control"].items()] + [""]
    for name, row in result["after"].items():
        if name.startswith("fused"):
            lines += [f"Reliability after adding, {name}:", "", "| confidence | photos | mean confidence | "
                      "share within 25 km |", "|---|---|---|---|"]
            lines += [f"| {b['from']:.1f}–{b['to']:.1f} | {b['photos']} | {b['mean_confidence']:.3f} | "
                      f"{b['accuracy']:.3f} |" for b in row["reliability"] if b["photos"]] + [""]
            lines += ["| source | photos | mean confidence | share within 25 km |", "|---|---|---|---|"]
            lines += [f"| {source} | {v['photos']} | {v['mean_confidence']:.3f} | {v['share_within_25km']:.3f} |"
                      for source, v in row["by_source"].items()] + [""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/im2gps2k"), help="an im2gps2k demo run folder")
    shared = Path(os.environ.get("GEOLOC_SHARED", "../shared"))
    parser.add_argument("--extra", type=Path, default=shared / "datasets" / "extra")
    parser.add_argument("--work", type=Path, default=Path("runs/growth"))
    args = parser.parse_args()
    references, queries = split_extra(args.extra)
    if args.work.exists():
        shutil.rmtree(args.work)
    args.work.mkdir(parents=True)
    shutil.copytree(args.run / "store", args.work / "store")
    store = f"edge:{args.work / 'store'}"
    bundle = args.run / "bundle"
    before = evaluate_methods(bundle, store, queries)
    manifest = write_manifest(args.work / "references.csv", references)
    start = time.perf_counter()
    summary = run_ingest(bundle, store, IngestSource(data=str(manifest)), IngestSettings(progress=False))
    seconds = time.perf_counter() - start
    after = evaluate_methods(bundle, store, queries)
    refit, refit_seconds = refit_fusion(args.run, args.work, store)
    after[REFIT] = evaluate_methods(refit, store, queries, {REFIT: {"method": "fused"}})[REFIT]
    control = heading_control(args.run, refit, references, queries, args.work)
    calibrated_on = Bundle.load(refit).fusion.info["added_references"]
    result = {"run": str(args.run), "references": len(references), "queries": len(queries),
              "written": summary.written, "ingest_seconds": seconds, "refit_seconds": refit_seconds,
              "scenario": split_extra.__doc__ and __doc__.split("\n\n")[1].replace("\n", " "),
              "before": before, "after": after, "heading_control": control,
              "refit_added_references": calibrated_on, "query_owners": len({q.group for q in queries}),
              "refit_vs_best": refit_vs_best(after, queries)}
    for row in (*before.values(), *after.values()):
        del row["errors_km"]  # per-photo errors only feed the comparison
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "growth.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "growth.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
