"""Issue 25, cases 2-6, 8 and 16b: malformed COCO files get one line naming the file, the record
and the field (exit 2) from check-data, train and eval alike (maskrcnn/data/coco_schema.py);
nothing is written outside --out."""

import copy
import json

import pytest
from hostile_checks import assert_refused, train_argv, write_coco
from reliability_helpers import run_cli

from maskrcnn.data.coco import CocoDataset


@pytest.fixture()
def coco(shapes):
    ann, _ = shapes
    return json.loads(ann.read_text())


def _three_commands(capsys, tmp_path, shapes, data, *expected):
    """check-data, train (2 iterations) and eval --results refuse `data` with `expected` texts."""
    images = str(shapes[1])
    ann = write_coco(tmp_path / "bad.json", data)
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": 1, "category_id": 1, "score": 0.5, "bbox": [1, 1, 9, 9]}]))
    assert_refused(capsys, tmp_path, "check-data", ["--data", ann, "--images", images, "--out",
                   tmp_path / "c"], ann, *expected, out=tmp_path / "c")
    assert_refused(capsys, tmp_path, "train", train_argv(ann, images, tmp_path / "t"), ann, *expected,
                   out=tmp_path / "t")
    assert not (tmp_path / "t").exists()  # refused before the run folder is made
    assert_refused(capsys, tmp_path, "eval", ["--results", results, "--data", ann, "--out", tmp_path / "e"],
                   ann, *expected, out=tmp_path / "e")


def test_annotation_that_is_not_an_object(capsys, tmp_path, shapes, coco):
    coco["annotations"].insert(2, 5)
    _three_commands(capsys, tmp_path, shapes, coco, "annotations[2] is 5 (a int), not an object")


def test_category_without_id(capsys, tmp_path, shapes, coco):
    del coco["categories"][1]["id"]
    _three_commands(capsys, tmp_path, shapes, coco, "categories[1] has no 'id'")


def test_two_categories_with_one_name_are_refused_naming_both_ids(capsys, tmp_path, shapes, coco):
    first, second = coco["categories"][:2]
    second["name"] = first["name"]
    _three_commands(capsys, tmp_path, shapes, coco,
                    f"categories with ids {first['id']} and {second['id']} are both named '{first['name']}'")


def test_json_with_a_bom(capsys, tmp_path, shapes, coco):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(coco).encode())
    assert_refused(capsys, tmp_path, "check-data", ["--data", path, "--images", shapes[1], "--out", tmp_path / "o"],
                   str(path), "byte order mark (BOM)", out=tmp_path / "o")


def test_no_image_size_and_an_rle_of_another_size(capsys, tmp_path, shapes, coco):
    """Without width/height in the json, an RLE is checked against the image file's size: train
    and check-data name the annotation; eval (which reads no images) needs the sizes."""
    for image in coco["images"]:
        del image["width"], image["height"]
    ann = next(a for a in coco["annotations"] if a["image_id"] == coco["images"][1]["id"])
    ann["segmentation"]["size"] = [32, 128]  # the image is 64 x 64
    path = write_coco(tmp_path / "bad.json", coco)
    expected = (f"annotation {ann['id']} (image {ann['image_id']}, 64x64",
                "'segmentation' RLE size [32, 128] differs from its image's [height, width] [64, 64]")
    assert_refused(capsys, tmp_path, "train", train_argv(path, str(shapes[1]), tmp_path / "t"),
                   path, *expected, out=tmp_path / "t")
    line = assert_refused(capsys, tmp_path, "check-data", ["--data", path, "--images", shapes[1], "--out",
                          tmp_path / "c"], *expected, out=tmp_path / "c")
    assert line.count(path) == 1
    report = json.loads((tmp_path / "c" / "check.json").read_text())
    assert len(report["errors"]) == 1 and "RLE size [32, 128]" in report["errors"][0]
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": 1, "category_id": 1, "score": 0.5, "bbox": [1, 1, 9, 9]}]))
    assert_refused(capsys, tmp_path, "eval", ["--results", results, "--data", path, "--out", tmp_path / "e"],
                   path, "images[0] (id 1): no 'height'; evaluation needs each image's width and height",
                   out=tmp_path / "e")


def test_annotation_without_segmentation_is_skipped_by_all_three(capsys, tmp_path, shapes, coco):
    """One rule: skipped and counted (a warning) by check-data, train and eval; eval scores the
    others as if the skipped annotation were not in the file."""
    removed = coco["annotations"][0]
    del removed["segmentation"]
    path = write_coco(tmp_path / "nosegm.json", coco)
    without = copy.deepcopy(coco)
    without["annotations"] = without["annotations"][1:]
    reference = write_coco(tmp_path / "without.json", without)
    code, _, err = run_cli(capsys, "check-data", "--data", path, "--images", shapes[1], "--out", tmp_path / "c")
    assert code == 0 and "1 x no segmentation" in err
    report = json.loads((tmp_path / "c" / "check.json").read_text())
    assert report["stats"]["skipped_annotations"] == {"no segmentation": 1}
    assert report["stats"]["instances"] == len(coco["annotations"]) - 1
    dataset = CocoDataset(path, shapes[1])  # what train reads (its run: test_mutated_coco.py)
    assert dataset.skipped == {"no segmentation": 1}
    assert sum(len(dataset[i][1]["labels"]) for i in range(len(dataset))) == len(coco["annotations"]) - 1
    detections = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 0.9, "bbox": a["bbox"],
                   "segmentation": a["segmentation"]} for a in coco["annotations"][1:4]]
    (tmp_path / "r.json").write_text(json.dumps(detections))
    code, _, err = run_cli(capsys, "eval", "--results", tmp_path / "r.json", "--data", path, "--out", tmp_path / "e")
    assert code == 0 and f"1 x no segmentation (first ids: [{removed['id']}])" in err
    code, _, _ = run_cli(capsys, "eval", "--results", tmp_path / "r.json", "--data", reference, "--out", tmp_path / "e2")
    assert code == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics == json.loads((tmp_path / "e2" / "metrics.json").read_text())
    assert 0 < metrics["segm/AR100"] < 1


def test_results_rle_of_another_size(capsys, tmp_path, shapes):
    ann = shapes[0]
    first = json.loads(ann.read_text())["annotations"][0]
    rle = dict(first["segmentation"], size=[32, 128])
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": first["image_id"], "category_id": 1, "score": 0.5,
                                    "bbox": first["bbox"], "segmentation": rle}]))
    assert_refused(capsys, tmp_path, "eval", ["--results", results, "--data", ann, "--out", tmp_path / "e"],
                   f"{results}: detection 0 (image {first['image_id']} in {ann}): 'segmentation' RLE size "
                   "[32, 128] differs from its image's [height, width] [64, 64]", out=tmp_path / "e")
    assert not (tmp_path / "e").exists()
