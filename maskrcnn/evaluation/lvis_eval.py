"""LVIS evaluation by the official LVIS API (`pip install lvis`; 0.5.3 is its last release).

LVIS (Gupta et al., CVPR 2019) is federated: each image lists the categories verified present
(its annotations), verified absent (`neg_category_ids`) and not exhaustively annotated
(`not_exhaustive_category_ids`); a detection of any other category is neither right nor wrong.
AP is reported overall and per frequency group (APr / APc / APf: rare, common, frequent), on at
most 300 detections per image with no score threshold.

The package needs two shims on today's stack, both kept as small as possible: its `__init__`
imports its visualiser, which imports OpenCV (never called here), so an empty stand-in `cv2`
module is registered when OpenCV is absent; its evaluator calls `np.float`, removed in numpy 1.24,
so that one module sees a numpy namespace with `float` restored (the global numpy is untouched).
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import sys
import types

import numpy as np

from ..errors import UserError

MAX_DETS = 300  # per image, the official value
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")


def import_lvis():
    """The `lvis` package with its two compatibility shims in place."""
    if "cv2" not in sys.modules and importlib.util.find_spec("cv2") is None:
        sys.modules["cv2"] = types.ModuleType("cv2")  # for lvis.vis's import only
    try:
        import lvis
        import lvis.eval as lvis_eval
    except ImportError:
        raise UserError("--format lvis needs the LVIS API: pip install --no-deps lvis "
                        "(its only other needs, numpy and pycocotools, are installed)") from None
    if not hasattr(lvis_eval.np, "float"):
        shim = types.ModuleType("numpy")
        shim.__dict__.update(np.__dict__)
        shim.float = float
        lvis_eval.np = shim
    logging.getLogger("lvis").setLevel(logging.WARNING)
    return lvis


def evaluate_lvis(results: list[dict], ann_file, tasks=("bbox", "segm")) -> dict[str, float]:
    """COCO-format `results` against an LVIS json -> {"lvis/{task}/{metric}": value} (percent,
    -100 where a group has no category, as the API's -1)."""
    lvis = import_lvis()
    if not results:
        raise UserError(f"no detections to score against {ann_file}")
    gt = lvis.LVIS(str(ann_file))
    metrics = {}
    for task in tasks:
        if task == "segm" and not all("segmentation" in r for r in results):
            continue
        # as detectron2's LVIS evaluator: box AP from boxes alone
        dets = [{k: v for k, v in r.items() if not (task == "bbox" and k == "segmentation")} for r in results]
        evaluator = lvis.LVISEval(gt, lvis.LVISResults(gt, copy.deepcopy(dets), max_dets=MAX_DETS), task)
        evaluator.run()
        metrics.update({f"lvis/{task}/{name}": float(evaluator.results[name]) * 100 for name in METRICS})
    return metrics


def is_lvis(data: dict) -> bool:
    """An LVIS-style json: categories with frequency groups, or images with federated fields."""
    return any("frequency" in c for c in data.get("categories", [])) or any(
        "not_exhaustive_category_ids" in im or "neg_category_ids" in im for im in data.get("images", []))
