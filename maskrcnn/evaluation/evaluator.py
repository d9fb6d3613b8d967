"""COCO evaluation: predictions -> COCO results json -> the standard COCO numbers.

One results file holds every detection once, in the usual COCO results format: `bbox` (xywh),
`score`, and when the model predicts them `segmentation` (compressed RLE, counts as str) and
`keypoints` (x, y, score flattened). A Mask Scoring model adds `mask_score`, which ranks the
masks in the segm evaluation (the box `score` ranks boxes). Each task is scored on its own view
of the file, as the COCO server scores separate files: segm without `bbox`, so a detection's area
is its mask's. Numbers come from `coco_engine` (faster-coco-eval, else pycocotools); tests check
them against pycocotools.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch

from ..data.images import read_image
from ..errors import DatasetError, ImageError, UserError
from ..fileio import JsonListWriter, atomic_write, write_json_atomic
from ..ops.rle import encode_masks
from . import coco_engine

logger = logging.getLogger(__name__)

# names of COCOeval.stats, in its order; keypoints have no small-object range
_BOX_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
              "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
METRIC_NAMES = {
    "bbox": _BOX_NAMES,
    "segm": _BOX_NAMES,
    "keypoints": ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"),
}
# the results field that makes a detection take part in each task
_TASK_FIELD = {"bbox": "bbox", "segm": "segmentation", "keypoints": "keypoints"}


def instances_to_results(instances, image_id: int, category_ids=()) -> list[dict]:
    """COCO results of one image's `Instances`; label -> dataset id through `category_ids`."""
    if len(instances) == 0:
        return []
    boxes = instances.boxes.detach().cpu().double()  # (N, 4) xyxy
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
    labels = instances.labels.tolist()
    scores = instances.scores.tolist()
    results = [
        {"image_id": int(image_id), "category_id": int(category_ids[l]) if category_ids else int(l),
         "bbox": box, "score": score}
        for l, box, score in zip(labels, xywh, scores)
    ]
    if instances.has("masks"):
        for result, rle in zip(results, encode_masks(instances.masks)):
            result["segmentation"] = rle
    if instances.has("mask_scores"):
        for result, score in zip(results, instances.mask_scores.tolist()):
            result["mask_score"] = score
    if instances.has("keypoints"):
        for result, points in zip(results, instances.keypoints.detach().cpu().flatten(1).tolist()):
            result["keypoints"] = points  # (K * 3,) x, y, score
    return results


def task_view(results: list[dict], task: str) -> list[dict]:
    """The detections of one task, with only the fields the COCO API should see for it."""
    field = _TASK_FIELD[task]
    view = []
    for r in results:
        if field not in r:
            continue
        entry = {"image_id": r["image_id"], "category_id": r["category_id"], field: r[field],
                 "score": r.get("mask_score", r["score"]) if task == "segm" else r["score"]}
        if task == "keypoints" and "bbox" in r:
            entry["bbox"] = r["bbox"]  # the detection's area (APm/APl) comes from its box
        view.append(entry)
    return view


@coco_engine.gc_paused()
def evaluate_results(results: list[dict], ann_file, tasks=None, source: str = "results",
                     image_ids: list[int] | None = None) -> dict[str, float]:
    """{"bbox/AP": ..., "segm/AP": ..., ...} for every task the results and the GT support.

    `source` names the results in error messages (e.g. the results file); `image_ids` limits
    the evaluation to those GT images (default: all).
    """
    gt = load_ground_truth(ann_file)
    _check_results(results, gt, ann_file, source)
    tasks = available_tasks(results, gt) if tasks is None else tasks
    metrics = {}
    for task in (t for t in tasks if t != "keypoints" or _has_keypoints(gt)):
        stats = _evaluate_task(gt, task_view(results, task), task, image_ids)
        metrics.update({f"{task}/{name}": float(v) for name, v in zip(METRIC_NAMES[task], stats)})
    return metrics


def load_ground_truth(ann_file):
    """The GT as a COCO object, validated first (`coco_schema`; pycocotools runs away on a NaN).
    Annotations without a segmentation are left out, as training and check-data leave them out."""
    from ..data.coco import load_json
    from ..data.coco_schema import has_segmentation

    data = load_json(ann_file, need_sizes=True)
    skipped = [ann.get("id") for ann in data["annotations"] if not has_segmentation(ann)]
    if skipped:
        logger.warning("%s: %d x no segmentation (first ids: %s) - left out of the ground truth",
                       ann_file, len(skipped), skipped[:5])
        data = {**data, "annotations": [a for a in data["annotations"] if has_segmentation(a)]}
    return coco_engine.index(data)


def available_tasks(results: list[dict], gt) -> list[str]:
    """The tasks some detection has a field for; keypoints only when the GT defines them."""
    return [task for task, field in _TASK_FIELD.items()
            if any(field in r for r in results) and (task != "keypoints" or _has_keypoints(gt))]


def _has_keypoints(gt) -> bool:
    return any(c.get("keypoints") for c in gt.loadCats(gt.getCatIds()))


def _evaluate_task(gt, detections: list[dict], task: str, image_ids=None) -> list[float]:
    if not detections:
        logger.warning("no %s detections: every %s metric is 0", task, task)
        return [0.0] * len(METRIC_NAMES[task])
    stats = coco_engine.evaluate(gt, coco_engine.results_index(gt, detections, task), task, image_ids)
    return stats[: len(METRIC_NAMES[task])]


def _check_results(results, gt, ann_file, source: str) -> None:
    """Every detection names a GT image and holds finite numbers (the COCO API fails on NaN
    scores with a bare ValueError, and takes a NaN box silently)."""
    if not isinstance(results, list):
        raise UserError(f"{source}: must be a list of COCO detections")
    from ..data.coco_schema import check_rle_fits

    image_ids, category_ids = set(gt.getImgIds()), set(gt.getCatIds())
    unknown_categories = set()
    for i, r in enumerate(results):
        _check_detection(r, f"{source}: detection {i}")
        if r["image_id"] not in image_ids:
            raise DatasetError(f"{source}: detection {i} is for image {r['image_id']}, "
                               f"which is not in {ann_file}")
        if isinstance(r.get("segmentation"), dict):
            image = gt.imgs[r["image_id"]]
            check_rle_fits(r["segmentation"], image["height"], image["width"],
                           f"{source}: detection {i} (image {r['image_id']} in {ann_file})")
        if r["category_id"] not in category_ids:
            unknown_categories.add(r["category_id"])
    if unknown_categories:
        logger.warning("%s: detections of category ids %s, which %s does not define, are not scored",
                       source, sorted(unknown_categories, key=str)[:10], ann_file)


def _check_detection(r, where: str) -> None:
    from ..data.coco_schema import check_finite, check_segmentation

    if not isinstance(r, dict):
        raise UserError(f"{where} is {type(r).__name__}, not an object with image_id, category_id, score")
    missing = [k for k in ("image_id", "category_id", "score") if k not in r]
    if missing:
        raise UserError(f"{where} lacks {', '.join(missing)}")
    if not any(field in r for field in _TASK_FIELD.values()):
        raise UserError(f"{where} has none of {', '.join(_TASK_FIELD.values())}: nothing to score")
    check_finite(r["score"], "'score'", where)
    if "mask_score" in r:
        check_finite(r["mask_score"], "'mask_score'", where)
    if "bbox" in r:
        if not isinstance(r["bbox"], list) or len(r["bbox"]) != 4:
            raise UserError(f"{where}: 'bbox' must be [x, y, width, height]")
        check_finite(r["bbox"], "'bbox'", where)
    if "segmentation" in r:
        check_segmentation(r["segmentation"], where)
    if "keypoints" in r:
        check_finite(r["keypoints"], "'keypoints'", where)


def format_table(metrics: dict[str, float]) -> str:
    """One block per task: a row of metric names over a row of values in percent."""
    blocks = []
    for task, names in METRIC_NAMES.items():
        if f"{task}/AP" not in metrics:
            continue
        header = f"{task:<10}" + "".join(f"{n:>8}" for n in names)
        values = " " * 10 + "".join(f"{100 * metrics[f'{task}/{n}']:>8.2f}" for n in names)
        blocks.append(f"{header}\n{values}")
    return "\n\n".join(blocks)


def evaluate_results_file(results_file, ann_file, out_dir) -> dict[str, float]:
    """Score an existing results json; writes metrics.json and a copy of the results."""
    results = _load_results(results_file)
    if results == []:
        raise UserError(f"{results_file}: holds no detections (an empty list), so there is nothing "
                        "to score; metrics.json was not written")
    metrics = evaluate_results(results, ann_file, source=str(results_file))
    # the file holds the results as read: copied, not serialised again
    atomic_write(Path(out_dir) / "results.json", lambda out: _copy_into(results_file, out))
    write_json_atomic(Path(out_dir) / "metrics.json", metrics)
    return metrics


def _copy_into(path, out) -> None:
    with open(path, "rb") as source:
        shutil.copyfileobj(source, out)


@coco_engine.gc_paused()
def _load_results(path) -> list:
    from ..data.coco import load_json_file

    return load_json_file(path, what="results file")


def evaluate_model(model, dataset_or_paths, ann_file, out_dir, score_thresh: float | None = None,
                   batch_size: int = 1, failed: list[str] | None = None) -> dict[str, float]:
    """Run `model.predict` over the GT images, write results.json + metrics.json, return metrics.

    `dataset_or_paths`: a CocoDataset, an images folder, or image paths; images are matched to
    the GT by file name. Results are streamed to results.json as images are done. An image that
    cannot be read is logged, appended to `failed` and left out of the metrics (they are then
    over the images that were read, rather than counting the unread ones as misses).
    """
    from tqdm import tqdm

    pairs = _image_ids_and_paths(dataset_or_paths, ann_file)
    category_ids = tuple(model.cfg.model.category_ids)
    failed = [] if failed is None else failed
    results, done = [], []
    with JsonListWriter(Path(out_dir) / "results.json") as stream, torch.no_grad():
        for start in tqdm(range(0, len(pairs), batch_size), desc="eval", unit="batch", disable=None):
            chunk = _readable(pairs[start: start + batch_size], failed)  # [(image id, image)]
            if not chunk:
                continue
            predictions = model.predict([image for _, image in chunk])
            for (image_id, _), instances in zip(chunk, predictions):
                if score_thresh is not None:
                    instances = instances[instances.scores >= score_thresh]
                found = instances_to_results(instances, image_id, category_ids)
                results += found
                stream.extend(found)
                done.append(image_id)
    if failed and not done:
        raise ImageError(f"none of the {len(pairs)} images could be read ({failed[0]}, ...); no metrics")
    model_cfg = model.cfg.model
    # the model's heads, not its (possibly empty) output, decide which tables to print
    tasks = (["bbox"] + ["segm"] * model_cfg.mask.enabled
             + ["keypoints"] * model_cfg.keypoint.enabled)
    metrics = evaluate_results(results, ann_file, tasks, image_ids=done if failed else None)
    write_json_atomic(Path(out_dir) / "metrics.json", metrics)
    return metrics


def _readable(pairs, failed: list[str]) -> list[tuple[int, torch.Tensor]]:
    """[(image id, (3, H, W) image)] of the pairs whose image decodes; the others logged + listed."""
    out = []
    for image_id, path in pairs:
        try:
            out.append((image_id, read_image(path)))
        except ImageError as exc:
            logger.warning("skipped %s", exc)
            failed.append(str(path))
    return out


def _image_ids_and_paths(source, ann_file) -> list[tuple[int, Path]]:
    """[(GT image id, image path)] for a dataset, an images folder or a list of paths."""
    if hasattr(source, "image_path") and hasattr(source, "images"):
        return [(im["id"], source.image_path(i)) for i, im in enumerate(source.images)]
    gt = load_ground_truth(ann_file)
    records = gt.loadImgs(gt.getImgIds())
    if isinstance(source, (str, Path)):
        pairs = [(im["id"], Path(source) / im["file_name"]) for im in records]
        missing = [(i, p) for i, p in pairs if not p.is_file()]
        if missing:
            image_id, path = missing[0]
            raise ImageError(f"{path}: image file not found (image id {image_id} in {ann_file}; "
                             f"{len(missing)} of {len(pairs)} missing) - check --images")
        return pairs
    id_by_name = {Path(im["file_name"]).name: im["id"] for im in records}
    pairs = []
    for path in map(Path, source):
        if path.name not in id_by_name:
            raise DatasetError(f"{path}: no image named '{path.name}' in {ann_file}")
        pairs.append((id_by_name[path.name], path))
    return pairs
