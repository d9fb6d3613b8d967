"""Compare a converted COCO json with a hand-written expected one, masks pixel by pixel."""

import contextlib
import io
import json

import numpy as np
from pycocotools.coco import COCO


def _coco(data: dict) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = json.loads(json.dumps(data))
        coco.createIndex()
    return coco


def assert_coco_equal(actual: dict, expected: dict) -> None:
    """Same images, categories and annotations (ids, classes, crowd flags, boxes, areas); every
    mask decoded by pycocotools from both files equal pixel by pixel."""
    assert actual["images"] == expected["images"]
    assert actual["categories"] == expected["categories"]
    assert len(actual["annotations"]) == len(expected["annotations"])
    got, want = _coco(actual), _coco(expected)
    for a, e in zip(actual["annotations"], expected["annotations"]):
        for key in ("id", "image_id", "category_id", "iscrowd", "area"):
            assert a[key] == e[key], (key, a, e)
        np.testing.assert_allclose(a["bbox"], e["bbox"], atol=1e-9, err_msg=str(e))
        mask, expected_mask = got.annToMask(got.anns[a["id"]]), want.annToMask(want.anns[e["id"]])
        assert expected_mask.sum() == e["area"], "the expected file contradicts itself"
        np.testing.assert_array_equal(mask, expected_mask, err_msg=f"annotation {e['id']}")
