"""Benchmark: the searches of the fused model's fitting at MP16 scale, in bounded memory.

`geoloc-train fusion` locates held-out training photos against the others, fold by fold: a head and an RRM are
retrained on the other folds, and each held-out photo is searched exactly within its best cell, within its best 5
cells and in the whole reference set (`training/reference_index.py`). This measures that search at the paper's
scale, on `train_scale.py`'s synthetic MP16-shaped cache (4,723,695 rows × 1,792 float16, 16.9 GB; built if
absent): the references are 70 % of the rows (about the placeable share), the queries 1,000 other rows (one
fold's share of the default 5,000 held-out photos), the embeddings the raw features ℓ2-normalised. The cells
searched are each query's true fine cell, then four others at random: the classifier's ranking does not change
the cost. In its own process, which reports its peak resident memory.

    python benchmarks/fusion_scale.py [--work runs/train_scale] [--queries 1000]

Writes benchmarks/results/fusion_scale.json and fusion_scale.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from locator.cells import Partition
from train_scale import build_cache, shared_meta

RESULTS = Path(__file__).parent / "results"
STAGE = """
import json, sys, time
import numpy as np
from locator.cells import Partition
from locator.feature_cache import FeatureCache
from locator.rrm import embed
from training.batches import TrainingRows
from training.reference_index import ReferenceIndex
work, queries_n, fine_csv = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = TrainingRows.from_cache(FeatureCache.open(work))
cells = Partition.read_csv(fine_csv).lookup(data.lat, data.lon)
rng = np.random.default_rng(0)
is_ref = rng.random(len(data)) < 0.7
refs = np.flatnonzero(is_ref)
queries = np.sort(rng.choice(np.flatnonzero(~is_ref), queries_n, replace=False))
result = {"references": len(refs), "queries": len(queries)}
start = time.perf_counter()
index = ReferenceIndex.build(lambda rows: embed(None, data.gather(rows).astype(np.float32)), refs, data.dim,
                             data.lat[refs], data.lon[refs], cells[refs])
result["build_seconds"] = time.perf_counter() - start
result["index_gb"] = len(index) * index.dim * 2 / 1e9
result["index_on_disk"] = index.folder is not None
x = embed(None, data.gather(queries).astype(np.float32))
top = [np.concatenate([[c], rng.integers(0, cells.max() + 1, 4)]) for c in cells[queries]]
for name, allowed in (("within best cell", [t[:1] for t in top]), ("within best 5 cells", top), ("global", None)):
    start = time.perf_counter()
    ids, scores, _, _ = index.search(x, allowed, 10)
    result[name] = {"seconds": time.perf_counter() - start, "found_per_query": float((ids >= 0).sum(1).mean())}
index.close()
status = open("/proc/self/status").read()
result["peak_rss_mb"] = int(status.split("VmHWM:")[1].split()[0]) / 1024
print("RESULT", json.dumps(result))
"""


def markdown(report: dict) -> str:
    lines = ["# The fused model's fitting searches at MP16 scale\n",
             f"{report['references']:,} references of a {report['rows']:,}-row synthetic MP16-shaped cache (1,792 "
             f"float16 features), {report['queries']:,} held-out queries, top 10, on {report['cpu_count']} CPU cores. "
             f"Index: {report['index_gb']:.1f} GB of float16 embeddings sorted by cell, "
             f"{'in a file on disk, read a block at a time' if report['index_on_disk'] else 'in memory'}, built in "
             f"{report['build_seconds']:.0f} s. Peak resident memory of the whole stage: "
             f"**{report['peak_rss_mb']:,.0f} MB**.\n",
             "| search | seconds for all queries | references found per query |", "|---|---|---|"]
    lines += [f"| {name} | {report[name]['seconds']:.1f} | {report[name]['found_per_query']:.1f} |"
              for name in ("within best cell", "within best 5 cells", "global")]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/train_scale"))
    parser.add_argument("--rows", type=int, default=4_723_695)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON and markdown go")
    args = parser.parse_args()
    partition_files = [shared_meta() / f"cells_50_{t}.csv" for t in (5000, 2000, 1000)]
    build_cache(args.work / "cache", args.rows, [Partition.read_csv(p) for p in partition_files])
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", STAGE, str(args.work / "cache"), str(args.queries),
                           str(partition_files[-1])], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the search stage failed:\n{done.stderr[-3000:]}")
    report = {"rows": args.rows, "cpu_count": os.cpu_count(), "seconds": time.perf_counter() - start,
              **json.loads(done.stdout.split("RESULT", 1)[1])}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "fusion_scale.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.results / "fusion_scale.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
