"""The COCO evaluator that computes the numbers: faster-coco-eval, or pycocotools without it.

faster-coco-eval (C++) gives pycocotools' numbers to 1e-9 on everything the evaluator scores
(bbox, segm, keypoints; crowd regions, area ranges, max detections), which
tests/evaluation/test_coco_engine.py checks on the COCO subsets and synthetic crowd cases; pycocotools
is the fallback when faster-coco-eval is not installed. Both expose the same `COCO` / `COCOeval`
API, so the rest of the package does not know which one runs.

Two costs of a large evaluation are ours to cut. `results_index` builds the detections' COCO
object the way `COCO.loadRes` does (ids from 1, iscrowd 0; boxes: area w * h; masks: area and box
of the RLE; keypoints: the box given beside them, or the keypoints' extent), with one batched
RLE call instead of loadRes's per-detection Python loop; and `gc_paused` keeps Python's cyclic
garbage collector from walking the millions of objects of the json files
again and again while they are read and indexed (benchmarks/scaling.py measures both).
"""

from __future__ import annotations

import contextlib
import copy
import gc
import io

from ..ops.rle import rle_area, rle_to_xywh

try:
    from faster_coco_eval import COCO
    from faster_coco_eval import COCOeval_faster as _COCOeval

    ENGINE = "faster-coco-eval"
except ImportError:  # pragma: no cover - exercised by the engine test through a blocked import
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval as _COCOeval

    ENGINE = "pycocotools"


@contextlib.contextmanager
def gc_paused():
    """Pause Python's cyclic garbage collector (a context manager or decorator).

    Reading and indexing a large COCO json makes millions of small objects with no cycles, and
    each batch of them set off a collection that walks everything alive: 40 % of an evaluation's
    time. Reference counting still frees them; collection resumes afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def index(dataset: dict) -> COCO:
    """A COCO object over an annotation dict already in memory (no second read of the file)."""
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def results_index(gt: COCO, detections: list[dict], task: str) -> COCO:
    """The detections of one task as a COCO object over `gt`'s images, as `gt.loadRes` builds it.

    `detections` are fresh dicts (a task view) with the task's field; they are completed in place.
    """
    if task == "segm":
        rles = [d["segmentation"] for d in detections]
        for d, area, box in zip(detections, rle_area(rles).tolist(), rle_to_xywh(rles).tolist()):
            d.update(area=area, bbox=d.get("bbox", box))
    else:  # bbox; keypoints with their detection's box (evaluator.task_view) or without one
        for d in detections:
            if "bbox" not in d:
                d["bbox"] = _keypoints_box(d["keypoints"])
            d["area"] = d["bbox"][2] * d["bbox"][3]
    for k, d in enumerate(detections, 1):
        d["id"], d["iscrowd"] = k, 0
    return index({"images": list(gt.dataset["images"]), "annotations": detections,
                  "categories": copy.deepcopy(gt.dataset["categories"])})


def _keypoints_box(points: list[float]) -> list[float]:
    """loadRes's box of keypoints without one: over every point, labelled or not."""
    xs, ys = points[0::3], points[1::3]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def evaluate(gt: COCO, dt: COCO, task: str, image_ids=None) -> list[float]:
    """COCOeval's summary numbers (`stats`) of one task."""
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = _cocoeval(gt, dt, task)
        if image_ids is not None:
            evaluator.params.imgIds = sorted(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return list(evaluator.stats)


def _cocoeval(gt: COCO, dt: COCO, task: str):
    if ENGINE == "faster-coco-eval":  # it logs its progress unless told otherwise
        return _COCOeval(gt, dt, task, print_function=_silent)
    return _COCOeval(gt, dt, task)


def _silent(*args, **kwargs) -> None:
    pass
