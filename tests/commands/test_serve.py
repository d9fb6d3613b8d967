"""`maskrcnn serve` as a real process: it serves, and SIGTERM lets the request in flight finish."""

import io
import os
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

from maskrcnn.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_sigterm_finishes_the_request_in_flight_then_exits(tmp_path):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    # a batch waits 2 s for company, so the request is surely in flight when SIGTERM comes
    command = [sys.executable, "-m", "maskrcnn", "serve", "--model", "maskrcnn_r18_fpn", "--port", str(port),
               "--set", "input.min_size=[64]", "--set", "input.max_size=96", "--min-score-thresh", "0",
               "--max-batch", "4", "--batch-timeout-ms", "2000"]
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            try:
                health = httpx.get(f"{url}/health").json()
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert health["model"] == "maskrcnn_r18_fpn" and health["max_batch"] == 4
        answer = {}
        request = threading.Thread(target=lambda: answer.update(
            response=httpx.post(f"{url}/v1/predict?score_thresh=0", content=_png(), timeout=60)))
        sent = time.monotonic()
        request.start()
        time.sleep(0.7)
        server.send_signal(signal.SIGTERM)
        request.join(60)
        assert answer["response"].status_code == 200
        assert time.monotonic() - sent >= 2.0  # it was answered after the signal, not before
        body = answer["response"].json()
        assert (body["width"], body["height"]) == (80, 60) and len(body["instances"]) > 0
        # uvicorn re-raises the signal once it has shut down, so the exit status says "terminated"
        assert server.wait(30) in (0, -signal.SIGTERM)
        log.flush()
        lines = (tmp_path / "server.log").read_text()
        assert lines.index("POST /v1/predict") < lines.index("Finished server process")
    finally:
        if server.poll() is None:
            server.kill()
        log.close()


def test_bad_backend_arguments_fail_before_loading(capsys):
    assert main(["serve", "--backend", "onnxruntime"]) == 2
    assert "--backend onnxruntime needs --weights" in capsys.readouterr().err
    assert main(["serve"]) == 2
    assert "--model is required" in capsys.readouterr().err
