"""Bad keypoint annotations: clear errors naming the file, annotation and keypoint, or (keypoint
outside the image) documented handling: it becomes unlabelled, counted and logged."""

import json
import logging

import pytest
from PIL import Image

from maskrcnn.data.coco import CocoDataset
from maskrcnn.data.transforms import COCO_KEYPOINT_NAMES
from maskrcnn.errors import DatasetError


def _points(**changes) -> list:
    """17 visible keypoints at (2 + i, 3), with per-name [x, y, v] changes."""
    points = [[2.0 + i, 3.0, 2] for i in range(17)]
    for name, value in changes.items():
        points[COCO_KEYPOINT_NAMES.index(name)] = value
    return [v for p in points for v in p]


def _dataset(tmp_path, keypoints):
    Image.new("RGB", (20, 10)).save(tmp_path / "img.png")
    ann = {"id": 5, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 16, "bbox": [2, 2, 16, 6],
           "segmentation": [[2, 2, 18, 2, 18, 8, 2, 8]], "keypoints": keypoints}
    data = {"images": [{"id": 1, "file_name": "img.png", "height": 10, "width": 20}],
            "annotations": [{**ann, "id": 6, "keypoints": _points()}, ann],
            "categories": [{"id": 1, "name": "person", "keypoints": list(COCO_KEYPOINT_NAMES)}]}
    (tmp_path / "kp.json").write_text(json.dumps(data))
    return CocoDataset(tmp_path / "kp.json", tmp_path)


def test_good_keypoints_reach_the_target(tmp_path):
    target = _dataset(tmp_path, _points(nose=[4.5, 6.25, 1]))[0][1]
    assert target["keypoints"].shape == (2, 17, 3)
    assert target["keypoints"][1, 0].tolist() == [4.5, 6.25, 1]
    assert target["keypoints"][1, 16].tolist() == [18, 3, 2]


@pytest.mark.parametrize("length", [50, 34, 52])
def test_wrong_length_is_an_error(tmp_path, length):
    with pytest.raises(DatasetError, match=rf"kp\.json: annotation 5: 'keypoints' has {length} values; "
                                           r"the categories define 17 keypoints, so 51"):
        _dataset(tmp_path, _points()[:length] + [0] * max(0, length - 51))


@pytest.mark.parametrize("visibility", [3, -1, 0.5])
def test_visibility_outside_0_to_2_is_an_error(tmp_path, visibility):
    with pytest.raises(DatasetError, match=r"kp\.json: annotation 5: keypoint 'left_wrist' .* visibility must be 0"):
        _dataset(tmp_path, _points(left_wrist=[5, 5, visibility]))


def test_non_numbers_are_an_error(tmp_path):
    with pytest.raises(DatasetError, match=r"kp\.json: annotations\[1\] \(id 5\): 'keypoints' holds 'a' \(value 0\), not a number"):
        _dataset(tmp_path, _points(nose=["a", 3, 2]))


def test_keypoint_outside_the_image_becomes_unlabelled(tmp_path, caplog):
    """Image 20 x 10: x = 25 and y = -1 are outside; (20, 10), the far corner, is inside; an
    unlabelled point outside needs no change. The annotation and its other keypoints stay."""
    points = _points(nose=[25, 3, 2], left_eye=[4, -1, 1], right_eye=[20, 10, 2], left_ear=[30, 30, 0])
    with caplog.at_level(logging.WARNING):
        dataset = _dataset(tmp_path, points)
    assert dataset.skipped["labelled keypoint outside the image, set to not labelled"] == 1
    assert "kp.json" in caplog.text and "annotation 5" in caplog.text
    kps = dataset[0][1]["keypoints"][1]
    assert kps[0].tolist() == [0, 0, 0] and kps[1].tolist() == [0, 0, 0]
    assert kps[2].tolist() == [20, 10, 2] and kps[3].tolist() == [30, 30, 0]
    assert kps[4:].tolist() == dataset[0][1]["keypoints"][0, 4:].tolist()


def test_training_takes_the_keypoint_set_from_the_data(tmp_path):
    from maskrcnn.training.trainer import _coco_train_set
    from maskrcnn.presets import get_preset

    _dataset(tmp_path, _points())
    cfg = get_preset("keypointrcnn_r50_fpn")
    cfg.data.train_ann, cfg.data.train_images = str(tmp_path / "kp.json"), str(tmp_path)
    cfg.model.keypoint.num_keypoints = 5
    _coco_train_set(cfg)
    assert cfg.model.keypoint.num_keypoints == 17


def test_training_keypoints_on_data_without_keypoints_is_an_error(tmp_path):
    from maskrcnn.training.trainer import _coco_train_set
    from maskrcnn.errors import ConfigError
    from maskrcnn.presets import get_preset

    data = json.loads(_dataset(tmp_path, _points()).ann_file.read_text())
    for ann in data["annotations"]:
        del ann["keypoints"]
    del data["categories"][0]["keypoints"]
    (tmp_path / "kp.json").write_text(json.dumps(data))
    cfg = get_preset("keypointrcnn_r50_fpn")
    cfg.data.train_ann, cfg.data.train_images = str(tmp_path / "kp.json"), str(tmp_path)
    with pytest.raises(ConfigError, match=r"kp\.json: model\.keypoint\.enabled but no category defines 'keypoints'"):
        _coco_train_set(cfg)
