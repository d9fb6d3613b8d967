"""A soak of `maskrcnn serve`: a steady request rate from clients on 127.0.0.1 for a fixed time.

The server runs in a subprocess; a pacing loop starts one request every 1 / rate seconds (each in
its own thread, at most 8 in flight, so a slow answer delays no later request) until the time is
up, then waits for the last answers and stops the server with SIGTERM. Per minute: requests,
errors, p50 / p99 latency and the server's resident memory at the end of the minute. Memory
drift compares the last minute with the second (the first holds the warm-up).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PENNFUDAN = HERE.parents[1] / "shared" / "data" / "pennfudan" / "PNGImages"
MAX_IN_FLIGHT = 8


def soak(minutes: float, rate: float, model_args: list[str], log: Path) -> dict:
    """-> the soak's rows per minute and totals; the server's own log goes to `log`."""
    from scaling_runs import ENV, rss_mb

    images = _images()
    port = _free_port()
    command = [sys.executable, "-m", "maskrcnn", "serve", *model_args, "--port", str(port),
               "--max-batch", "4", "--max-queue", "16"]
    with open(log, "w") as log_file:  # a pipe nobody reads would stall the server once full
        server = subprocess.Popen(command, env=ENV, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        _wait_ready(port, server, log)
        minute_s = min(60.0, minutes * 60 / 4)  # a short (smoke) soak still has 4 rows
        rows = _paced(port, images, minutes * 60, rate, minute_s, lambda: rss_mb(server.pid))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    steady = [r for r in rows if r["requests"]]
    base, last = steady[min(1, len(steady) - 1)]["rss_mb"], steady[-1]["rss_mb"]
    return {"minutes": minutes, "rate_per_s": rate, "command": " ".join(["maskrcnn", *command[3:]]),
            "images": len(images), "rows": rows, "memory_drift": (last - base) / base,
            "errors": sum(r["errors"] for r in rows), "requests": sum(r["requests"] for r in rows)}


def _paced(port: int, images: list[bytes], seconds: float, rate: float, minute_s: float, server_rss) -> list:
    import httpx

    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    lock, slots = threading.Lock(), threading.Semaphore(MAX_IN_FLIGHT)
    done: list[tuple[float, float, bool]] = []  # (sent at, latency s, ok)

    def request(body: bytes, sent: float):
        try:
            ok = client.post("/v1/predict", content=body,
                             headers={"content-type": "image/png"}).status_code == 200
        except httpx.HTTPError:
            ok = False
        with lock:
            done.append((sent - start, time.perf_counter() - sent, ok))
        slots.release()

    start, rows, threads, k = time.perf_counter(), [], [], 0
    next_row = minute_s
    while (now := time.perf_counter() - start) < seconds:
        if now >= next_row:
            rows.append(_row(done, lock, next_row - minute_s, next_row, server_rss()))
            next_row += minute_s
        slots.acquire()  # at most MAX_IN_FLIGHT waiting: a stalled server slows the pace, no pile-up
        thread = threading.Thread(target=request, args=(images[k % len(images)], time.perf_counter()))
        thread.start()
        threads.append(thread)
        k += 1
        time.sleep(max(0.0, start + k / rate - time.perf_counter()))
    for thread in threads:
        thread.join()
    rows.append(_row(done, lock, next_row - minute_s, seconds, server_rss()))
    client.close()
    return rows


def _row(done: list, lock, begin: float, end: float, rss: float) -> dict:
    with lock:
        window = [(latency, ok) for sent, latency, ok in done if begin <= sent < end]
    latencies = [1000 * latency for latency, ok in window if ok]
    return {"minute": round(end / 60, 2), "requests": len(window), "errors": sum(not ok for _, ok in window),
            "p50_ms": float(np.percentile(latencies, 50)) if latencies else None,
            "p99_ms": float(np.percentile(latencies, 99)) if latencies else None, "rss_mb": round(rss, 1)}


def _images() -> list[bytes]:
    """Penn-Fudan photos when present (40, cycled), else 40 generated 320 x 240 PNGs."""
    if PENNFUDAN.is_dir():
        return [p.read_bytes() for p in sorted(PENNFUDAN.glob("*.png"))[:40]]
    import io

    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(40):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_ready(port: int, server: subprocess.Popen, log: Path, timeout: float = 600) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the server did not answer /health in time")

