"""POST /v1/export: the API's answers -> each tool's file, the same bytes as tracing the masks
directly; bad requests are one-line 400s."""

import io
import json
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pycocotools import mask as mask_utils

from maskrcnn.export_formats import FORMATS, export_files, traced
from maskrcnn.serve.app import ServedModel, ServeOptions, create_app

CLASSES = ("__background__", "circle", "square")


@pytest.fixture(scope="module")
def client(model):
    served = ServedModel("tiny_r18", CLASSES, lambda images: [i.to("cpu") for i in model.predict(images)])
    with TestClient(create_app(served, ServeOptions(score_thresh=0.0))) as client:
        yield client


@pytest.fixture(scope="module")
def answers(client):
    rng = np.random.default_rng(2)
    out = []
    for k in range(2):
        buffer = io.BytesIO()
        smooth = rng.integers(0, 255, (5, 6, 3), dtype=np.uint8)  # blob-like masks: quick to trace
        Image.fromarray(smooth).resize((90, 70), Image.BILINEAR).save(buffer, format="PNG")
        answer = client.post("/v1/predict", content=buffer.getvalue()).json()
        out.append({"file_name": f"a{k}.png", "width": answer["width"], "height": answer["height"],
                    "instances": answer["instances"]})
    return out


@pytest.mark.parametrize("format", FORMATS)
def test_export_equals_tracing_the_masks(client, answers, format):
    response = client.post(f"/v1/export?format={format}&polygon_tolerance=0.5", json={"images": answers})
    assert response.status_code == 200, response.text
    images = [traced(a["file_name"], np.stack([mask_utils.decode({**d["mask"], "counts": d["mask"]["counts"].encode()})
                                               for d in a["instances"]]) > 0,
                     [d["label_name"] for d in a["instances"]], [d["score"] for d in a["instances"]], 0.5)
              for a in answers]
    expected = export_files(format, images, list(CLASSES[1:]))
    if len(expected) == 1:
        assert response.content == next(iter(expected.values()))
    else:
        with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
            assert {name: archive.read(name) for name in archive.namelist()} == expected
    assert sum(len(a["instances"]) for a in answers) > 0


def test_bad_requests(client, answers):
    bad_format = client.post("/v1/export?format=paint", json={"images": answers})
    assert bad_format.status_code == 400 and "format paint: unknown" in bad_format.json()["detail"]
    wrong_size = json.loads(json.dumps(answers[:1]))
    wrong_size[0]["width"] = 91
    response = client.post("/v1/export?format=coco", json={"images": wrong_size})
    assert response.status_code == 400 and "a0.png: a mask of size [70, 90]" in response.json()["detail"]
    assert client.post("/v1/export?format=coco", json={"images": []}).status_code == 422
