"""The HTTP API through FastAPI's test client: every response, against the model called directly."""

import io
import threading

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from pycocotools import mask as mask_utils

from maskrcnn.serve.app import ServedModel, ServeOptions, create_app
from maskrcnn.tiling import predict_tiled

CLASSES = ("__background__", "circle", "square")  # the conftest model's classes


def _served(model, **kwargs):
    return ServedModel("tiny_r18", CLASSES, lambda images: [i.to("cpu") for i in model.predict(images)],
                       **kwargs)


@pytest.fixture(scope="module")
def client(model):
    with TestClient(create_app(_served(model), ServeOptions(score_thresh=0.0, max_body_mb=1))) as client:
        yield client


def _png(height=70, width=90, seed=0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _tensor(png: bytes) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).copy()).permute(2, 0, 1) / 255.0


def check_prediction_schema(body: dict) -> None:
    """The documented response, written out by hand."""
    assert set(body) == {"model", "width", "height", "score_thresh", "instances", "inference_ms", "time_ms"}
    assert isinstance(body["width"], int) and isinstance(body["height"], int)
    assert body["time_ms"] >= body["inference_ms"] > 0
    for inst in body["instances"]:
        assert set(inst) == {"label", "label_name", "score", "box", "mask"}  # no mask_score/keypoints here
        assert isinstance(inst["label"], int) and inst["label_name"] == CLASSES[inst["label"]]
        assert 0 <= inst["score"] <= 1 and len(inst["box"]) == 4
        assert set(inst["mask"]) == {"size", "counts"} and isinstance(inst["mask"]["counts"], str)
        assert inst["mask"]["size"] == [body["height"], body["width"]]


def test_health(client):
    first = client.get("/health").json()
    assert first["model"] == "tiny_r18" and first["classes"] == ["circle", "square"]
    assert (first["backend"], first["precision"]) == ("torch", "fp32")
    assert first["queue"] == 0 and first["max_batch"] == 4
    assert client.get("/health").json()["uptime_s"] > first["uptime_s"] > 0


def test_multipart_and_raw_body_answer_what_the_model_finds(client, model):
    png = _png()
    multipart = client.post("/v1/predict", files={"image": ("x.png", png, "image/png")})
    raw = client.post("/v1/predict", content=png, headers={"content-type": "image/png"})
    assert multipart.status_code == raw.status_code == 200
    body = multipart.json()
    check_prediction_schema(body)
    assert (body["width"], body["height"]) == (90, 70) and body["model"] == "tiny_r18"
    expected = model.predict(_tensor(png))[0]
    assert len(body["instances"]) == len(expected) > 0
    for inst, box, score, label, mask in zip(body["instances"], expected.boxes, expected.scores,
                                             expected.labels, expected.masks):
        np.testing.assert_allclose(inst["box"], box.tolist(), atol=1e-3)
        assert inst["score"] == pytest.approx(float(score), abs=1e-6) and inst["label"] == int(label)
        decoded = mask_utils.decode({"size": inst["mask"]["size"], "counts": inst["mask"]["counts"].encode()})
        np.testing.assert_array_equal(decoded.astype(bool), mask.numpy())
    assert [i["score"] for i in raw.json()["instances"]] == [i["score"] for i in body["instances"]]


def test_score_thresh_keeps_what_scores_at_least_that(client):
    png = _png(seed=1)
    everything = client.post("/v1/predict", content=png).json()["instances"]
    scores = sorted(i["score"] for i in everything)
    middle = scores[len(scores) // 2]
    kept = client.post(f"/v1/predict?score_thresh={middle}", content=png).json()
    assert kept["score_thresh"] == middle
    assert [i["score"] for i in kept["instances"]] == [i["score"] for i in everything if i["score"] >= middle]
    assert client.post("/v1/predict?score_thresh=1.5", content=png).status_code == 400
    assert client.post("/v1/predict?score_thresh=high", content=png).status_code == 422


def test_requests_cannot_go_below_the_models_floor(model):
    png = _png(seed=1)
    scores = sorted(float(s) for s in model.predict(_tensor(png))[0].scores)
    floor = scores[len(scores) // 2]
    with TestClient(create_app(_served(model, min_score_thresh=floor))) as client:
        answer = client.post("/v1/predict?score_thresh=0.0", content=png).json()
        assert client.get("/health").json()["min_score_thresh"] == floor
    assert answer["score_thresh"] == floor
    assert sorted(i["score"] for i in answer["instances"]) == pytest.approx([s for s in scores if s >= floor])


def test_tile_query_runs_the_tiled_merge(client, model):
    png = _png(120, 150, seed=2)
    answer = client.post("/v1/predict?tile=96&tile_overlap=32", content=png).json()
    expected = predict_tiled(model.predict, _tensor(png), 96, 32)
    assert len(answer["instances"]) == len(expected) > 0
    np.testing.assert_allclose([i["box"] for i in answer["instances"]], expected.boxes.tolist(), atol=1e-3)
    bad = client.post("/v1/predict?tile=96&tile_overlap=96", content=png)
    assert bad.status_code == 400 and "overlap" in bad.json()["detail"]


def test_page_and_its_scripts(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<canvas id="canvas"' in page.text and 'id="score"' in page.text
    for script in ("app.js", "rle.js"):
        assert client.get(f"/static/{script}").status_code == 200


@pytest.mark.parametrize("request_kwargs, reason", [
    ({"content": b"certainly not an image"}, "not a format Pillow reads"),
    ({"content": _png()[:200]}, "cannot decode image"),  # truncated PNG
    ({"content": b""}, "no image"),
    ({"files": {"picture": ("x.png", _png(), "image/png")}}, "without a file field 'image'"),
])  # fmt: skip
def test_bad_images_get_400_with_the_reason(client, request_kwargs, reason):
    answer = client.post("/v1/predict", **request_kwargs)
    assert answer.status_code == 400
    assert reason in answer.json()["detail"]


def test_bodies_over_the_limit_get_413(client):
    big = b"\0" * (2**20 + 1)  # the client's limit is 1 MB
    assert client.post("/v1/predict", content=big).status_code == 413
    assert client.post("/v1/predict", files={"image": ("x.png", big, "image/png")}).status_code == 413
    # streamed without a Content-Length: counted as it arrives
    chunks = (b"\0" * 65536 for _ in range(17))
    streamed = client.post("/v1/predict", content=chunks)
    assert streamed.status_code == 413 and "larger than 1 MB" in streamed.json()["detail"]
    assert client.post("/v1/predict", content=_png()).status_code == 200  # and it still serves


def test_full_queue_gets_503_with_retry_after(model):
    gate, entered = threading.Event(), threading.Event()

    def blocking_predict(images):
        entered.set()
        assert gate.wait(20)
        return [i.to("cpu") for i in model.predict(images)]

    served = ServedModel("gated", CLASSES, blocking_predict)
    app = create_app(served, ServeOptions(max_batch=1, batch_timeout_ms=0, max_queue=2, score_thresh=0.0))
    png, answers = _png(), {}
    with TestClient(app) as client:
        def send(name):
            answers[name] = client.post("/v1/predict", content=png)

        threads = [threading.Thread(target=send, args=("running",))]
        threads[0].start()
        assert entered.wait(20)  # the model holds the first request
        for name in ("queued1", "queued2"):
            threads.append(threading.Thread(target=send, args=(name,)))
            threads[-1].start()
        _wait_for(lambda: app.state.batcher.waiting == 2)
        refused = client.post("/v1/predict", content=png)
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) >= 1 and "queue is full" in refused.json()["detail"]
        gate.set()
        for thread in threads:
            thread.join(30)
    assert {name: a.status_code for name, a in answers.items()} == {"running": 200, "queued1": 200, "queued2": 200}


def test_a_model_error_is_a_500_and_the_server_carries_on(model):
    def flaky_predict(images):
        if images[0].shape[-1] == 33:
            raise RuntimeError("model fell over")
        return [i.to("cpu") for i in model.predict(images)]

    app = create_app(ServedModel("flaky", CLASSES, flaky_predict), ServeOptions(max_batch=1))
    with TestClient(app, raise_server_exceptions=False) as client:
        failed = client.post("/v1/predict", content=_png(40, 33))
        assert failed.status_code == 500 and "model fell over" in failed.json()["detail"]
        assert client.post("/v1/predict", content=_png()).status_code == 200


def _wait_for(condition, seconds=20.0):
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
