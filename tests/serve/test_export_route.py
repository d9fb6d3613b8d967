"""POST /v1/export: answers in /v1/predict's form -> each tool's file, the same bytes as tracing
the masks directly; bad requests are one-line 400s. (The page test sends it real answers.)"""

import io
import json
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pycocotools import mask as mask_utils

from maskrcnn.export_formats import FORMATS, export_files, traced
from maskrcnn.ops.rle import encode_masks
from maskrcnn.serve.app import ServedModel, ServeOptions, create_app

CLASSES = ("__background__", "circle", "square")


@pytest.fixture(scope="module")
def client():
    served = ServedModel("no_model", CLASSES, lambda images: [])
    with TestClient(create_app(served, ServeOptions(score_thresh=0.0))) as client:
        yield client


def _instances(masks, names, scores) -> list:
    return [{"label_name": n, "score": s, "mask": rle} for n, s, rle in zip(names, scores, encode_masks(masks))]


@pytest.fixture(scope="module")
def answers():
    """Two images' answers as /v1/predict gives them: a ring (a hole), two disks as one instance,
    a square; the second image a disk only (the route needs no model)."""
    yy, xx = np.mgrid[:70, :90]
    ring = (((yy - 35) ** 2 + (xx - 30) ** 2) < 22 ** 2) & (((yy - 35) ** 2 + (xx - 30) ** 2) >= 8 ** 2)
    two = (((yy - 15) ** 2 + (xx - 75) ** 2) < 10 ** 2) | (((yy - 55) ** 2 + (xx - 75) ** 2) < 11 ** 2)
    square = (yy >= 5) & (yy < 20) & (xx >= 45) & (xx < 60)
    return [{"file_name": "a0.png", "width": 90, "height": 70,
             "instances": _instances(np.stack([ring, two, square]), ["circle", "square", "square"], [0.9, 0.8, 0.3])},
            {"file_name": "a1.png", "width": 90, "height": 70,
             "instances": _instances(two[None], ["circle"], [0.7])}]


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


def test_bad_requests(client, answers):
    bad_format = client.post("/v1/export?format=paint", json={"images": answers})
    assert bad_format.status_code == 400 and "format paint: unknown" in bad_format.json()["detail"]
    wrong_size = json.loads(json.dumps(answers[:1]))
    wrong_size[0]["width"] = 91
    response = client.post("/v1/export?format=coco", json={"images": wrong_size})
    assert response.status_code == 400 and "a0.png: a mask of size [70, 90]" in response.json()["detail"]
    assert client.post("/v1/export?format=coco", json={"images": []}).status_code == 422
