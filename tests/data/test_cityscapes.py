"""Cityscapes gtFine *_instanceIds.png -> COCO: id maps drawn by hand (class * 1000 + instance,
bare class ids as crowd groups, classes the benchmark skips) against a COCO file by hand."""

import json

import numpy as np
from PIL import Image

from coco_expect import assert_coco_equal
from maskrcnn.cli import main

CATEGORIES = [{"id": 24, "name": "person"}, {"id": 25, "name": "rider"}, {"id": 26, "name": "car"},
              {"id": 27, "name": "truck"}, {"id": 28, "name": "bus"}, {"id": 31, "name": "train"},
              {"id": 32, "name": "motorcycle"}, {"id": 33, "name": "bicycle"}]


def _ids_a() -> np.ndarray:
    ids = np.full((10, 12), 7, np.uint16)  # road
    ids[1:3, 6:9] = 26001  # car 1: x 6..8, y 1..2
    ids[5:9, 3:5] = 26002  # car 2: x 3..4, y 5..8
    ids[1:4, 1:3] = 24000  # person, instance number 0
    ids[8:10, 9:12] = 26  # a group of cars nobody separated: crowd
    ids[5:7, 9:11] = 29001  # caravan: has instances but is not evaluated
    return ids


EXPECTED = {
    "images": [
        {"id": 1, "file_name": "leftImg8bit/val/ulm/ulm_000000_000019_leftImg8bit.png", "height": 10, "width": 12},
        {"id": 2, "file_name": "leftImg8bit/val/ulm/ulm_000001_000019_leftImg8bit.png", "height": 10, "width": 12},
    ],
    "annotations": [  # in increasing pixel value
        {"id": 1, "image_id": 1, "category_id": 26, "iscrowd": 1, "area": 6.0, "bbox": [9, 8, 3, 2],
         "segmentation": [[9, 8, 12, 8, 12, 10, 9, 10]]},
        {"id": 2, "image_id": 1, "category_id": 24, "iscrowd": 0, "area": 6.0, "bbox": [1, 1, 2, 3],
         "segmentation": [[1, 1, 3, 1, 3, 4, 1, 4]]},
        {"id": 3, "image_id": 1, "category_id": 26, "iscrowd": 0, "area": 6.0, "bbox": [6, 1, 3, 2],
         "segmentation": [[6, 1, 9, 1, 9, 3, 6, 3]]},
        {"id": 4, "image_id": 1, "category_id": 26, "iscrowd": 0, "area": 8.0, "bbox": [3, 5, 2, 4],
         "segmentation": [[3, 5, 5, 5, 5, 9, 3, 9]]},
    ],
    "categories": CATEGORIES,
}


def _dataset(root):
    rng = np.random.default_rng(0)
    for frame, ids in (("000000", _ids_a()), ("000001", np.full((10, 12), 7, np.uint16))):
        for folder, suffix, array in (
                ("gtFine", "gtFine_instanceIds", ids),
                ("leftImg8bit", "leftImg8bit", rng.integers(0, 255, (10, 12, 3), np.uint8))):
            (root / folder / "val" / "ulm").mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / folder / "val" / "ulm" / f"ulm_{frame}_000019_{suffix}.png")


def _convert(root, out, *extra):
    return main(["convert-dataset", "--format", "cityscapes", str(root), "--out", str(out), *extra])


def test_gtfine_converts_to_the_expected_coco(tmp_path):
    _dataset(tmp_path)
    assert Image.open(next((tmp_path / "gtFine").rglob("*.png"))).mode.startswith("I")  # 16-bit
    assert _convert(tmp_path, tmp_path / "coco.json", "--split", "val") == 0
    assert_coco_equal(json.loads((tmp_path / "coco.json").read_text()), EXPECTED)


def test_bad_folders_are_named(tmp_path, capsys):
    _dataset(tmp_path)
    assert _convert(tmp_path, tmp_path / "o.json", "--split", "train") == 2
    assert "gtFine/train: no *_gtFine_instanceIds.png files found" in capsys.readouterr().err
    image = tmp_path / "leftImg8bit" / "val" / "ulm" / "ulm_000001_000019_leftImg8bit.png"
    Image.new("RGB", (11, 10)).save(image)
    assert _convert(tmp_path, tmp_path / "o.json") == 2
    assert "ulm_000001_000019_gtFine_instanceIds.png: 12 x 10 but its image" in capsys.readouterr().err
    image.unlink()
    assert _convert(tmp_path, tmp_path / "o.json") == 2
    err = capsys.readouterr().err
    assert "ulm_000001_000019_gtFine_instanceIds.png: its image" in err and "not found" in err
