"""Benchmark: `geoloc serve` under load while a writer adds photos, and kill -9 durability of acknowledged writes.

On a copy of a run's store, the service runs in its own process on loopback. Then:
1. the one-process rate: `Locator.locate` on the same photos with batch 32 (before the service holds the store),
   timed on a second pass (warm, like the service);
2. the service starts, warmed up (its start and warm-up times are recorded); one client, then 4 concurrent
   clients, one photo per request, for `--seconds`, while a writer adds a photo every 0.5 s: p50 / p99 latency;
   every acknowledged photo must be in the collection afterwards;
3. 16 concurrent clients: the service's photos/s;
4. `--trials` times: start the service, add 5 photos and remove one added before, kill -9 it right after the
   last acknowledgement, start it again and check that the 5 are listed (with their thumbnails) and the removed
   one is not.

    python benchmarks/serve.py --run runs/im2gps2k [--seconds 30] [--trials 20] [--results benchmarks/results]

Writes benchmarks/results/serve.json and serve.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from locator.api import Locator
from locator.backbone import describe_device
from locator.datasets import read_dataset

RESULTS = Path(__file__).parent / "results"
MAX_BATCH = 32  # the service's default, and the one-process rate's batch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(bundle: Path, store: str, port: int, warm: bool = True) -> tuple[subprocess.Popen, dict]:
    """The service in its own process, and its first health answer; with `warm`, it warms up before it listens
    (on a GPU that takes minutes), else it starts cold (the kill -9 trials: durability, not speed)."""
    process = subprocess.Popen([sys.executable, "-m", "locator.cli", "serve", "--bundle", str(bundle), "--store", store,
                                "--port", str(port), "--max-batch", str(MAX_BATCH),
                                *([] if warm else ["--no-warm-up"])],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + (900 if warm else 180)
    while time.time() < deadline and process.poll() is None:  # a service that died is not waited for
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2)
            if answer.status_code == 200:
                return process, answer.json()
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the service did not start: {process.stderr.read().decode()[-2000:]}")


def kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def add(client: httpx.Client, port: int, k: int, source: str) -> str:
    answer = client.post(f"http://127.0.0.1:{port}/v1/photos", files={"image": ("p.jpg", jpeg(k), "image/jpeg")},
                         data={"lat": str(-60 + k % 120), "lon": str(-170 + (7 * k) % 340), "photo_id": f"bench-{k}",
                               "source": source})
    answer.raise_for_status()
    return answer.json()["id"]


def load(port: int, photos: list[bytes], clients: int, seconds: float, writer: bool) -> dict:
    latencies, errors, acknowledged = [], [], []
    stop = time.monotonic() + seconds

    def client_loop(c: int) -> None:
        with httpx.Client(timeout=120) as client:
            k = c
            while time.monotonic() < stop:
                begin = time.perf_counter()
                response = client.post(f"http://127.0.0.1:{port}/v1/locate",
                                       files=[("images", ("q.jpg", photos[k % len(photos)], "image/jpeg"))])
                latencies.append(time.perf_counter() - begin)
                if response.status_code != 200 or not response.json()["predictions"][0]["ok"]:
                    errors.append(response.status_code)
                k += clients

    def writer_loop() -> None:
        with httpx.Client(timeout=120) as client:
            k = 0
            while time.monotonic() < stop:
                acknowledged.append(add(client, port, 10_000 + k, "serve-benchmark"))
                k += 1
                time.sleep(0.5)

    threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(clients)]
    threads += [threading.Thread(target=writer_loop)] if writer else []
    begin = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - begin
    found = sum(httpx.get(f"http://127.0.0.1:{port}/v1/photos/{i}/thumbnail", timeout=30).status_code == 200
                for i in acknowledged)
    ms = 1000 * np.array(latencies)
    return {"clients": clients, "requests": len(latencies), "errors": len(errors),
            "photos_per_second": round(len(latencies) / elapsed, 2), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "writes_acknowledged": len(acknowledged),
            "writes_found_after": found}


def durability(bundle: Path, store: str, trials: int) -> dict:
    """Each trial: check the previous trial's writes (its 5 added photos listed with their thumbnails, its removed
    one not listed), add 5 photos, remove one added the trial before, and kill -9 the service right after the last
    acknowledgement (the removal's; the first trial's last add's)."""
    lost, resurrected, checked, acknowledged, removed = 0, 0, 0, [], []
    for trial in range(trials + 1):
        port = free_port()
        process, _ = start(bundle, store, port, warm=False)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(timeout=120) as client:
            stored = listed(client, base, "kill-benchmark")
            lost += sum(i not in stored or client.get(f"{base}/v1/photos/{i}/thumbnail").status_code != 200
                        for i in acknowledged)
            resurrected += sum(i in stored for i in removed)
            checked += len(removed)
            if trial == trials:
                break
            added = [add(client, port, 100_000 + 10 * trial + k, "kill-benchmark") for k in range(5)]
            removed = acknowledged[:1]
            for i in removed:
                client.delete(f"{base}/v1/photos/{i}").raise_for_status()
            acknowledged = added
        kill(process)  # right after the last acknowledgement
    kill(process)
    return {"trials": trials, "writes_per_trial": 5, "lost": lost, "removals_per_trial": 1,
            "removals_checked": checked, "resurrected": resurrected}


def listed(client: httpx.Client, base: str, source: str) -> set[str]:
    """The ids of a source's photos, as the collection view lists them."""
    ids: set[str] = set()
    while True:
        page = client.get(f"{base}/v1/points", params={"source": source, "offset": len(ids), "limit": 500}).json()
        ids |= {p["id"] for p in page["points"]}
        if len(ids) >= page["total"] or not page["points"]:
            return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/im2gps2k"))
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--work", type=Path, default=Path("runs/serve_bench"))
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON and markdown go")
    args = parser.parse_args()
    if args.work.exists():
        shutil.rmtree(args.work)
    shutil.copytree(args.run / "store", args.work / "store")
    store, bundle = f"edge:{args.work / 'store'}", args.run / "bundle"
    images = [r.image for r in read_dataset(args.run / "split" / "val.csv")][:64]
    with Locator.load(bundle, store=store) as locator:
        locator.locate(images, batch_size=MAX_BATCH)  # warm: each shape and batch size it meets computed once
        begin = time.perf_counter()
        locator.locate(images, batch_size=MAX_BATCH)
        one_process = len(images) / (time.perf_counter() - begin)
    photos = [Path(p).read_bytes() for p in images]
    port = free_port()
    begin = time.perf_counter()
    process, health = start(bundle, store, port)
    started = time.perf_counter() - begin
    try:
        one = load(port, photos, 1, args.seconds, writer=False)
        four = load(port, photos, 4, args.seconds, writer=True)
        sixteen = load(port, photos, 16, args.seconds, writer=False)
    finally:
        kill(process)
    device = describe_device()
    report = {"cpu_count": os.cpu_count(), "device": device, "one_process_batch32_photos_per_second": round(one_process, 2),
              "one_client": one, "four_clients_with_writer": four, "sixteen_clients": sixteen,
              "sixteen_vs_one_process": round(sixteen["photos_per_second"] / one_process, 3),
              "start_seconds": round(started, 1), "warm_up": health["warm_up"],
              "kill9": durability(bundle, store, args.trials)}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "serve.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# `geoloc serve` under load\n",
             f"{device}; bundle `{bundle}`, method fused; "
             "loopback clients, one photo per "
             f"request, {args.seconds:.0f} s each.\n",
             f"The service started in {started:.1f} s, of which its warm-up ({health['warm_up']['shapes']} shapes at "
             f"batch sizes {health['warm_up']['batch_sizes']}, then one photo located) took "
             f"{health['warm_up']['seconds']} s.\n",
             "| clients | requests | errors | photos/s | p50 ms | p99 ms |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['clients']} | {r['requests']} | {r['errors']} | {r['photos_per_second']} | {r['p50_ms']} | "
              f"{r['p99_ms']} |" for r in (one, four, sixteen)]
    lines += ["", f"One process, `Locator.locate` with batch 32 (a second pass): "
              f"{report['one_process_batch32_photos_per_second']} photos/s; the service with 16 clients reaches {100 * report['sixteen_vs_one_process']:.0f} % of it.",
              f"While the 4 clients ran, a writer added {four['writes_acknowledged']} photos; "
              f"{four['writes_found_after']} were found afterwards.",
              f"kill -9 after acknowledged writes, {report['kill9']['trials']} trials × 5 photos: "
              f"{report['kill9']['lost']} lost; of {report['kill9']['removals_checked']} acknowledged removals, "
              f"{report['kill9']['resurrected']} came back."]
    (args.results / "serve.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
