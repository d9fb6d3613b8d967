"""CocoDataset against the COCO API on every real COCO subset, and label mapping by hand."""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from maskrcnn.data.coco import CocoDataset

SUBSETS = ["val2017-32", "train2017-6", "train2017-16", "keypoints-train2017-30",
           "keypoints-val2017-30"]


def _coco(ann_file) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(ann_file))


@pytest.mark.parametrize("subset", SUBSETS)
def test_round_trip_equals_coco_api(shared_data, subset):
    ann_file = shared_data / "coco" / subset / "annotations.json"
    dataset, coco = CocoDataset(ann_file), _coco(ann_file)
    assert len(dataset) == len(coco.imgs)  # images without annotations stay in
    has_keypoints = "keypoints" in coco.loadCats(coco.getCatIds())[0]
    crowd_seen = 0
    for index in range(len(dataset)):
        image, target = dataset[index]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=target["image_id"]))
        crowd_seen += sum(a["iscrowd"] for a in anns)
        anns = [a for a in anns if not a["iscrowd"]]  # crowd is not a training target
        info = coco.imgs[target["image_id"]]
        assert image.shape == (3, info["height"], info["width"]) and image.dtype == torch.float32
        assert len(target["masks"]) == len(anns)
        for i, ann in enumerate(anns):
            assert np.array_equal(target["masks"][i].numpy(), coco.annToMask(ann))
            x, y, w, h = ann["bbox"]
            assert target["boxes"][i].tolist() == pytest.approx([x, y, x + w, y + h], abs=1e-4)
            assert dataset.category_ids[target["labels"][i]] == ann["category_id"]
            if has_keypoints:
                expected = np.array(ann.get("keypoints", [0] * 51), np.float32).reshape(17, 3)
                assert np.array_equal(target["keypoints"][i].numpy(), expected)
    assert crowd_seen == sum(a["iscrowd"] for a in coco.anns.values())


def test_category_ids_and_names_follow_the_json(shared_data):
    ann_file = shared_data / "coco" / "val2017-32" / "annotations.json"
    dataset = CocoDataset(ann_file)
    categories = sorted(json.loads(ann_file.read_text())["categories"], key=lambda c: c["id"])
    assert categories[-1]["id"] > len(categories)  # non-contiguous ids, as in COCO (90 for 80)
    assert len(dataset.category_ids) == len(categories) + 1
    assert dataset.category_ids[1:] == tuple(c["id"] for c in categories)
    assert dataset.class_names[1:] == tuple(c["name"] for c in categories)
    assert dataset.class_names[0] == "__background__" and dataset.category_ids[0] == 0


def _tiny_dataset(tmp_path, annotations, categories):
    Image.new("RGB", (8, 6), (255, 0, 0)).save(tmp_path / "a.png")
    Image.new("RGB", (8, 6)).save(tmp_path / "b.png")
    data = {"images": [{"id": 10, "file_name": "a.png", "height": 6, "width": 8},
                       {"id": 11, "file_name": "b.png", "height": 6, "width": 8}],
            "annotations": annotations, "categories": categories}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    return tmp_path / "ann.json"


def _box_ann(ann_id, category_id, iscrowd=0):
    return {"id": ann_id, "image_id": 10, "category_id": category_id, "iscrowd": iscrowd,
            "bbox": [1, 1, 3, 2], "area": 6, "segmentation": [[1, 1, 4, 1, 4, 3, 1, 3]]}


def test_non_contiguous_ids_map_to_sorted_labels(tmp_path):
    ann_file = _tiny_dataset(tmp_path, [_box_ann(1, 7), _box_ann(2, 3), _box_ann(3, 7, iscrowd=1)],
                             [{"id": 7, "name": "seven"}, {"id": 3, "name": "three"}])
    dataset = CocoDataset(ann_file, tmp_path)
    assert dataset.category_ids == (0, 3, 7)
    assert dataset.class_names == ("__background__", "three", "seven")
    image, target = dataset[0]
    assert target["labels"].tolist() == [2, 1]  # id 7 -> label 2, id 3 -> label 1, crowd left out
    assert target["boxes"].tolist() == [[1, 1, 4, 3]] * 2
    assert torch.allclose(image[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert dataset[1][1]["boxes"].shape == (0, 4) and dataset[1][1]["masks"].shape == (0, 6, 8)


def test_skip_empty_drops_images_without_targets(tmp_path):
    ann_file = _tiny_dataset(tmp_path, [_box_ann(1, 1)], [{"id": 1, "name": "a"}])
    assert len(CocoDataset(ann_file, tmp_path)) == 2
    kept = CocoDataset(ann_file, tmp_path, skip_empty=True)
    assert [im["id"] for im in kept.images] == [10]


def test_synthetic_dataset_masks_match_their_boxes(synth_ann):
    dataset = CocoDataset(synth_ann)
    assert dataset.class_names == ("__background__", "circle", "triangle", "square")
    for index in range(len(dataset)):
        _, target = dataset[index]
        for box, mask in zip(target["boxes"], target["masks"]):
            ys, xs = np.nonzero(mask.numpy())
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
