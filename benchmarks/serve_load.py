"""Load test of `maskrcnn serve`: a real server on 127.0.0.1 in a subprocess, N concurrent clients
each sending M Penn-Fudan images, once per --max-batch value. Reports errors, p50/p99 latency and
throughput; bounded in count (clients x requests) and time (--deadline per run).

    python benchmarks/serve_load.py --batches 4 1              # defaults: small model, 8 x 25
    python benchmarks/serve_load.py --model maskrcnn_r50_fpn --weights W.pth --set input.min_size=[800]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PENNFUDAN = ROOT.parent / "shared" / "data" / "pennfudan" / "PNGImages"
# a seeded 2-class ResNet-18 FPN: random scores sit near 0.5, so each image gets up to 5
# detections with masks and the whole pipeline (masks, RLE) runs; inputs at 128 px keep a run
# within minutes on a shared 2-core CPU
DEFAULT_SET = ["num_classes=2", "box_detections_per_img=5", "input.min_size=[128]", "input.max_size=192"]


def main() -> int:
    args = parse_args()
    images = [p.read_bytes() for p in sorted(Path(args.images).glob("*.png"))][: args.num_images]
    if not images:
        sys.exit(f"no PNG images in {args.images}")
    runs = []
    for max_batch in args.batches:
        run = load_run(args, images, max_batch)
        runs.append(run)
        print(_row(run), flush=True)
    report = {"model": args.model, "weights": args.weights, "set": args.set, "clients": args.clients,
              "requests_per_client": args.requests, "images": len(images), "torch_threads": args.threads,
              "runs": runs}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
    print("\n| --max-batch | requests | errors | p50 ms | p99 ms | images/s |\n|---|---|---|---|---|---|")
    for run in runs:
        print(f"| {run['max_batch']} | {run['completed']} | {run['errors']} | {run['p50_ms']:.0f} | "
              f"{run['p99_ms']:.0f} | {run['throughput']:.2f} |")
    return 1 if any(run["errors"] for run in runs) else 0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="maskrcnn_r18_fpn")
    parser.add_argument("--weights")
    parser.add_argument("--set", nargs="*", default=DEFAULT_SET, help="config overrides for the server")
    parser.add_argument("--images", default=str(PENNFUDAN))
    parser.add_argument("--num-images", type=int, default=40, help="distinct images cycled through")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=25, help="per client")
    parser.add_argument("--batches", type=int, nargs="+", default=[4, 1], help="--max-batch values to compare")
    parser.add_argument("--batch-timeout-ms", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in the server")
    parser.add_argument("--deadline", type=float, default=1200.0, help="seconds per run at most")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve_load.json"))
    return parser.parse_args()


def load_run(args, images: list[bytes], max_batch: int) -> dict:
    """Start a server with --max-batch `max_batch`, run the clients, stop it with SIGTERM."""
    port = _free_port()
    command = [sys.executable, "-m", "maskrcnn", "serve", "--model", args.model, "--port", str(port),
               "--max-batch", str(max_batch), "--batch-timeout-ms", str(args.batch_timeout_ms),
               "--max-queue", str(args.clients * 2)]
    command += ["--weights", args.weights] if args.weights else []
    for item in args.set:
        command += ["--set", item]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
    log = tempfile.TemporaryFile("w+")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(server, url, log)
        httpx.post(f"{url}/v1/predict", content=images[0], timeout=300).raise_for_status()  # warm-up
        return {"max_batch": max_batch, **_clients(args, images, url)}
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _clients(args, images: list[bytes], url: str) -> dict:
    latencies, errors, lock = [], [], threading.Lock()
    deadline = time.monotonic() + args.deadline

    def client(index: int) -> None:
        with httpx.Client(timeout=max(deadline - time.monotonic(), 1)) as session:
            for r in range(args.requests):
                if time.monotonic() > deadline:
                    with lock:
                        errors.append("deadline passed")
                    continue
                image = images[(index * args.requests + r) % len(images)]
                start = time.perf_counter()
                try:
                    answer = session.post(f"{url}/v1/predict", content=image)
                    ok = answer.status_code == 200 and "instances" in answer.json()
                    problem = None if ok else f"HTTP {answer.status_code}: {answer.text[:200]}"
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                with lock:
                    (errors.append(problem) if problem else latencies.append(time.perf_counter() - start))

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"completed": len(latencies), "errors": len(errors), "error_examples": sorted(set(errors))[:3],
            "wall_s": wall, "throughput": len(latencies) / wall,
            "p50_ms": float(np.percentile(ms, 50)) if len(ms) else float("nan"),
            "p99_ms": float(np.percentile(ms, 99)) if len(ms) else float("nan")}


def _wait_healthy(server, url: str, log, seconds: float = 180.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            sys.exit(f"server exited: {log.read()[-2000:]}")
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.3)
    sys.exit("server did not become healthy")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _row(run: dict) -> str:
    return (f"max_batch {run['max_batch']}: {run['completed']} ok, {run['errors']} errors, "
            f"p50 {run['p50_ms']:.0f} ms, p99 {run['p99_ms']:.0f} ms, {run['throughput']:.2f} img/s "
            f"({run['wall_s']:.0f} s)" + (f"; errors like {run['error_examples']}" if run["errors"] else ""))


if __name__ == "__main__":
    sys.exit(main())
