"""Our COCO evaluation (faster-coco-eval) vs pycocotools on the same large synthetic results.

    .venv/bin/python benchmarks/eval_speed.py [--num-images 5000] [--size 128] [--seed 0]

Ground truth: the synthetic-shapes generator (no image files). Detections: every GT instance
with a shifted box, an eroded mask and a random score, 15% dropped, 15% duplicated. Both sides
load the same json files and run bbox then segm; the wall time includes loading the results.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from maskrcnn.data.synthetic import synthetic_coco  # noqa: E402
from maskrcnn.evaluation.evaluator import METRIC_NAMES, evaluate_results, task_view  # noqa: E402
from maskrcnn.ops.rle import decode_rles, encode_masks  # noqa: E402


def perturbed_detections(data: dict, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    size = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    detections = []
    for ann in data["annotations"]:
        if rng.random() < 0.15:
            continue
        mask = decode_rles([ann["segmentation"]], *size[ann["image_id"]])[0].astype(bool)
        for _ in range(2 if rng.random() < 0.15 else 1):
            eroded = mask & np.roll(mask, 1, 0) & np.roll(mask, -1, 1)  # one-pixel erosion
            x, y, w, h = ann["bbox"]
            detections.append({
                "image_id": ann["image_id"], "category_id": ann["category_id"],
                "bbox": [x + rng.normal(0, 2), y + rng.normal(0, 2), w, h],
                "segmentation": encode_masks(eroded[None])[0], "score": float(rng.random())})
    return detections


def pycocotools_eval(ann_file: Path, detections: list[dict]) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        stats = {}
        for task in ("bbox", "segm"):
            evaluator = COCOeval(gt, gt.loadRes(task_view(detections, task)), task)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            stats[task] = evaluator.stats
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=5000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    data = synthetic_coco(args.num_images, args.seed, args.size)
    detections = perturbed_detections(data, args.seed)
    print(f"{len(data['images'])} images, {len(data['annotations'])} GT instances, "
          f"{len(detections)} detections (built in {time.perf_counter() - start:.1f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        ann_file = Path(tmp) / "gt.json"
        ann_file.write_text(json.dumps(data))

        start = time.perf_counter()
        ours = evaluate_results(detections, ann_file)
        ours_time = time.perf_counter() - start

        start = time.perf_counter()
        reference = pycocotools_eval(ann_file, detections)
        reference_time = time.perf_counter() - start

    diff = max(abs(ours[f"{task}/{name}"] - reference[task][i])
               for task in ("bbox", "segm") for i, name in enumerate(METRIC_NAMES[task]))
    print(f"bbox AP {ours['bbox/AP']:.4f}  segm AP {ours['segm/AP']:.4f}  "
          f"(max difference to pycocotools over all 24 numbers: {diff:.1e})")
    print(f"pycocotools      {reference_time:8.2f} s  (bbox + segm)")
    print(f"ours (faster)    {ours_time:8.2f} s  (bbox + segm)")
    print(f"speed-up         {reference_time / ours_time:8.1f} x")


if __name__ == "__main__":
    main()
