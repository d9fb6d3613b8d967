"""COCO files as labelling tools write them: a real Roboflow export (tests/data/fixtures/
roboflow_coco/SOURCE.md), Label Studio's and CVAT's COCO layouts; what is changed and where the
images are found."""

import json

import numpy as np

from maskrcnn.cli import main
from maskrcnn.data.coco_export import read_coco_export
from real_exports import blank_image, converted_masks, copy_fixture, polygon_mask, read_json


def _roboflow(tmp_path):
    path = copy_fixture("roboflow_coco", "_annotations.coco.json", tmp_path / "train")
    for image in read_json(path)["images"]:  # images beside the json, as Roboflow exports
        blank_image(tmp_path / "train" / image["file_name"], image["height"], image["width"])
    return path


def test_real_roboflow_export_drops_the_dataset_category(tmp_path, capsys):
    path = _roboflow(tmp_path)
    out = tmp_path / "coco.json"
    assert main(["convert-dataset", str(path), "--out", str(out)]) == 0
    assert "format: coco" in capsys.readouterr().out
    raw, coco = read_json(path), read_json(out)
    # category 0 "court" (supercategory "none") is the dataset; 1 "court" and 2 "net" are classes
    assert coco["categories"] == [c for c in raw["categories"] if c["id"] != 0]
    masks = converted_masks(coco)
    names = {c["id"]: c["name"] for c in raw["categories"]}
    files = {im["id"]: im for im in raw["images"]}
    for ann in raw["annotations"]:  # the raw file's polygons, rasterised independently
        image = files[ann["image_id"]]
        truth = polygon_mask(ann["segmentation"], image["height"], image["width"])
        assert any(name == names[ann["category_id"]] and np.array_equal(mask, truth)
                   for name, mask in masks[image["file_name"]])


def test_label_studio_coco_layout(tmp_path):
    """Label Studio's COCO export: result.json + images/, file_name "images\\\\<name>" (Windows),
    category ids from 0 (a real class, kept)."""
    blank_image(tmp_path / "images" / "a.png", 6, 8)
    data = {"images": [{"id": 0, "file_name": "images\\a.png", "width": 8, "height": 6}],
            "categories": [{"id": 0, "name": "cat"}],
            "annotations": [{"id": 0, "image_id": 0, "category_id": 0, "iscrowd": 0, "area": 4,
                             "bbox": [1, 1, 2, 2], "segmentation": [[1, 1, 3, 1, 3, 3, 1, 3]]}]}
    (tmp_path / "result.json").write_text(json.dumps(data))
    coco, root, changes = read_coco_export(tmp_path / "result.json")
    assert root == tmp_path and coco["images"][0]["file_name"] == "images/a.png"
    assert coco["categories"] == data["categories"] and changes == ["file_name separators '\\' -> '/'"]


def test_cvat_coco_layout_finds_images_beside_annotations(tmp_path):
    """CVAT's COCO 1.0 export: annotations/instances_default.json + images/."""
    blank_image(tmp_path / "images" / "a.png", 6, 8)
    (tmp_path / "annotations").mkdir()
    data = {"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 6}],
            "categories": [{"id": 1, "name": "cat", "supercategory": ""}], "annotations": []}
    (tmp_path / "annotations" / "instances_default.json").write_text(json.dumps(data))
    coco, root, changes = read_coco_export(tmp_path / "annotations" / "instances_default.json")
    assert root == tmp_path / "images" and changes == [] and coco["categories"] == data["categories"]
