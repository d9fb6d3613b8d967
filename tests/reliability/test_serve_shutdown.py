"""Issue 25, case 14: SIGTERM with a long tiled request in flight: the request is answered 503
when --shutdown-grace ends, the server exits, and no CancelledError traceback reaches the log."""

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
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _large_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1400, 1400, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_sigterm_answers_a_long_request_503_after_the_grace_period_and_exits(tmp_path):
    port, grace = _free_port(), 1.0
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "maskrcnn", "serve", "--model", "maskrcnn_r18_fpn", "--port", str(port),
               "--set", "input.min_size=[64]", "--set", "input.max_size=96", "--shutdown-grace", str(grace)]
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
        while True:
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            try:
                httpx.get(f"{url}/health")
                break
            except httpx.TransportError:
                time.sleep(0.2)
        answer = {}
        # 64-px tiles of a 1400-px image: ~500 model calls, far longer than the grace period
        request = threading.Thread(target=lambda: answer.update(response=httpx.post(
            f"{url}/v1/predict?tile=64&tile_overlap=0", content=_large_png(), timeout=120)))
        request.start()
        time.sleep(3)
        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        request.join(120)
        response = answer["response"]
        assert response.status_code == 503 and response.headers["Retry-After"] == "5"
        assert f"did not finish within the {grace:g} s grace period" in response.json()["detail"]
        assert time.monotonic() - signalled < grace + 10
        assert server.wait(30) in (0, -signal.SIGTERM)
        text = (tmp_path / "server.log").read_text()
        assert "Traceback" not in text and "CancelledError" not in text, text
    finally:
        if server.poll() is None:
            server.kill()
        log.close()
