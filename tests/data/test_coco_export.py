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


def _dataset_masks(out, image_dir):
    """[(class name, (H, W) bool mask)] of the first image, as training reads `out`."""
    from maskrcnn.data.coco import CocoDataset

    dataset = CocoDataset(out, image_dir)
    _, target = dataset[0]
    return [(dataset.class_names[int(label)], mask.numpy().astype(bool))  # names[0]: background
            for label, mask in zip(target["labels"], target["masks"])], dataset


def test_real_cvat_coco_export(tmp_path, capsys):
    """A CVAT "COCO 1.0" export (fixtures/cvat/SOURCE.md: one image of it, byte-for-byte slices):
    annotations/instances_default.json with images/ beside annotations/, 23 categories with
    supercategory "" (none dropped), polygons with CVAT's `attributes`. Training's masks against
    pycocotools' rasterisation of the raw polygons."""
    path = copy_fixture("cvat", "instances_default.json", tmp_path / "task" / "annotations")
    raw = read_json(path)
    (image,) = raw["images"]
    h, w = image["height"], image["width"]
    blank_image(tmp_path / "task" / "images" / image["file_name"], h, w)
    out = tmp_path / "coco.json"
    assert main(["convert-dataset", str(path), "--out", str(out)]) == 0
    assert "format: coco" in capsys.readouterr().out
    coco = read_json(out)
    assert coco["categories"] == raw["categories"] and len(coco["categories"]) == 23
    got, _ = _dataset_masks(out, tmp_path / "task" / "images")
    names = {c["id"]: c["name"] for c in raw["categories"]}
    expected = [(names[a["category_id"]], polygon_mask(a["segmentation"], h, w))
                for a in raw["annotations"]]
    assert [n for n, _ in got] == [n for n, _ in expected] and len(got) == 5
    for (_, mask), (_, truth) in zip(got, expected):
        assert truth.sum() > 1000 and np.array_equal(mask, truth)


def test_real_label_studio_coco_export(tmp_path, capsys):
    """Label Studio's "COCO" export (fixtures/label_studio/SOURCE.md: result.json, written by
    Label Studio's exporter from export_for_coco.json): a polygon, a rectangle with an empty
    `segmentation` and a keypoint annotation without one (both left out by training, counted),
    category ids from 2, file_name "images/<name>". The polygon's mask equals the one the Label
    Studio JSON importer makes from the same task's JSON export."""
    path = copy_fixture("label_studio", "result.json", tmp_path / "ls")
    raw = read_json(path)
    (image,) = raw["images"]
    blank_image(tmp_path / "ls" / image["file_name"], image["height"], image["width"])
    out = tmp_path / "coco.json"
    assert main(["convert-dataset", str(path), "--out", str(out)]) == 0
    assert "format: coco" in capsys.readouterr().out
    assert read_json(out)["categories"] == raw["categories"]
    got, dataset = _dataset_masks(out, tmp_path / "ls")
    assert dict(dataset.skipped) == {"no segmentation": 2}
    polygon = raw["annotations"][1]["segmentation"]
    assert [n for n, _ in got] == ["polygon_label"]
    assert np.array_equal(got[0][1], polygon_mask(polygon, image["height"], image["width"]))
    json_export = copy_fixture("label_studio", "export_for_coco.json", tmp_path / "json")
    blank_image(tmp_path / "json" / "test_image1.jpg", image["height"], image["width"])
    assert main(["convert-dataset", str(json_export), "--out", str(tmp_path / "from_json.json")]) == 0
    from_json = dict(converted_masks(read_json(tmp_path / "from_json.json"))["test_image1.jpg"])
    assert got[0][1].sum() > 100 and np.array_equal(got[0][1], from_json["polygon_label"])


def _cvat_brush_export(tmp_path, attributes: bool):
    """The real CVAT COCO export (fixtures/cvat) with its first polygon redrawn as CVAT writes a
    brush mask: an uncompressed RLE (column-major runs) with iscrowd 1. `attributes`: whether
    annotations keep CVAT's `attributes` (with `occluded`)."""
    path = copy_fixture("cvat", "instances_default.json", tmp_path / "task" / "annotations")
    raw = read_json(path)
    (image,) = raw["images"]
    h, w = image["height"], image["width"]
    blank_image(tmp_path / "task" / "images" / image["file_name"], h, w)
    truth = polygon_mask(raw["annotations"][0]["segmentation"], h, w)
    flat = truth.T.ravel()  # column-major, as COCO's RLE runs
    bounds = np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [flat.size]])
    counts = ([0] if flat[0] else []) + np.diff(bounds).tolist()  # runs start with background
    raw["annotations"][0] = {**raw["annotations"][0], "iscrowd": 1, "segmentation": {"counts": counts, "size": [h, w]}}
    if not attributes:
        raw["annotations"] = [{k: v for k, v in a.items() if k != "attributes"} for a in raw["annotations"]]
    path.write_text(json.dumps(raw))
    return path, truth


def test_cvat_brush_masks_marked_crowd_become_objects(tmp_path):
    """CVAT's COCO export writes each brush mask as a crowd RLE: training would leave it out.
    The on-the-fly conversion makes it an object, its mask pixel for pixel the drawn one."""
    from maskrcnn.data.formats import as_coco_file

    path, truth = _cvat_brush_export(tmp_path, attributes=True)
    out, root, note = as_coco_file(path, None, tmp_path / "cache")
    assert "1 mask annotations iscrowd 1 -> 0" in note and root == tmp_path / "task" / "images"
    got, _ = _dataset_masks(out, root)
    assert len(got) == 5 and np.array_equal(got[0][1], truth) and truth.sum() > 1000


def test_crowd_regions_outside_cvat_stay_crowd_and_check_data_says_so(tmp_path):
    """Without CVAT's attributes an iscrowd 1 RLE is a crowd region, as COCO defines it: left out
    of training; check-data warns when crowd regions outnumber the objects."""
    from maskrcnn.data.check import check_dataset
    from maskrcnn.data.formats import as_coco_file

    path, _ = _cvat_brush_export(tmp_path, attributes=False)
    raw = read_json(path)
    raw["annotations"] = [{**a, "iscrowd": 1} for a in raw["annotations"][:3]] + raw["annotations"][3:]
    path.write_text(json.dumps(raw))
    out, root, note = as_coco_file(path, None, tmp_path / "cache")
    assert out == path and note is None  # a plain COCO file, used as it is
    got, _ = _dataset_masks(out, root)
    assert len(got) == 2
    result, _ = check_dataset(out, root, 800, 1333, 32)
    assert result.stats["crowd_regions"] == 3 and result.stats["instances"] == 2
    assert any("3 annotations are crowd regions (iscrowd 1) and only 2 are objects" in w for w in result.warnings)
