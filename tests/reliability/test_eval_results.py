"""Issue 18, case 5: `maskrcnn eval --results` with NaN scores ended in the evaluator's traceback;
an empty results list exited 0 with an empty metrics.json. Now: one line naming the file and the
detection, exit 2, earlier outputs untouched; an empty list is refused (nothing to score).
`eval --model` with an unreadable image scores the others and says so (exit 1)."""

import json

import pytest
from reliability_helpers import SMALL, assert_one_line_error, png_claiming_size, read_json, run_cli

NAN = float("nan")
GOOD = {"image_id": 1, "category_id": 1, "score": 0.9, "bbox": [2.0, 2.0, 20.0, 20.0]}

CASES = {
    "nan score": ([GOOD, dict(GOOD, score=NAN)], "detection 1: 'score' holds NaN; it must be a finite number"),
    "text score": ([dict(GOOD, score="high")], "detection 0: 'score' holds 'high', not a number"),
    "nan box": ([GOOD, GOOD, dict(GOOD, bbox=[1, NAN, 5, 5])], "detection 2: 'bbox' holds NaN (value 1)"),
    "short box": ([dict(GOOD, bbox=[1, 1, 5])], "detection 0: 'bbox' must be [x, y, width, height]"),
    "nothing to score": ([{"image_id": 1, "category_id": 1, "score": 0.5}],
                         "detection 0 has none of bbox, segmentation, keypoints"),
    "not an object": ([GOOD, 7], "detection 1 is int, not an object"),
    "empty": ([], "holds no detections (an empty list), so there is nothing to score"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_results_are_one_line_and_keep_earlier_outputs(tmp_path, shapes, capsys, case):
    detections, message = CASES[case]
    ann_file, _ = shapes
    results = tmp_path / "dets.json"
    results.write_text(json.dumps(detections))
    out = tmp_path / "scores"
    out.mkdir()
    (out / "metrics.json").write_text('{"bbox/AP": 0.5}')  # from an earlier run
    code, _, err = run_cli(capsys, "eval", "--results", results, "--data", ann_file, "--out", out)
    assert code == 2
    assert_one_line_error(err, "eval", f"{results}: {message}")
    assert read_json(out / "metrics.json") == {"bbox/AP": 0.5}
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"]


def test_unknown_category_is_a_warning_not_an_error(tmp_path, shapes, capsys):
    ann_file, _ = shapes
    results = tmp_path / "dets.json"
    results.write_text(json.dumps([GOOD, dict(GOOD, category_id=77)]))
    code, _, err = run_cli(capsys, "eval", "--results", results, "--data", ann_file, "--out", tmp_path / "o")
    assert code == 0
    assert err == (f"maskrcnn eval: warning: {results}: detections of category ids [77], which {ann_file} "
                   "does not define, are not scored\n")
    assert "bbox/AP" in read_json(tmp_path / "o" / "metrics.json")


def test_eval_model_scores_the_images_it_can_read(tmp_path, shapes, tiny_weights, capsys):
    """One GT image replaced by a 60000x60000 header: the others are scored, results kept, exit 1."""
    ann_file, images = shapes
    folder = tmp_path / "images"
    folder.mkdir()
    for image in images.iterdir():
        (folder / image.name).write_bytes(image.read_bytes())
    bad = png_claiming_size(folder / "000001.png", 60000, 60000)
    out = tmp_path / "eval"
    code, stdout, err = run_cli(capsys, "eval", "--model", "maskrcnn_r18_fpn", "--weights", tiny_weights,
                                "--data", ann_file, "--images", folder, "--out", out, *SMALL)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"maskrcnn eval: warning: skipped {bad}: image of ")
    assert stdout.endswith(f"\n1 images could not be read and are left out of the metrics: {bad}\n")
    results = read_json(out / "results.json")
    assert results and {r["image_id"] for r in results} <= {1, 3}  # ids of 000000, 000002
    # the metrics are pycocotools' on the two images read
    gt = read_json(ann_file)
    gt["images"] = [im for im in gt["images"] if im["id"] != 2]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] != 2]
    assert read_json(out / "metrics.json")["bbox/AP50"] == pytest.approx(_pycocotools_bbox_ap50(gt, results), abs=1e-9)


def _pycocotools_bbox_ap50(gt: dict, results: list) -> float:
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        evaluator = COCOeval(coco, coco.loadRes([{k: r[k] for k in GOOD} for r in results]), "bbox")
        evaluator.evaluate(), evaluator.accumulate(), evaluator.summarize()
    return evaluator.stats[1]
