"""The reference the benchmark tests score saved detections with: pycocotools' COCOeval."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def pycocotools_stats(ann_file: Path, results: list[dict], task: str) -> np.ndarray:
    """COCOeval's 12 numbers for one task, on the detections with only that task's field; masks
    are ranked by `mask_score` when the detections have one (Mask Scoring R-CNN)."""
    field = {"bbox": "bbox", "segm": "segmentation"}[task]
    score = "mask_score" if task == "segm" and results and "mask_score" in results[0] else "score"
    view = [{"image_id": r["image_id"], "category_id": r["category_id"], field: r[field], "score": r[score]}
            for r in results]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        evaluator = COCOeval(gt, gt.loadRes(view), task)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats
