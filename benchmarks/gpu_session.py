"""One lent GPU session's measurements (issues #9 and #11), in one command, prepared and run on the CPU first.

The GPU machine has torch, timm, numpy, scikit-learn, scipy, pillow, msgpack, safetensors and tqdm, and what
`bash ../shared/tools/gpu-carry.sh N` carries in `.gpu/` (Qdrant Edge, s2sphere, the Lite0 weights and N
im2gps2k photos), but not Ray, FastAPI or the im2gps2k demo run. So this measures what needs none of them:

1. `features.py` on the carried photos: the feature cache's photos/s, bucketed and at the exact aspect, and the
   network alone on uniform tensors (on a GPU: the photos four times over, timed after a first pass over the
   same stream in which cuDNN plans each shape and batch size; the exact aspect on 16 photos only);
2. a small bundle built from the carried photos by the usual `geoloc-train` stages (split, hierarchy, bundle,
   features, the ce head, the RRM, the fused model);
3. ingest's own stages (`decode_batch` → `Embedder` → `WriterStage`) called without Ray: decoding on a thread
   pool, a batch ahead of the embedding, one writer into Qdrant Edge. The training split's photos go in
   `--repeat` times, each copy under its own photo id, decoded and embedded first as a warm-up (in which cuDNN
   plans each shape and batch size; short runs measured mostly that), then again, timed, and written: photos/s
   for one GPU. Ray would decode
   in processes on every CPU instead; the embedding on the GPU is the same;
4. `locate.py` on the held-out photos against that collection: ms per photo by stage at batch 1 and 64; then
   `locate_profile.py`: the busiest operators of batch-1 locates, and the backbone at batch 1 under autocast
   against a float16 copy (is converting it once worth it?);
5. backbone fine-tuning read from MP16-format msgpack shards of the training photos: photos/s on one device,
   loader start-up included (one GPU: DDP's scaling across GPUs needs a machine with several);
6. with `--train-scale`: `train_scale.py` at its full 4.7 M rows, the heads at batch 1024
   (`--train-scale-batch-size`; needs ~17 GB of disk and about 3 minutes, and the MP16 coordinates and
   partitions of `shared/meta`: carry them, see below);
7. with `--serve` (run before step 5): `serve.py` on that bundle and store (`geoloc serve`, warmed up before it
   listens, under 1, 4 and 16 clients for 10 s each, 2 kill -9 trials). The GPU machine lacks FastAPI and
   uvicorn: download their wheels into `.gpu/whl` (below).

`--skip features locate_profile finetune` leaves out steps already measured.

A step that fails is recorded in `gpu_session.json` and the session goes on; every step's results are written
as soon as it ends.

    bash ../shared/tools/gpu-carry.sh 500
    mkdir -p .gpu/shared/meta && cp ../shared/meta/{mp16_coordinates_100k,cells_50_*}.csv .gpu/shared/meta/
    python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp -d .gpu/whl \
        --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 fastapi uvicorn python-multipart  # --serve
    # on the GPU machine (device run, carry [".gpu"]):
    source .gpu/setup.sh && GEOLOC_SHARED=.gpu/shared python benchmarks/gpu_session.py --results "$OUT/results" \
        --repeat 20 --serve; tar czf "$OUT/results.tgz" -C "$OUT" results   # the tool returns at most 8 files
    # a second call (one command may run 10 minutes at most; the device time is 15 minutes in all):
    source .gpu/setup.sh && GEOLOC_SHARED=.gpu/shared python benchmarks/gpu_session.py --results "$OUT/results" \
        --photos .gpu/photos/manifest.csv --only-train-scale; tar czf "$OUT/results.tgz" -C "$OUT" results

On an H100 steps 1-5 took about 4 minutes and `train_scale.py` about 3 (2026-11-27); the warmed ingest pass
and `--serve` add about 2 more.

Every result names its device. Copy the files into `benchmarks/results/gpu/` and summarise them in the README.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
ROOT = HERE.parent
ARCH, SIZE = "tf_efficientnet_lite0", 300
SKIPPABLE = ("features", "locate_profile", "finetune")
PHOTO_WORK = ("split", "cells", "bundle", "features", "store", "serve_bench", "finetune", "rejects.csv")


def run(*command: str) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run([sys.executable, *command], check=True, cwd=ROOT)


def finetune_rate(bundle: Path, rows: list[dict], work: Path, steps: int, batch: int, workers: int) -> dict:
    """Backbone fine-tuning read from MP16-format shards of `rows` (their photos): photos/s on one device, with
    the loader's start-up and cuDNN's autotuning included (a lower bound on the steady rate)."""
    from locator.bundle import Bundle
    from locator.shards import write_shard
    from training.backbone import finetune_backbone
    from training.photo_data import PhotoIndex
    from training.settings import BackboneSettings
    folder = work / "shards"
    folder.mkdir(parents=True, exist_ok=True)
    shards = [folder / f"shard{k}.msg" for k in range(4)]
    for k, path in enumerate(shards):
        write_shard(path, ((r["photo_id"], Path(r["image"]).read_bytes()) for r in rows[k::4]))
    metadata = folder / "metadata.csv"
    metadata.write_text("IMG_ID,AUTHOR,LAT,LON\n" + "".join(f"{r['photo_id']},{r['owner']},{r['lat']},{r['lon']}\n"
                                                             for r in rows))
    loaded = Bundle.load(bundle)
    fine = loaded.partitions[-1]
    index = PhotoIndex.from_shards(shards, metadata, fine)
    settings = BackboneSettings(epochs=1, batch_size=batch, max_steps=steps, workers=workers, batch_norm="train")
    start = time.perf_counter()
    _, losses = finetune_backbone(loaded.backbone, index, fine, settings, progress=False)
    seconds = time.perf_counter() - start
    photos = min(steps * batch, len(index))
    return {"photos": photos, "seconds": round(seconds, 2), "photos_per_second": round(photos / seconds, 1),
            "batch_size": batch, "workers": workers, "image_size": settings.image_size, "loss": round(losses[-1], 4),
            "input": "MP16-format msgpack shards of real JPEGs", "amp": "float16" if torch_cuda() else "off"}


def torch_cuda() -> bool:
    import torch
    return torch.cuda.is_available()


def build_world(photos: str, work: Path) -> Path:
    """A bundle trained on the photos by the usual stages (the demo's, without its ingest and evaluation)."""
    train, bundle, features = work / "split" / "train.csv", work / "bundle", work / "features" / "train"
    cells = work / "cells"
    run("-m", "training.cli", "split", "--data", photos, "--out", str(work / "split"))
    run("-m", "training.cli", "hierarchy", "--data", str(train), "--out", str(cells))
    run("-m", "training.cli", "bundle", "--out", str(bundle), "--arch", ARCH, "--size", str(SIZE), "--partitions",
        *(str(cells / f"{level}.csv") for level in ("coarse", "middle", "fine")))
    run("-m", "training.cli", "features", "--bundle", str(bundle), "--data", str(train), "--out", str(features))
    run("-m", "training.cli", "head", "--bundle", str(bundle), "--features", str(features), "--kind", "ce",
        "--default")
    run("-m", "training.cli", "rrm", "--bundle", str(bundle), "--features", str(features))
    run("-m", "training.cli", "fusion", "--bundle", str(bundle), "--features", str(features))
    return bundle


def columns(rows: list[dict]) -> dict[str, np.ndarray]:
    return {key: np.array([r[key] for r in rows], dtype=object if isinstance(rows[0][key], (str, bytes)) else None)
            for key in rows[0]}


def ingest_stages(bundle: Path, location: str, rows: list[dict], batch: int, threads: int) -> dict:
    """Ingest's stages in this process, without Ray: the photos decoded and embedded once as a warm-up (in which
    cuDNN plans every input shape and batch size that the stream's shape groups make), then again, timed, and
    written."""
    from ingest.embedder import Embedder
    from ingest.writer import WriterStage
    from locator.bundle_config import BundleConfig
    preprocessing = BundleConfig.load(bundle).preprocessing
    embedder = Embedder(str(bundle), placeable_head=None)
    writer = WriterStage(location, str(bundle), str(bundle.parent / "rejects.csv"), False, 10_000)
    try:
        timed = _timed_stream(rows, preprocessing, embedder, writer, batch, threads)
        start = time.perf_counter()
        writer.store.optimize()  # as ingest does at its end: locate.py then searches through the graph
        return {**timed, "index_seconds": round(time.perf_counter() - start, 2)}
    finally:
        writer.writer.close()
        writer.store.close()


def _timed_stream(rows: list[dict], preprocessing: dict, embedder, writer, batch: int, threads: int) -> dict:
    from ingest.decode import decode_batch
    with ThreadPoolExecutor(threads) as pool:
        def decode(chunk: list[dict]) -> list:
            return [pool.submit(decode_batch, columns(chunk[s::threads]), preprocessing)
                    for s in range(min(threads, len(chunk)))]

        def gather(parts: list) -> dict:
            done = [p.result() for p in parts]
            return {key: np.concatenate([d[key] for d in done]) for key in done[0]}

        def stream(write: bool) -> tuple[int, float]:
            batches = [rows[s:s + batch] for s in range(0, len(rows), batch)]
            pending, start, done = decode(batches[0]), time.perf_counter(), 0
            for i in range(len(batches)):
                decoded = gather(pending)
                if i + 1 < len(batches):
                    pending = decode(batches[i + 1])  # the next batch decodes while this one is embedded
                embedded = embedder(decoded)
                done += int(writer(embedded)["written"].sum()) if write else len(embedded["vector"])
            return done, time.perf_counter() - start

        embedded, warm_seconds = stream(write=False)
        written, seconds = stream(write=True)
    return {"photos": len(rows), "written": written, "seconds": round(seconds, 2),
            "photos_per_second": round(written / seconds, 1), "warmup_seconds": round(warm_seconds, 2),
            "warmup_photos_per_second": round(embedded / warm_seconds, 1), "batch_size": batch,
            "decode_threads": threads}


def photo_steps(session: Session, args: argparse.Namespace, gpu: bool) -> None:
    """Steps 1-5, with --serve 7 before 5; a previous call's photo steps' work is cleared first (on a machine
    still warm, its feature cache would refuse the new bundle), its train_scale cache kept."""
    for name in PHOTO_WORK:
        path = args.work / name
        path.unlink() if path.is_file() else shutil.rmtree(path, ignore_errors=True)
    session.step("features", run, str(HERE / "features.py"), "--photos", args.photos, "--results", str(args.results),
                 *(("--repeat", "4", "--exact-n", "16") if gpu else ()))
    bundle = session.step("world", build_world, args.photos, args.work)
    if bundle is None:
        return
    train = read_rows(args.work / "split" / "train.csv")
    batch, threads = (256, max(1, (os.cpu_count() or 2) - 1)) if gpu else (64, 1)
    repeat = args.repeat or (50 if gpu else 8)
    store = f"edge:{args.work / 'store'}"
    timed = session.step("ingest", ingest_stages, bundle, store, repeated(train, repeat), batch, threads)
    if timed is not None:
        session.write("ingest_stages.json", {"device": device_name(), "backbone": f"{ARCH} at {SIZE} px",
                                             "repeated": repeat, "ingest": timed})
        session.step("locate", run, str(HERE / "locate.py"), "--bundle", str(bundle), "--store", store,
                     "--photos", str(args.work / "split" / "val.csv"), "--results", str(args.results))
        session.step("locate_profile", run, str(HERE / "locate_profile.py"), "--bundle", str(bundle), "--store",
                     store, "--photos", str(args.work / "split" / "val.csv"), "--results", str(args.results))
    if args.serve and timed is not None:  # it serves the store that ingest wrote
        session.step("serve", run, str(HERE / "serve.py"), "--run", str(args.work), "--seconds", "10", "--trials",
                     "2", "--work", str(args.work / "serve_bench"), "--results", str(args.results))
    steps, batch = (args.finetune_steps or 100, 64) if gpu else (args.finetune_steps or 4, 16)
    tuned = session.step("finetune", finetune_rate, bundle, repeated(train, 20 if gpu else 1),
                         args.work / "finetune", steps, batch, max(1, (os.cpu_count() or 2) - 2))
    if tuned is not None:
        session.write("finetune.json", {"device": device_name(), "backbone": f"{ARCH} at {SIZE} px", **tuned})


def read_rows(manifest: Path) -> list[dict]:
    from ingest.sources import list_rows
    return list_rows(manifest)


def repeated(rows: list[dict], times: int) -> list[dict]:
    """The photos `times` over, each copy under its own photo id (so that every copy is written)."""
    return [dict(r, photo_id=f"{r['photo_id'] or r['image']}#{k}") for k in range(times) for r in rows]


def device_name() -> str:
    from locator.backbone import describe_device
    return describe_device()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default=os.environ.get("GEOLOC_GPU_PHOTOS"), help="manifest of real photos")
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/geoloc-gpu-session"),
                        help="scratch folder; its photo steps' folders (split, cells, bundle, features, store, ...) "
                             "are deleted at the start: never a run of your own")
    parser.add_argument("--repeat", type=int, default=None,
                        help="ingest every training photo this many times, timed (default: 50 on a GPU, 8 on a CPU)")
    parser.add_argument("--finetune-steps", type=int, default=None,
                        help="fine-tuning steps timed (default: 100 of 64 photos on a GPU, 4 of 16 on a CPU)")
    parser.add_argument("--train-scale", action="store_true", help="also train_scale.py at full size")
    parser.add_argument("--only-train-scale", action="store_true", help="train_scale.py alone (a second call)")
    parser.add_argument("--serve", action="store_true",
                        help="also serve.py on the small bundle (needs the service's wheels in .gpu/whl, see above)")
    parser.add_argument("--train-scale-seconds", type=float, default=20.0, help="train_scale.py's cap per head")
    parser.add_argument("--train-scale-batch-size", type=int, default=1024,
                        help="train_scale.py's head batch (256, the heads' default, was measured on an H100 on "
                             "2026-11-27)")
    parser.add_argument("--skip", nargs="+", default=[], choices=SKIPPABLE,
                        help="steps already measured, left out to spend the device's time on the others")
    args = parser.parse_args()
    if not args.photos and not args.only_train_scale:
        raise SystemExit("give --photos (or GEOLOC_GPU_PHOTOS): a manifest of real photos")
    args.results.mkdir(parents=True, exist_ok=True)
    session = Session(args.results, tuple(args.skip))
    if not args.only_train_scale:
        photo_steps(session, args, torch_cuda())
    if args.train_scale or args.only_train_scale:
        session.step("train_scale", run, str(HERE / "train_scale.py"), "--work", str(args.work / "train_scale"),
                     "--seconds", str(args.train_scale_seconds), "--batch-size", str(args.train_scale_batch_size),
                     "--results", str(args.results))
    print("gpu session: done", json.dumps(session.report), "->", args.results, flush=True)


class Session:
    """Each step timed and recorded as it ends (a step that fails is recorded, and the session goes on), so that
    a session cut short still returns what it measured."""

    def __init__(self, results: Path, skip: tuple[str, ...] = ()) -> None:
        self.results, self.start, self.skip = results, time.perf_counter(), skip
        self.report = {"device": device_name(), "seconds": {}, "failed": {}, "skipped": list(skip)}

    def step(self, name: str, fn, *args):
        if name in self.skip:
            return None
        started = time.perf_counter()
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - a lent GPU's time is scarce: record the failure, go on
            self.report["failed"][name] = f"{type(exc).__name__}: {exc}"[-2000:]
            traceback.print_exc()
            return None
        finally:
            self.report["seconds"][name] = round(time.perf_counter() - started, 1)
            self.write("gpu_session.json", self.report)

    def write(self, name: str, report: dict) -> None:
        (self.results / name).write_text(json.dumps(report, indent=2) + "\n")
        print(name, json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
