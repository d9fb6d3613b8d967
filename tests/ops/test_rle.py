"""ops/rle.py against hand-made masks and the COCO API's own decoding."""

import json

import numpy as np
import torch
from pycocotools.coco import COCO

from maskrcnn.ops.rle import (decode_rles, encode_masks, rle_area, rle_to_xywh,
                              segmentation_to_mask)


def _two_masks():
    masks = np.zeros((2, 5, 6), dtype=bool)
    masks[0, 1:3, 2:5] = True  # 2 rows x 3 columns at x=2, y=1
    masks[1, 4, 0] = True
    return masks


def test_encode_decode_round_trip_and_json():
    masks = _two_masks()
    rles = encode_masks(torch.from_numpy(masks))
    assert all(isinstance(r["counts"], str) and r["size"] == [5, 6] for r in rles)
    rles = json.loads(json.dumps(rles))  # counts must survive JSON
    np.testing.assert_array_equal(decode_rles(rles, 5, 6), masks.astype(np.uint8))
    np.testing.assert_array_equal(rle_area(rles), [6, 1])
    np.testing.assert_array_equal(rle_to_xywh(rles), [[2, 1, 3, 2], [0, 4, 1, 1]])


def test_empty_inputs_keep_their_shapes():
    assert encode_masks(np.zeros((0, 4, 4), bool)) == []
    assert decode_rles([], 4, 7).shape == (0, 4, 7)


def test_uncompressed_rle_by_hand():
    # column-major runs: 3 background, 2 foreground -> pixels (y=3, x=0) and (y=4, x=0)
    mask = segmentation_to_mask({"size": [5, 6], "counts": [3, 2, 25]}, 5, 6)
    expected = np.zeros((5, 6), np.uint8)
    expected[3:5, 0] = 1
    np.testing.assert_array_equal(mask, expected)


def test_all_segmentation_kinds_equal_ann_to_mask():
    compressed = encode_masks(_two_masks()[:1])[0]
    segmentations = [
        [[1, 1, 4, 1, 4, 4, 1, 4]],  # one square polygon
        [[0, 0, 2, 0, 0, 2], [3.5, 3, 5.5, 3, 5.5, 4.5]],  # two polygons of one object
        {"size": [5, 6], "counts": [3, 2, 10, 4, 11]},  # uncompressed
        compressed,
    ]
    coco = COCO()
    coco.dataset = {
        "images": [{"id": 1, "height": 5, "width": 6, "file_name": "x.png"}],
        "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "segmentation": s,
                         "area": 1, "bbox": [0, 0, 1, 1], "iscrowd": 0}
                        for i, s in enumerate(segmentations)],
        "categories": [{"id": 1, "name": "a"}],
    }
    coco.createIndex()
    for i, segmentation in enumerate(segmentations):
        expected = coco.annToMask(coco.anns[i + 1])
        assert expected.any()
        np.testing.assert_array_equal(segmentation_to_mask(segmentation, 5, 6), expected)


def test_300_masks_in_one_call_match_numpy():
    # pycocotools' own area() overflows at 256 RLEs in one call; nuclei images have more
    masks = np.zeros((300, 20, 30), dtype=bool)
    for i in range(300):
        masks[i, i % 20, i % 30: i % 30 + 1 + i % 3] = True
    rles = encode_masks(masks)
    np.testing.assert_array_equal(decode_rles(rles, 20, 30), masks.astype(np.uint8))
    np.testing.assert_array_equal(rle_area(rles), masks.sum((1, 2)))
    x1 = masks.any(1).argmax(1)
    widths = masks.any(1).sum(1)
    np.testing.assert_array_equal(rle_to_xywh(rles), np.stack(
        [x1, np.arange(300) % 20, widths, np.ones(300)], axis=1))
