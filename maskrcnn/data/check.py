"""`check-data` logic: validate a COCO dataset the way training reads it, describe it, and warn
about the mistakes that make a model "detect nothing".

Errors are everything the reader (`CocoDataset`) rejects, plus every image file that is missing,
cannot be decoded or differs in size from the json; all of them are listed, not just the first.
Statistics: images, instances per class, instances per image, object sizes by COCO's areas
(small: area < 32^2, medium: < 96^2, large: the rest, from the annotation's `area` as COCO
evaluation reads it), box aspect ratios (width / height), empty images, crowd regions, and
annotations the reader skips, boxes it clips to the image (kept: reported as clipped). Warnings: box and mask disagree (the bbox overlaps the mask's
tight box with IoU < 0.5; boxes under 8 x 8 px excepted), objects smaller than the smallest
anchor once the image is resized for the model, classes with fewer than 10 instances, images
whose long side is over twice `input.max_size`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import UserError
from ..model.detector import resized_size
from ..ops.rle import rle_to_xywh, segmentation_to_rle
from ..structures import Instances
from ..visualize import draw_instances
from .coco import CocoDataset
from .images import image_size, open_image, oriented_size

SMALL, MEDIUM = 32**2, 96**2  # COCO's area ranges
CLIPPED = "clipped box"  # the reader's count of boxes clipped to their image (kept, not skipped)
FEW_INSTANCES = 10
TOO_LARGE = 2.0  # long side over this many times input.max_size
DISAGREE_IOU = 0.5  # a bbox overlapping its mask's tight box less than this is wrong...
DISAGREE_MIN_AREA = 64  # ...unless it is so small that pixel rounding alone can do that


@dataclass
class CheckResult:
    """What `check_dataset` found: `errors` (the dataset cannot be trained on as it is; each one
    line naming the file), `warnings` (it can, but something looks wrong); `stats`: counts (images,
    instances, crowd regions, instances per class, images over the max size, clipped boxes,
    skipped annotations, ...)."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """{"errors", "warnings", "stats"}: what check-data writes to check.json."""
        return {"errors": self.errors, "warnings": self.warnings, "stats": self.stats}


def check_dataset(ann_file, image_dir, min_size: int, max_size: int, smallest_anchor: int):
    """-> (CheckResult, the dataset or None when the annotation file itself is unusable).

    `min_size` / `max_size`: the model's input resize; `smallest_anchor`: its smallest anchor side.
    """
    result = CheckResult()
    try:
        dataset = CocoDataset(ann_file, image_dir, check_files=False)
    except UserError as exc:
        result.errors.append(str(exc))
        return result, None
    sizes = _check_images(dataset, result.errors)
    anns = [dataset._anns[im["id"]] for im in dataset.images]
    result.stats = _statistics(dataset, anns, sizes, max_size)
    result.warnings = _warnings(dataset, anns, result.stats, (min_size, max_size), smallest_anchor)
    return result, dataset


def _check_images(dataset: CocoDataset, errors: list[str]) -> list[tuple[int, int]]:
    """Decode every image as training will; returns each image's (H, W) per the json."""
    sizes = []
    for index, record in enumerate(dataset.images):
        path = dataset.image_path(index)
        if not path.is_file():
            what = "is a folder, not an image file" if path.is_dir() else "image file not found"
            errors.append(f"{path}: {what} (image id {record['id']})")
        else:
            try:
                dataset.check_size(index, *_decoded_size(path))  # and RLE sizes, without json sizes
            except UserError as exc:
                errors.append(str(exc))
        sizes.append(_json_size(record, path))
    return sizes


def _decoded_size(path: Path) -> tuple[int, int]:
    """(H, W) after EXIF orientation of a fully decoded image (a truncated file fails here)."""
    with open_image(path) as image:
        image.load()
        return oriented_size(image)


def _json_size(record: dict, path: Path) -> tuple[int, int]:
    if "height" in record and "width" in record:
        return int(record["height"]), int(record["width"])
    return image_size(path) if path.is_file() else (0, 0)


def _statistics(dataset: CocoDataset, anns: list[list[dict]], sizes, max_size: int) -> dict:
    flat = [a for image_anns in anns for a in image_anns]
    per_image = np.array([len(a) for a in anns])
    areas = np.array([a["area"] for a in flat], dtype=np.float64)
    boxes = np.array([a["bbox_xyxy"] for a in flat], dtype=np.float64).reshape(-1, 4)
    ratios = (boxes[:, 2] - boxes[:, 0]) / np.maximum(boxes[:, 3] - boxes[:, 1], 1e-9)
    raw = json.loads(dataset.ann_file.read_text())["annotations"]
    long_sides = np.array([max(s) for s in sizes])
    return {
        "images": len(dataset.images),
        "instances": len(flat),
        "crowd_regions": sum(1 for a in raw if a.get("iscrowd", 0)),
        "skipped_annotations": {r: n for r, n in dataset.skipped.items() if r != CLIPPED},
        "clipped_boxes": dataset.skipped.get(CLIPPED, 0),
        "empty_images": int((per_image == 0).sum()),
        "instances_per_class": {name: sum(a["label"] == label for a in flat)
                                for label, name in enumerate(dataset.class_names) if label > 0},
        "instances_per_image": _summary(per_image),
        "object_sizes": {"small": int((areas < SMALL).sum()),
                         "medium": int(((areas >= SMALL) & (areas < MEDIUM)).sum()),
                         "large": int((areas >= MEDIUM).sum())},
        "aspect_ratio": _summary(ratios),
        "image_long_side": _summary(long_sides),
        "images_over_max_size": int((long_sides > TOO_LARGE * max_size).sum()),
    }


def _summary(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {}
    return {"min": float(values.min()), "median": float(np.median(values)),
            "mean": float(values.mean()), "max": float(values.max())}


def _warnings(dataset: CocoDataset, anns, stats: dict, resize, smallest_anchor: int) -> list[str]:
    warnings = []
    disagree, tiny, total = [], 0, 0
    for record, image_anns in zip(dataset.images, anns):
        height, width = record.get("height"), record.get("width")
        if not image_anns or not height or not width:
            continue
        rles = [segmentation_to_rle(a["segmentation"], height, width) for a in image_anns]
        mask_boxes = rle_to_xywh(rles)  # (N, 4) xywh
        boxes = np.array([a["bbox_xyxy"] for a in image_anns])  # (N, 4) xyxy
        ious = _paired_iou(boxes, mask_boxes)
        box_areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        disagree += [a["id"] for a, iou, area in zip(image_anns, ious, box_areas)
                     if iou < DISAGREE_IOU and area >= DISAGREE_MIN_AREA]
        scale = resized_size(height, width, *resize)[0] / height  # as the model resizes
        sides = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])) * scale
        tiny += int((sides < smallest_anchor).sum())
        total += len(image_anns)
    if disagree:
        warnings.append(f"{len(disagree)} annotations have a bbox that disagrees with their mask's "
                        f"tight box (first ids: {disagree[:5]}); the box head learns the bbox, the "
                        "mask head the mask - re-export or recompute the boxes")
    if tiny:
        warnings.append(f"{tiny} of {total} objects ({100 * tiny / total:.0f}%) are smaller than the "
                        f"smallest anchor ({smallest_anchor} px) once images are resized to short "
                        f"side {resize[0]} / long side <= {resize[1]}: use smaller anchors "
                        "(model.anchors.sizes) or a larger input.min_size")
    if stats["crowd_regions"] > stats["instances"]:
        warnings.append(f"{stats['crowd_regions']} annotations are crowd regions (iscrowd 1) and only "
                        f"{stats['instances']} are objects: training leaves crowd regions out and "
                        "evaluation ignores them; if they are objects, set their iscrowd to 0")
    few = {n: c for n, c in stats["instances_per_class"].items() if c < FEW_INSTANCES}
    if few:
        warnings.append(f"{len(few)} classes have fewer than {FEW_INSTANCES} instances: "
                        + ", ".join(f"{n} ({c})" for n, c in list(few.items())[:10]))
    if stats["images_over_max_size"]:
        warnings.append(f"{stats['images_over_max_size']} images have a long side over "
                        f"{TOO_LARGE:g} x input.max_size ({resize[1]} px): they are shrunk a lot "
                        "(small objects vanish); tile them or raise input.max_size")
    if stats["clipped_boxes"]:
        warnings.append(f"{stats['clipped_boxes']} boxes reach outside their image and are clipped "
                        "to it (kept for training)")
    if stats["skipped_annotations"]:
        warnings.append("the reader skips annotations: " + ", ".join(
            f"{n} x {reason}" for reason, n in stats["skipped_annotations"].items()))
    return warnings


def _paired_iou(boxes: np.ndarray, mask_xywh: np.ndarray) -> np.ndarray:
    """(N,) IoU of each xyxy box with the same row's xywh mask box."""
    mask_boxes = np.concatenate([mask_xywh[:, :2], mask_xywh[:, :2] + mask_xywh[:, 2:]], axis=1)
    low, high = np.maximum(boxes[:, :2], mask_boxes[:, :2]), np.minimum(boxes[:, 2:], mask_boxes[:, 2:])
    inter = np.clip(high - low, 0, None).prod(axis=1)
    union = (boxes[:, 2:] - boxes[:, :2]).prod(axis=1) + mask_xywh[:, 2:].prod(axis=1) - inter
    return inter / np.maximum(union, 1e-9)


def overlay_grid(dataset: CocoDataset, count: int = 16, columns: int = 4, cell: int = 320) -> Image.Image:
    """The first `count` readable images with their ground truth drawn, tiled `columns` wide."""
    tiles = []
    for index in range(len(dataset)):
        if len(tiles) == count:
            break
        try:
            image, target = dataset[index]
        except UserError:
            continue  # listed among the errors already
        instances = Instances(image.shape[1:], dataset.class_names, boxes=target["boxes"],
                              labels=target["labels"], masks=target["masks"].bool())
        tile = draw_instances(image, instances)
        tile.thumbnail((cell, cell))
        tiles.append(tile)
    rows = max(1, -(-len(tiles) // columns))
    grid = Image.new("RGB", (columns * cell, rows * cell), (32, 32, 32))
    for i, tile in enumerate(tiles):
        grid.paste(tile, ((i % columns) * cell, (i // columns) * cell))
    return grid


def format_report(result: CheckResult) -> str:
    """A few readable lines: counts, then warnings and errors."""
    stats, lines = result.stats, []
    if stats:
        lines.append(f"{stats['images']} images ({stats['empty_images']} without objects), "
                     f"{stats['instances']} instances, {stats['crowd_regions']} crowd regions")
        lines.append("per class: " + ", ".join(f"{n} {c}" for n, c in stats["instances_per_class"].items()))
        per_image = stats["instances_per_image"]
        if per_image:
            lines.append(f"per image: min {per_image['min']:g}, median {per_image['median']:g}, "
                         f"mean {per_image['mean']:.2f}, max {per_image['max']:g}")
        sizes = stats["object_sizes"]
        lines.append(f"sizes: small {sizes['small']}, medium {sizes['medium']}, large {sizes['large']}")
    lines += [f"warning: {w}" for w in result.warnings]
    lines += [f"error: {e}" for e in result.errors[:20]]
    if len(result.errors) > 20:
        lines.append(f"... and {len(result.errors) - 20} more errors (all in check.json)")
    return "\n".join(lines)

