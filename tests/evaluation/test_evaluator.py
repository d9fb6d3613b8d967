"""COCO evaluation: `maskrcnn eval --results` against pycocotools on perturbed ground truth,
Instances -> results conversion by hand, and evaluate_model through a stand-in model."""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from maskrcnn.cli import main
from maskrcnn.evaluation.evaluator import METRIC_NAMES, evaluate_model, instances_to_results
from maskrcnn.errors import ImageError
from maskrcnn.fileio import write_json_atomic
from maskrcnn.ops.rle import decode_rles, encode_masks
from maskrcnn.structures import Instances


def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def _erode(mask, steps):
    for _ in range(steps):  # 4-neighbour erosion, whole mask at once
        mask = mask & np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1)
    return mask


def perturbed_detections(coco: COCO, seed: int) -> list[dict]:
    """GT turned into detections: dropped (15%), duplicated (15%), shifted boxes, eroded masks,
    jittered keypoints, some wrong classes, random scores, plus a few false positives."""
    rng = np.random.default_rng(seed)
    cat_ids = coco.getCatIds()
    detections = []
    for ann in coco.anns.values():
        if rng.random() < 0.15:
            continue
        image = coco.imgs[ann["image_id"]]
        for _ in range(2 if rng.random() < 0.15 else 1):
            x, y, w, h = ann["bbox"]
            mask = _erode(coco.annToMask(ann).astype(bool), int(rng.integers(0, 4)))
            det = {"image_id": ann["image_id"], "score": float(rng.random()),
                   "category_id": int(rng.choice(cat_ids)) if rng.random() < 0.05 else ann["category_id"],
                   "bbox": [x + rng.normal(0, 0.1 * w), y + rng.normal(0, 0.1 * h),
                            w * rng.uniform(0.8, 1.2), h * rng.uniform(0.8, 1.2)],
                   "segmentation": encode_masks(mask[None])[0]}
            if ann.get("num_keypoints", 0) > 0:
                points = np.array(ann["keypoints"], float).reshape(-1, 3)
                points[:, :2] += rng.normal(0, 4, size=(len(points), 2))
                points[:, 2] = 1
                det["keypoints"] = points.ravel().tolist()
            detections.append(det)
    for image_id in list(coco.imgs)[::3]:  # false positives
        image = coco.imgs[image_id]
        mask = np.zeros((image["height"], image["width"]), bool)
        mask[10:50, 20:70] = True
        detections.append({"image_id": image_id, "category_id": int(rng.choice(cat_ids)),
                           "score": float(rng.random()), "bbox": [20.0, 10.0, 50.0, 40.0],
                           "segmentation": encode_masks(mask[None])[0]})
    return detections


def pycocotools_stats(coco: COCO, detections: list[dict], task: str, fields) -> np.ndarray:
    """The reference: pycocotools on a results list holding only `fields` (+ ids and score)."""
    keep = ("image_id", "category_id", "score", *fields)
    view = [{k: d[k] for k in keep if k in d} for d in detections if fields[0] in d]
    dt = _quiet(coco.loadRes, view)
    evaluator = COCOeval(coco, dt, task)
    _quiet(evaluator.evaluate)
    _quiet(evaluator.accumulate)
    _quiet(evaluator.summarize)
    return evaluator.stats


def _cli_metrics(tmp_path, detections, ann_file) -> dict:
    write_json_atomic(tmp_path / "dets.json", detections)
    args = ["eval", "--results", str(tmp_path / "dets.json"), "--data", str(ann_file),
            "--out", str(tmp_path / "out")]
    assert _quiet(main, args) == 0
    return json.loads((tmp_path / "out" / "metrics.json").read_text())


def _assert_task_equal(metrics, task, reference):
    ours = np.array([metrics[f"{task}/{name}"] for name in METRIC_NAMES[task]])
    np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_bbox_and_segm_equal_pycocotools_on_perturbed_coco(shared_data, tmp_path):
    ann_file = shared_data / "coco" / "val2017-32" / "annotations.json"
    coco = _quiet(COCO, str(ann_file))
    detections = perturbed_detections(coco, seed=0)
    metrics = _cli_metrics(tmp_path, detections, ann_file)
    assert set(metrics) == {f"{t}/{n}" for t in ("bbox", "segm") for n in METRIC_NAMES[t]}
    bbox = pycocotools_stats(coco, detections, "bbox", ["bbox"])
    segm = pycocotools_stats(coco, detections, "segm", ["segmentation"])
    assert 0.2 < bbox[0] < 0.9 and 0.2 < segm[0] < 0.9  # perturbed: neither trivial nor perfect
    _assert_task_equal(metrics, "bbox", bbox)
    _assert_task_equal(metrics, "segm", segm)


def test_detections_below_a_score_cut_never_lower_coco_ap(shared_data):
    """Why maskrcnn_effl0_fpn keeps every detection (model.box.score_thresh=0): the ones below a
    cut rank after all the kept ones, so they only extend each class's ranking at its low end and
    pycocotools' AP and AR cannot fall, also on an image where the 100-detection cap binds."""
    ann_file = shared_data / "coco" / "val2017-32" / "annotations.json"
    coco = _quiet(COCO, str(ann_file))
    detections = perturbed_detections(coco, seed=1)
    rng = np.random.default_rng(1)
    crowded = [d for d in detections if d["image_id"] == detections[0]["image_id"]]
    for score in np.concatenate([rng.uniform(0.05, 0.2, 60), rng.uniform(0.0, 0.05, 120)]):
        detections.append({**crowded[int(rng.integers(len(crowded)))], "score": float(score)})
    for ann in coco.anns.values():  # exact copies of the truth below the cut: true positives at IoU .95
        detections.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                           "score": float(rng.uniform(0.0, 0.05)), "bbox": ann["bbox"],
                           "segmentation": encode_masks(coco.annToMask(ann).astype(bool)[None])[0]})
    kept = [d for d in detections if d["score"] >= 0.05]
    on_crowded = [sum(d["image_id"] == crowded[0]["image_id"] for d in dets) for dets in (kept, detections)]
    assert on_crowded[0] < 100 < on_crowded[1]  # the cap binds only once the cut is lifted
    for task, field in (("bbox", "bbox"), ("segm", "segmentation")):
        every, cut = (pycocotools_stats(coco, dets, task, [field]) for dets in (detections, kept))
        assert (every >= cut - 1e-12).all(), (task, every - cut)
        assert every[0] > cut[0]  # the exact copies scored below the cut: a strict gain


def test_keypoints_equal_pycocotools_on_perturbed_coco(shared_data, tmp_path):
    ann_file = shared_data / "coco" / "keypoints-val2017-30" / "annotations.json"
    coco = _quiet(COCO, str(ann_file))
    detections = [{k: d[k] for k in ("image_id", "category_id", "score", "keypoints")}
                  for d in perturbed_detections(coco, seed=1) if "keypoints" in d]
    metrics = _cli_metrics(tmp_path, detections, ann_file)
    assert set(metrics) == {f"keypoints/{n}" for n in METRIC_NAMES["keypoints"]}
    reference = pycocotools_stats(coco, detections, "keypoints", ["keypoints"])
    assert 0.2 < reference[0] < 0.95
    _assert_task_equal(metrics, "keypoints", reference)


def test_model_style_results_with_keypoints_equal_pycocotools(shared_data, tmp_path):
    """A model writes box, mask and keypoints in one detection; keypoints are scored with the
    box kept, so a detection's area (for APm / APl) is its box's."""
    ann_file = shared_data / "coco" / "keypoints-val2017-30" / "annotations.json"
    coco = _quiet(COCO, str(ann_file))
    detections = [d for d in perturbed_detections(coco, seed=3) if "keypoints" in d]
    metrics = _cli_metrics(tmp_path, detections, ann_file)
    _assert_task_equal(metrics, "bbox", pycocotools_stats(coco, detections, "bbox", ["bbox"]))
    _assert_task_equal(metrics, "segm", pycocotools_stats(coco, detections, "segm", ["segmentation"]))
    _assert_task_equal(metrics, "keypoints",
                       pycocotools_stats(coco, detections, "keypoints", ["keypoints", "bbox"]))


def test_synthetic_data_equal_pycocotools_and_mask_scores_rank_masks(synth_ann, tmp_path):
    coco = _quiet(COCO, str(synth_ann))
    detections = perturbed_detections(coco, seed=2)
    rng = np.random.default_rng(0)
    for det in detections:
        det["mask_score"] = float(rng.random())
    metrics = _cli_metrics(tmp_path, detections, synth_ann)
    _assert_task_equal(metrics, "bbox", pycocotools_stats(coco, detections, "bbox", ["bbox"]))
    by_mask_score = [{**d, "score": d["mask_score"]} for d in detections]
    segm = pycocotools_stats(coco, by_mask_score, "segm", ["segmentation"])
    _assert_task_equal(metrics, "segm", segm)
    assert abs(segm[0] - pycocotools_stats(coco, detections, "segm", ["segmentation"])[0]) > 1e-3


def test_instances_to_results_by_hand():
    masks = torch.zeros(2, 6, 8, dtype=torch.bool)
    masks[0, 1:3, 2:6] = True
    instances = Instances((6, 8), boxes=torch.tensor([[2.0, 1.0, 6.0, 3.0], [0.5, 0.5, 1.5, 4.5]]),
                          scores=torch.tensor([0.9, 0.25]), labels=torch.tensor([2, 1]),
                          masks=masks, mask_scores=torch.tensor([0.7, 0.1]),
                          keypoints=torch.arange(12.0).reshape(2, 2, 3))
    results = json.loads(json.dumps(instances_to_results(instances, 42, category_ids=(0, 5, 9))))
    assert [r["category_id"] for r in results] == [9, 5]
    assert results[0]["bbox"] == [2.0, 1.0, 4.0, 2.0] and results[1]["bbox"] == [0.5, 0.5, 1.0, 4.0]
    assert [r["score"] for r in results] == pytest.approx([0.9, 0.25])
    assert results[0]["mask_score"] == pytest.approx(0.7)
    assert results[1]["keypoints"] == [6.0, 7.0, 8.0, 9.0, 10.0, 11.0]
    decoded = decode_rles([r["segmentation"] for r in results], 6, 8)
    assert np.array_equal(decoded, masks.numpy().astype(np.uint8))
    assert all(r["image_id"] == 42 for r in results)
    assert instances_to_results(instances[:0], 42) == []


def test_results_for_unknown_image_are_refused(synth_ann, tmp_path, capsys):
    detections = [{"image_id": 999, "category_id": 1, "score": 0.5, "bbox": [0, 0, 4, 4]}]
    write_json_atomic(tmp_path / "dets.json", detections)
    args = ["eval", "--results", str(tmp_path / "dets.json"), "--data", str(synth_ann),
            "--out", str(tmp_path / "out")]
    assert main(args) == 2
    assert "dets.json: detection 0 is for image 999, which is not in" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


class _GroundTruthModel:
    """Stand-in for a loaded model: `.cfg.model.category_ids` and `.predict(images)` returning
    the GT of each image (recognised by its pixels) as Instances, so every metric must be perfect."""

    def __init__(self, ann_file):
        from types import SimpleNamespace

        from maskrcnn.data.coco import CocoDataset

        self.dataset = CocoDataset(ann_file)
        self.by_pixels = {self.dataset[i][0].numpy().tobytes(): i for i in range(len(self.dataset))}
        model_cfg = SimpleNamespace(category_ids=self.dataset.category_ids,
                                    mask=SimpleNamespace(enabled=True),
                                    keypoint=SimpleNamespace(enabled=False))
        self.cfg = SimpleNamespace(model=model_cfg)

    def predict(self, images):
        out = []
        for pixels in images:
            image, target = self.dataset[self.by_pixels[pixels.numpy().tobytes()]]
            n = len(target["labels"])
            out.append(Instances(image.shape[1:], boxes=target["boxes"], labels=target["labels"],
                                 scores=torch.linspace(1.0, 0.5, n), masks=target["masks"].bool()))
        return out


def test_evaluate_model_on_ground_truth_is_perfect(synth_ann, tmp_path):
    model = _GroundTruthModel(synth_ann)
    metrics = evaluate_model(model, synth_ann.parent / "images", synth_ann, tmp_path, score_thresh=0.6)
    # every synthetic shape scores >= 0.5; the threshold drops the lower-scored ones
    assert metrics["bbox/AP50"] < 1.0
    metrics = evaluate_model(model, model.dataset, synth_ann, tmp_path)
    assert metrics["bbox/AP"] == pytest.approx(1.0) and metrics["segm/AP"] == pytest.approx(1.0)
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results) == len(_quiet(COCO, str(synth_ann)).anns)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    # a model that finds nothing still reports every task of its heads, as zeros
    metrics = evaluate_model(model, model.dataset, synth_ann, tmp_path, score_thresh=2.0)
    assert set(metrics) == {f"{t}/{n}" for t in ("bbox", "segm") for n in METRIC_NAMES[t]}
    assert set(metrics.values()) == {0.0}


def test_eval_command_runs_a_random_weight_model(synth_ann, tmp_path):
    overrides = ["num_classes=4", "min_size=128", "max_size=160", "box_score_thresh=0.0",
                 "rpn_pre_nms_top_n_test=100", "rpn_post_nms_top_n_test=50",
                 "box_detections_per_img=10"]
    args = ["eval", "--model", "maskrcnn_r18_fpn", "--images", str(synth_ann.parent / "images"),
            "--data", str(synth_ann), "--out", str(tmp_path), "--batch-size", "4"]
    assert _quiet(main, args + [a for o in overrides for a in ("--set", o)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    coco = _quiet(COCO, str(synth_ann))
    assert 0 < len(results) <= 10 * len(coco.imgs)
    assert {r["image_id"] for r in results} <= set(coco.imgs)
    assert {r["category_id"] for r in results} <= {1, 2, 3}
    assert decode_rles([r["segmentation"] for r in results], 96, 96).shape == (len(results), 96, 96)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    _assert_task_equal(metrics, "bbox", pycocotools_stats(coco, results, "bbox", ["bbox"]))
    _assert_task_equal(metrics, "segm", pycocotools_stats(coco, results, "segm", ["segmentation"]))


def test_evaluate_model_names_a_missing_image(synth_ann, tmp_path):
    with pytest.raises(ImageError, match=r"000000\.png: image file not found \(image id 1 in"):
        evaluate_model(_GroundTruthModel(synth_ann), tmp_path, synth_ann, tmp_path / "out")
