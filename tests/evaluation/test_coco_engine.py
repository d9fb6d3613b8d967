"""The COCO evaluation engine: faster-coco-eval's numbers equal pycocotools' to 1e-9 on the COCO
subsets (crowd regions, keypoints) and on synthetic data dense with crowd regions; the results
index equals `loadRes`'s; the pycocotools fallback gives the same numbers; no garbage collection
runs while an evaluation reads and indexes its files."""

import contextlib
import gc
import importlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from test_evaluator import perturbed_detections, pycocotools_stats

from maskrcnn.evaluation import coco_engine
from maskrcnn.evaluation.evaluator import METRIC_NAMES, evaluate_results, task_view

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import scaling_data  # noqa: E402

SUBSETS = ("val2017-32", "train2017-16", "train2017-6", "keypoints-val2017-30", "keypoints-train2017-30")
FIELDS = {"bbox": ["bbox"], "segm": ["segmentation"], "keypoints": ["keypoints", "bbox"]}


def _reference(ann_file, detections, task):
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ann_file))
    return pycocotools_stats(coco, detections, task, FIELDS[task])


def _assert_equal_to_pycocotools(ann_file, detections, tasks):
    metrics = evaluate_results([dict(d) for d in detections], ann_file, tasks)
    for task in tasks:
        ours = [metrics[f"{task}/{name}"] for name in METRIC_NAMES[task]]
        np.testing.assert_allclose(ours, _reference(ann_file, detections, task), rtol=0, atol=1e-9)
    return metrics


@pytest.mark.parametrize("subset", SUBSETS)
def test_equal_to_pycocotools_on_coco_subsets(shared_data, subset):
    ann_file = shared_data / "coco" / subset / "annotations.json"
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ann_file))
    tasks = ["bbox", "segm"] + ["keypoints"] * subset.startswith("keypoints")
    detections = [d for d in perturbed_detections(coco, seed=0) if "keypoints" in d or len(tasks) == 2]
    metrics = _assert_equal_to_pycocotools(ann_file, detections, tasks)
    assert 0.1 < metrics["segm/AP"] < 0.95  # neither trivial nor perfect


def test_equal_to_pycocotools_with_many_crowd_regions(tmp_path):
    gt = scaling_data.ground_truth(300, seed=3, crowd_fraction=0.3)
    assert sum(a["iscrowd"] for a in gt["annotations"]) > 50
    ann_file = tmp_path / "gt.json"
    ann_file.write_text(json.dumps(gt))
    detections = scaling_data.detections(gt, per_image=30, seed=4)
    _assert_equal_to_pycocotools(ann_file, detections, ["bbox", "segm"])


def test_keypoints_without_boxes_equal_pycocotools(shared_data):
    ann_file = shared_data / "coco" / "keypoints-val2017-30" / "annotations.json"
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ann_file))
    detections = [{k: d[k] for k in ("image_id", "category_id", "score", "keypoints")}
                  for d in perturbed_detections(coco, seed=5) if "keypoints" in d]
    metrics = evaluate_results(detections, ann_file, ["keypoints"])
    reference = pycocotools_stats(coco, detections, "keypoints", ["keypoints"])
    np.testing.assert_allclose([metrics[f"keypoints/{n}"] for n in METRIC_NAMES["keypoints"]], reference,
                               rtol=0, atol=1e-9)


@pytest.mark.parametrize("task", ["bbox", "segm", "keypoints"])
def test_results_index_equals_load_res(shared_data, task):
    ann_file = shared_data / "coco" / "keypoints-val2017-30" / "annotations.json"
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ann_file))
        detections = [d for d in perturbed_detections(coco, seed=6) if "keypoints" in d]
        view = task_view(detections, task)
        expected = coco.loadRes([dict(d) for d in view]).dataset["annotations"]
    ours = coco_engine.results_index(coco_engine.index(json.loads(ann_file.read_text())),
                                     [dict(d) for d in view], task).dataset["annotations"]
    assert len(ours) == len(expected) > 5  # the stand-in has 9 people with keypoints, the real subset more
    for a, b in zip(ours, expected):
        assert (a["id"], a["iscrowd"], a["image_id"], a["category_id"]) == (b["id"], b["iscrowd"],
                                                                            b["image_id"], b["category_id"])
        assert a["area"] == pytest.approx(float(b["area"]), abs=1e-9)
        np.testing.assert_allclose(a["bbox"], np.asarray(b["bbox"], float), atol=1e-9)


def test_pycocotools_fallback_gives_the_same_numbers(shared_data, monkeypatch):
    ann_file = shared_data / "coco" / "val2017-32" / "annotations.json"
    with contextlib.redirect_stdout(io.StringIO()):
        detections = perturbed_detections(COCO(str(ann_file)), seed=7)
    faster = evaluate_results([dict(d) for d in detections], ann_file)
    assert coco_engine.ENGINE == "faster-coco-eval"
    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # import faster_coco_eval fails
    try:
        importlib.reload(coco_engine)
        assert coco_engine.ENGINE == "pycocotools"
        fallback = evaluate_results([dict(d) for d in detections], ann_file)
    finally:
        monkeypatch.undo()
        importlib.reload(coco_engine)
    assert coco_engine.ENGINE == "faster-coco-eval"
    assert faster.keys() == fallback.keys()
    np.testing.assert_allclose([fallback[k] for k in faster], list(faster.values()), rtol=0, atol=1e-9)


def test_no_garbage_collection_while_evaluating(tmp_path):
    """Collections walk every live object; over a large file they were 40 % of the time."""
    gt = scaling_data.ground_truth(150, seed=8)
    ann_file = tmp_path / "gt.json"
    ann_file.write_text(json.dumps(gt))
    detections = scaling_data.detections(gt, per_image=100, seed=9)  # 2,000 results, ~60k objects
    collections = []
    callback = lambda phase, info: collections.append(info["generation"]) if phase == "start" else None  # noqa: E731
    gc.callbacks.append(callback)
    try:
        evaluate_results(detections, ann_file)
    finally:
        gc.callbacks.remove(callback)
    assert gc.isenabled()
    assert collections == []
