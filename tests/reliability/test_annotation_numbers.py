"""Issue 18, case 1: NaN / infinite / mis-shaped numbers in an annotation file are refused where
the file is read, naming the file and the annotation, before pycocotools sees them (a NaN polygon
coordinate makes its polygon conversion run away, then segfault)."""

import json

import pytest
from reliability_helpers import TINY_TRAIN, assert_one_line_error, read_json, run_cli, write_png

NAN = float("nan")


def _dataset(tmp_path, **changes):
    """One 20x10 image with a good annotation (id 6) and the annotation under test (id 5)."""
    write_png(tmp_path / "img.png", 10, 20)
    ann = {"id": 5, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 16,
           "bbox": [2, 2, 4, 4], "segmentation": [[2, 2, 6, 2, 6, 6, 2, 6]]}
    data = {"images": [{"id": 1, "file_name": "img.png", "height": 10, "width": 20}],
            "annotations": [dict(ann, id=6), {**ann, **changes}],
            "categories": [{"id": 1, "name": "thing"}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))  # json writes NaN / Infinity, as many tools do
    return path


CASES = {
    "nan polygon": (dict(segmentation=[[2, 2, 6, NAN, 6, 6, 2, 6]]),
                    "annotations[1] (id 5): segmentation polygon 0 holds NaN (value 3)"),
    "infinite polygon": (dict(segmentation=[[2, 2, 6, 2, float("inf"), 6, 2, 6]]),
                         "annotations[1] (id 5): segmentation polygon 0 holds inf (value 4)"),
    "text in polygon": (dict(segmentation=[[2, 2, 6, 2, "6", 6, 2, 6]]),
                        "annotations[1] (id 5): segmentation polygon 0 holds '6' (value 4), not a number"),
    "odd polygon": (dict(segmentation=[[2, 2, 6, 2, 6, 6, 2]]),
                    "annotations[1] (id 5): segmentation polygon 0 has 7 values; x, y pairs need an even count"),
    "polygon not a list": (dict(segmentation=[{"x": 1}]),
                           "annotations[1] (id 5): segmentation polygon 0 is not a list of numbers"),
    "nan bbox": (dict(bbox=[2, NAN, 4, 4]), "annotations[1] (id 5): 'bbox' holds NaN (value 1)"),
    "bbox of 3": (dict(bbox=[2, 2, 4]), "annotations[1] (id 5) has no 'bbox' [x, y, width, height]"),
    "nan area": (dict(area=NAN), "annotations[1] (id 5): 'area' holds NaN"),
    "bad rle counts": (dict(segmentation={"size": [10, 20], "counts": [3, -1, 5]}),
                       "annotations[1] (id 5): RLE 'counts' must be a string or a list of counts >= 0"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_number_is_a_one_line_error_before_training(tmp_path, capsys, case):
    changes, message = CASES[case]
    ann_file = _dataset(tmp_path, **changes)
    code, _, err = run_cli(capsys, "train", "--model", "maskrcnn_r18_fpn", "--data", ann_file,
                           "--images", tmp_path, "--out", tmp_path / "run",
                           "--set", *TINY_TRAIN, "solver.max_iter=1")
    assert code == 2
    assert_one_line_error(err, "train", str(ann_file), message)
    assert not (tmp_path / "run").exists()  # refused before any output


def test_nan_in_ground_truth_is_refused_by_eval_and_keeps_old_metrics(tmp_path, capsys):
    ann_file = _dataset(tmp_path, segmentation=[[2, 2, 6, NAN, 6, 6, 2, 6]])
    results = tmp_path / "dets.json"
    results.write_text(json.dumps([{"image_id": 1, "category_id": 1, "score": 0.9, "bbox": [2, 2, 4, 4]}]))
    out = tmp_path / "scores"
    out.mkdir()
    (out / "metrics.json").write_text('{"bbox/AP": 0.5}')
    code, _, err = run_cli(capsys, "eval", "--results", results, "--data", ann_file, "--out", out)
    assert code == 2
    assert_one_line_error(err, "eval", str(ann_file), "annotations[1] (id 5): segmentation polygon 0 holds NaN")
    assert read_json(out / "metrics.json") == {"bbox/AP": 0.5}
