"""Each kind of bad annotation: a clear error naming the file and the item, or a counted skip.

Errors (the dataset cannot be trusted): truncated json, duplicate image ids, category missing
from `categories`, missing image file, mask PNG of the wrong size.
Counted + logged skips (real COCO has a few, refusing would be useless): polygon with < 3 points,
zero-area box, box wholly outside the image.
"""

import json
import logging

import numpy as np
import pytest
from PIL import Image

from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.mask_folders import InstanceIdPngDataset
from maskrcnn.errors import DatasetError, ImageError


def _write(tmp_path, data):
    Image.new("RGB", (20, 10)).save(tmp_path / "img.png")
    ann_file = tmp_path / "bad.json"
    ann_file.write_text(json.dumps(data))
    return ann_file


def _data(**ann_changes):
    ann = {"id": 5, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 16,
           "bbox": [2, 2, 4, 4], "segmentation": [[2, 2, 6, 2, 6, 6, 2, 6]]}
    good = dict(ann, id=6)
    return {"images": [{"id": 1, "file_name": "img.png", "height": 10, "width": 20}],
            "annotations": [good, {**ann, **ann_changes}],
            "categories": [{"id": 1, "name": "thing"}]}


def _skipped(tmp_path, caplog, reason, **ann_changes):
    with caplog.at_level(logging.WARNING):
        dataset = CocoDataset(_write(tmp_path, _data(**ann_changes)), tmp_path)
    assert dataset.skipped[reason] == 1
    assert "bad.json" in caplog.text and "annotation 5" in caplog.text and reason in caplog.text
    return dataset[0][1]


def test_polygon_with_fewer_than_3_points_is_skipped(tmp_path, caplog):
    target = _skipped(tmp_path, caplog, "polygon with fewer than 3 points",
                      segmentation=[[1, 1, 3, 3]])
    assert len(target["boxes"]) == 1  # the good annotation stays


def test_short_polygon_part_is_dropped_but_the_object_kept(tmp_path, caplog):
    target = _skipped(tmp_path, caplog, "polygon with fewer than 3 points",
                      segmentation=[[2, 2, 6, 2, 6, 6, 2, 6], [1, 1]])
    assert len(target["boxes"]) == 2
    assert np.array_equal(target["masks"][0].numpy(), target["masks"][1].numpy())


def test_zero_area_box_is_skipped(tmp_path, caplog):
    target = _skipped(tmp_path, caplog, "zero-area box", bbox=[3, 3, 0, 4])
    assert len(target["boxes"]) == 1


def test_box_outside_the_image_is_skipped(tmp_path, caplog):
    target = _skipped(tmp_path, caplog, "box outside the image", bbox=[25, 2, 4, 4])
    assert len(target["boxes"]) == 1


def test_box_partly_outside_is_clipped(tmp_path):
    dataset = CocoDataset(_write(tmp_path, _data(bbox=[18, -1, 4, 4])), tmp_path)
    assert dataset[0][1]["boxes"][1].tolist() == [18, 0, 20, 3]
    assert dataset.skipped["clipped box"] == 1


def test_category_missing_from_categories(tmp_path):
    with pytest.raises(DatasetError, match=r"bad\.json: annotation 5 has category_id 9.*missing"):
        CocoDataset(_write(tmp_path, _data(category_id=9)), tmp_path)


def test_missing_image_file(tmp_path):
    data = _data()
    data["images"].append({"id": 2, "file_name": "gone.jpg", "height": 10, "width": 20})
    with pytest.raises(ImageError, match=r"gone\.jpg: image file not found \(image id 2 in .*bad\.json"):
        CocoDataset(_write(tmp_path, data), tmp_path)


def test_duplicate_image_ids(tmp_path):
    data = _data()
    data["images"].append({"id": 1, "file_name": "other.png", "height": 10, "width": 20})
    with pytest.raises(DatasetError, match=r"bad\.json: duplicate image id 1 .*other\.png"):
        CocoDataset(_write(tmp_path, data), tmp_path)


def test_truncated_json(tmp_path):
    ann_file = _write(tmp_path, _data())
    ann_file.write_text(ann_file.read_text()[:-40])
    with pytest.raises(DatasetError, match=r"bad\.json: not valid JSON \(line 1, column \d+.*truncated"):
        CocoDataset(ann_file, tmp_path)


def test_annotation_of_unknown_image(tmp_path):
    with pytest.raises(DatasetError, match=r"bad\.json: annotation 5 refers to image 4"):
        CocoDataset(_write(tmp_path, _data(image_id=4)), tmp_path)


def test_image_size_differs_from_json(tmp_path):
    data = _data()
    data["images"][0]["width"] = 30
    with pytest.raises(ImageError, match=r"img\.png: image 1 is 20x10 .* says 30x10"):
        CocoDataset(_write(tmp_path, data), tmp_path)[0]


def test_mask_png_of_the_wrong_size(tmp_path):
    (tmp_path / "PNGImages").mkdir()
    (tmp_path / "PedMasks").mkdir()
    Image.new("RGB", (20, 10)).save(tmp_path / "PNGImages" / "p1.png")
    Image.new("L", (20, 12), 1).save(tmp_path / "PedMasks" / "p1_mask.png")
    dataset = InstanceIdPngDataset(tmp_path)
    with pytest.raises(DatasetError, match=r"p1_mask\.png: mask is 20x12 but its image .*p1\.png is 20x10"):
        dataset[0]


def test_missing_bbox_and_rle_of_another_size(tmp_path):
    data = _data()
    del data["annotations"][1]["bbox"]
    with pytest.raises(DatasetError, match=r"bad\.json: annotations\[1\] \(id 5\) has no 'bbox'"):
        CocoDataset(_write(tmp_path, data), tmp_path)
    rle = {"size": [12, 20], "counts": [0, 240]}
    with pytest.raises(DatasetError, match=r"annotations\[1\] \(id 5\): 'segmentation' RLE size \[12, 20\] differs .* \[10, 20\]"):
        CocoDataset(_write(tmp_path, _data(segmentation=rle)), tmp_path)
