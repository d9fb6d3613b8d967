"""The numbers behind `eval --report`: per-class AP, the COCO error breakdown, and detections
matched to the ground truth image by image (score sweep, confusion matrix, per-image quality).

Per-class AP averages faster-coco-eval's precision array exactly as COCO's summary averages it
over all classes (recall thresholds x IoU thresholds, entries of -1 left out), one class at a time.

The error breakdown follows the COCO analysis tool (`CocoEval.analyze`, after Hoiem et al.): per
class, precision/recall curves at IoU .75 (C75) and .50 (C50); at IoU .10 (Loc: localisation
errors forgiven); at IoU .10 with detections on other classes of the same supercategory ignored
(Sim); with detections on any other class ignored (Oth); with every false positive gone (BG:
precision 1 up to the recall reached); and with every miss gone too (FN: 1). Each layer's AP is
the mean precision over recall thresholds and classes; unlike the MATLAB tool, classes without
ground truth are left out of the mean, as COCO's AP leaves them out, so C75 and C50 are AP75
and AP50. The ignore flags need pycocotools' COCOeval, whose `_prepare` otherwise resets them.

Matching for the sweep, the confusion matrix and the image panels is COCO's greedy rule at IoU
0.5: detections in descending score take the best-overlapping unmatched ground truth; one that
only overlaps a crowd region is ignored.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from faster_coco_eval import COCO as FastCOCO
from faster_coco_eval import COCOeval_faster
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..ops.rle import segmentation_to_rle
from .evaluator import task_view

LAYERS = ("C75", "C50", "Loc", "Sim", "Oth", "BG", "FN")
MATCH_IOU = 0.5
SWEEP_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(20))  # 0.00 .. 0.95


def quiet_coco(dataset: dict, api=COCO):
    """A COCO api object over an in-memory dataset dict, without its prints."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = api()
        coco.dataset = dataset
        coco.createIndex()
    return coco


# ---------------------------------------------------------------- per-class AP and PR curves
def per_class_ap(gt_data: dict, results: list[dict], task: str) -> dict:
    """{"classes": [{id, name, num_gt, AP, AP50, AP75}], "recall": (R,), "pr50"/"pr75": {id: (R,)}}.

    AP values are None for a class without ground truth (COCO leaves those out)."""
    gt = quiet_coco({**gt_data, "annotations": [dict(a) for a in gt_data["annotations"]]}, FastCOCO)
    cat_ids = sorted(gt.getCatIds())
    detections = task_view(results, task)
    precision = None
    if detections:
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator = COCOeval_faster(gt, gt.loadRes(detections), task,
                                        print_function=lambda *a, **k: None)
            evaluator.evaluate()
            evaluator.accumulate()
        precision = evaluator.eval["precision"][:, :, :, 0, -1]  # (T, R, K) area all, 100 dets
        iou_thrs, recall = evaluator.params.iouThrs, evaluator.params.recThrs
    else:
        iou_thrs, recall = np.linspace(0.5, 0.95, 10), np.linspace(0, 1, 101)
    counts = _gt_counts(gt_data)
    out = {"recall": [float(r) for r in recall], "pr50": {}, "pr75": {}, "classes": []}
    at50, at75 = int(np.argmin(abs(iou_thrs - 0.5))), int(np.argmin(abs(iou_thrs - 0.75)))
    for k, cat_id in enumerate(cat_ids):
        row = {"id": int(cat_id), "name": gt.cats[cat_id].get("name", str(cat_id)),
               "num_gt": counts.get(cat_id, 0), "AP": None, "AP50": None, "AP75": None}
        if row["num_gt"]:
            p = precision[:, :, k] if precision is not None else np.zeros((len(iou_thrs), len(recall)))
            row.update(AP=_mean_valid(p), AP50=_mean_valid(p[at50]), AP75=_mean_valid(p[at75]))
            out["pr50"][int(cat_id)] = np.clip(p[at50], 0, None).tolist()
            out["pr75"][int(cat_id)] = np.clip(p[at75], 0, None).tolist()
        out["classes"].append(row)
    return out


def _gt_counts(gt_data: dict) -> dict[int, int]:
    counts: dict[int, int] = {}
    for ann in gt_data["annotations"]:
        if not ann.get("iscrowd", 0):
            counts[ann["category_id"]] = counts.get(ann["category_id"], 0) + 1
    return counts


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else 0.0


# ---------------------------------------------------------------- error breakdown
class _IgnoringEval(COCOeval):
    """COCOeval that keeps a ground truth's `analysis_ignore` flag (its `_prepare` would reset
    `ignore` to `iscrowd`)."""

    def _prepare(self):
        super()._prepare()
        for gts in self._gts.values():
            for g in gts:
                g["ignore"] = int(bool(g.get("iscrowd", 0)) or g.get("analysis_ignore", False))


def error_breakdown(gt_data: dict, results: list[dict], task: str) -> dict:
    """{"recall": (R,), "overall": {layer: (R,) precision}, "ap": {layer: AP},
    "per_class": {id: {layer: AP}}} over the classes that have ground truth."""
    detections = task_view(results, task)
    gt_data = _with_rles(gt_data) if task == "segm" else gt_data  # decoded once, not per run
    counts = _gt_counts(gt_data)
    cat_ids = sorted(c["id"] for c in gt_data["categories"] if counts.get(c["id"]))
    recall = np.linspace(0.0, 1.0, 101)
    curves = {}  # id -> (7, R)
    strict = _precision(gt_data, detections, task, [0.75, 0.5, 0.1], use_cats=True)  # (3, R, K)
    supercategory = {c["id"]: c.get("supercategory", c["id"]) for c in gt_data["categories"]}
    all_ids = sorted(c["id"] for c in gt_data["categories"])
    for cat_id in cat_ids:
        own = [d for d in detections if d["category_id"] == cat_id]
        k = all_ids.index(cat_id)
        layers = np.zeros((7, len(recall)))
        layers[:3] = strict[:, :, k] if strict is not None else 0.0
        family = {c for c, s in supercategory.items() if s == supercategory[cat_id]}
        layers[3] = _ignoring_others(gt_data, own, task, cat_id, keep=family)
        layers[4] = _ignoring_others(gt_data, own, task, cat_id, keep=None)
        layers = np.where(layers == -1, 0.0, layers)
        layers[5] = layers[4] > 0
        layers[6] = 1.0
        curves[cat_id] = layers
    overall = np.mean(list(curves.values()), axis=0) if curves else np.zeros((7, len(recall)))
    return {"recall": recall.tolist(),
            "overall": {name: overall[i].tolist() for i, name in enumerate(LAYERS)},
            "ap": {name: float(overall[i].mean()) for i, name in enumerate(LAYERS)},
            "per_class": {int(c): {name: float(v[i].mean()) for i, name in enumerate(LAYERS)}
                          for c, v in curves.items()}}


def _with_rles(gt_data: dict) -> dict:
    """The dataset with every segmentation as the RLE pycocotools would make of it."""
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt_data["images"]}
    annotations = [{**a, "segmentation": segmentation_to_rle(a["segmentation"], *sizes[a["image_id"]])}
                   for a in gt_data["annotations"]]
    return {**gt_data, "annotations": annotations}


def _ignoring_others(gt_data: dict, detections: list[dict], task: str, cat_id: int, keep) -> np.ndarray:
    """(R,) precision of one class's detections at IoU .1, class-agnostic, with ground truth of
    other classes ignored; `keep`: only these classes' ground truth exists at all (None: all)."""
    # only images with this class's objects or detections can change its curve
    images = ({a["image_id"] for a in gt_data["annotations"] if a["category_id"] == cat_id}
              | {d["image_id"] for d in detections})
    annotations = [{**a, "analysis_ignore": a["category_id"] != cat_id} for a in gt_data["annotations"]
                   if a["image_id"] in images and (keep is None or a["category_id"] in keep)]
    data = {**gt_data, "images": [im for im in gt_data["images"] if im["id"] in images],
            "annotations": annotations}
    precision = _precision(data, detections, task, [0.1], use_cats=False)
    return precision[0, :, 0] if precision is not None else np.zeros(101)


def _precision(gt_data: dict, detections: list[dict], task: str, iou_thrs, use_cats: bool):
    """(T, R, K) pycocotools precision (area all, 100 detections), or None without detections."""
    if not detections:
        return None
    # pycocotools writes into annotation dicts (ignore flags, RLEs): it gets shallow copies
    gt = quiet_coco({**gt_data, "annotations": [dict(a) for a in gt_data["annotations"]]})
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = _IgnoringEval(gt, gt.loadRes([dict(d) for d in detections]), task)
        evaluator.params.iouThrs = np.array(iou_thrs)
        evaluator.params.maxDets = [100]
        evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0, 1e10]], ["all"]
        evaluator.params.useCats = int(use_cats)
        evaluator.evaluate()
        evaluator.accumulate()
    return evaluator.eval["precision"][:, :, :, 0, 0]


# ---------------------------------------------------------------- matching one image at a time
def match_images(gt_data: dict, results: list[dict], task: str, class_aware: bool = True) -> dict:
    """image id -> {"detections", "scores", "labels" (D,), "det_gt" (D,) matched GT index or -1,
    "ignored" (D,), "gt_labels" (G,), "gt_crowd" (G,)}: detections in descending score, GT in
    file order."""
    images = {im["id"]: im for im in gt_data["images"]}
    gts = {image_id: [] for image_id in images}
    for ann in gt_data["annotations"]:
        gts[ann["image_id"]].append(ann)
    dets = {image_id: [] for image_id in images}
    for det in task_view(results, task):
        dets[det["image_id"]].append(det)
    return {image_id: _match(sorted(dets[image_id], key=lambda d: -d["score"]), gts[image_id],
                             images[image_id], task, class_aware) for image_id in images}


def _match(dets: list[dict], gts: list[dict], image: dict, task: str, class_aware: bool) -> dict:
    crowd = np.array([bool(g.get("iscrowd", 0)) for g in gts], dtype=bool)
    out = {"detections": dets, "scores": np.array([d["score"] for d in dets]),
           "labels": np.array([d["category_id"] for d in dets]),
           "det_gt": np.full(len(dets), -1), "ignored": np.zeros(len(dets), bool),
           "gt_labels": np.array([g["category_id"] for g in gts]), "gt_crowd": crowd}
    if not dets or not gts:
        return out
    ious = _ious(dets, gts, image, task, crowd)  # (D, G)
    taken = np.zeros(len(gts), bool)
    for d, det in enumerate(dets):
        same = out["gt_labels"] == det["category_id"] if class_aware else np.ones(len(gts), bool)
        candidates = np.where(same & ~crowd & ~taken & (ious[d] >= MATCH_IOU), ious[d], -1.0)
        if candidates.max() >= 0:
            out["det_gt"][d] = int(candidates.argmax())
            taken[out["det_gt"][d]] = True
        elif (same & crowd & (ious[d] >= MATCH_IOU)).any():
            out["ignored"][d] = True
    return out


def _ious(dets, gts, image, task: str, crowd: np.ndarray) -> np.ndarray:
    if task == "segm":
        height, width = image["height"], image["width"]
        d = [segmentation_to_rle(x["segmentation"], height, width) for x in dets]
        g = [segmentation_to_rle(x["segmentation"], height, width) for x in gts]
    else:
        d, g = [x["bbox"] for x in dets], [x["bbox"] for x in gts]
    return np.asarray(mask_utils.iou(d, g, crowd.astype(np.uint8).tolist())).reshape(len(dets), len(gts))


def score_sweep(matches: dict) -> dict:
    """Precision, recall and F1 of the detections scoring >= each threshold, and the best F1."""
    scores = np.concatenate([m["scores"] for m in matches.values()] or [np.zeros(0)])
    tp = np.concatenate([m["det_gt"] >= 0 for m in matches.values()] or [np.zeros(0, bool)])
    ignored = np.concatenate([m["ignored"] for m in matches.values()] or [np.zeros(0, bool)])
    num_gt = sum(int((~m["gt_crowd"]).sum()) for m in matches.values())
    rows = []
    for threshold in SWEEP_THRESHOLDS:
        kept = scores >= threshold
        hits, false = int((tp & kept).sum()), int((~tp & ~ignored & kept).sum())
        rows.append(_prf(threshold, hits, false, num_gt - hits))
    best = max(rows, key=lambda r: (r["f1"], r["threshold"]))  # ties: keep fewer detections
    return {"rows": rows, "best": best, "num_gt": num_gt}


def _prf(threshold: float, tp: int, fp: int, fn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {"threshold": threshold, "tp": tp, "fp": fp, "fn": fn,
            "precision": precision, "recall": recall, "f1": f1}


def image_quality(match: dict, threshold: float) -> dict:
    """TP / FP / missed counts and F1 of one image at a score threshold."""
    kept = match["scores"] >= threshold
    tp = int(((match["det_gt"] >= 0) & kept).sum())
    fp = int(((match["det_gt"] < 0) & ~match["ignored"] & kept).sum())
    fn = int((~match["gt_crowd"]).sum()) - tp
    return _prf(threshold, tp, fp, fn)


def confusion_matrix(agnostic: dict, cat_ids: list[int], threshold: float) -> np.ndarray:
    """(K + 1, K + 1) counts: rows ground-truth class, columns predicted class, the last row and
    column background (a detection on nothing; an object nobody found). Matching ignores class."""
    index = {c: i for i, c in enumerate(cat_ids)}
    background = len(cat_ids)
    matrix = np.zeros((background + 1, background + 1), dtype=np.int64)
    for m in agnostic.values():
        kept = (m["scores"] >= threshold) & ~m["ignored"]
        found = set()
        for label, gt_index in zip(m["labels"][kept], m["det_gt"][kept]):
            row = index[m["gt_labels"][gt_index]] if gt_index >= 0 else background
            matrix[row, index[label]] += 1
            found.add(int(gt_index))
        for g, label in enumerate(m["gt_labels"]):
            if not m["gt_crowd"][g] and g not in found:
                matrix[index[label], background] += 1
    return matrix
