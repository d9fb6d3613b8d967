"""Three ways from a COCO results file to the 24 bbox + segm numbers, for benchmarks/scaling.py.

- ours: `evaluate_results_file`, what `maskrcnn eval --results` runs (checks the GT and the
  results, scores, writes results.json and metrics.json);
- faster_coco_eval / pycocotools: the library driven as its README shows, per task on the
  detections with only that task's field (as the COCO server scores separate files).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from maskrcnn.evaluation.evaluator import METRIC_NAMES, evaluate_results_file, task_view

TASKS = ("bbox", "segm")


def ours(gt_path, dets_path, out_dir) -> dict:
    return evaluate_results_file(dets_path, gt_path, out_dir)


def faster_coco_eval(gt_path, dets_path, out_dir) -> dict:
    from faster_coco_eval import COCO, COCOeval_faster

    return _library(COCO, lambda gt, dt, task: COCOeval_faster(gt, dt, task, print_function=_silent),
                    gt_path, dets_path)


def pycocotools(gt_path, dets_path, out_dir) -> dict:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return _library(COCO, COCOeval, gt_path, dets_path)


def _library(coco, cocoeval, gt_path, dets_path) -> dict:
    detections = json.loads(Path(dets_path).read_text())
    metrics = {}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = coco(str(gt_path))
        for task in TASKS:
            evaluator = cocoeval(gt, gt.loadRes(task_view(detections, task)), task)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            metrics.update({f"{task}/{n}": float(v) for n, v in zip(METRIC_NAMES[task], evaluator.stats)})
    return metrics


def _silent(*args, **kwargs) -> None:
    pass


ENGINES = {"ours": ours, "faster_coco_eval": faster_coco_eval, "pycocotools": pycocotools}
