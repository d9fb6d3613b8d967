"""Synthetic COCO-format annotations and detections at any size, for benchmarks/scaling.py.

Realistic in the numbers that drive cost, not in pixels: COCO's mean of 7.3 instances per image
(Poisson), 80 categories, 640 x 480 images, star-shaped polygons of 8 to 40 vertices whose areas
span COCO's small / medium / large ranges (log-uniform side 6 to 300 px), about 1 % crowd
regions stored as uncompressed RLE (as COCO stores them). Detections: 100 per image, a jittered
copy of 90 % of the ground-truth instances (5 % of them in another category) and false positives
for the rest, each with a box, a compressed-RLE mask and a score. Everything is a function of
the seed, so two runs of one size see the same data. Polygons are generated as one flat array
of vertices with a count per polygon, so a million of them take seconds.
"""

from __future__ import annotations

import itertools

import numpy as np
from pycocotools import mask as mask_utils

WIDTH, HEIGHT = 640, 480
NUM_CATEGORIES = 80
INSTANCES_PER_IMAGE = 7.3
CROWD_FRACTION = 0.01
CATEGORIES = [{"id": i + 1, "name": f"class_{i + 1}", "supercategory": "thing"}
              for i in range(NUM_CATEGORIES)]


def star_polygons(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n star-shaped polygons inside the image -> (vertices (M, 2) x, y, vertex count per polygon (n,))."""
    counts = rng.integers(8, 41, n)
    owner = np.repeat(np.arange(n), counts)  # (M,) polygon of each vertex
    side = np.exp(rng.uniform(np.log(6), np.log(300), n))  # ~ sqrt(area): COCO's three ranges
    centre = rng.uniform([0, 0], [WIDTH, HEIGHT], (n, 2))
    gaps = rng.uniform(0.2, 1.0, len(owner))  # angular steps, normalised per polygon to a full turn
    ends = np.cumsum(counts)
    turn = np.add.reduceat(gaps, ends - counts)
    angle = 2 * np.pi * (np.cumsum(gaps) - np.repeat(np.cumsum(turn) - turn, counts)) / turn[owner]
    radius = side[owner] * rng.uniform(0.35, 0.65, len(owner))
    xy = centre[owner] + radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
    return _clip_round(xy), counts


def _clip_round(xy: np.ndarray) -> np.ndarray:
    return np.round(np.clip(xy, 0, [WIDTH - 1, HEIGHT - 1]), 2)


def boxes(xy: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(n, 4) xywh boxes of the polygons."""
    starts = np.cumsum(counts) - counts
    low, high = np.minimum.reduceat(xy, starts), np.maximum.reduceat(xy, starts)
    return np.concatenate([low, high - low], 1)


def as_lists(xy: np.ndarray, counts: np.ndarray) -> list[list[float]]:
    """The polygons as COCO lists [x1, y1, x2, y2, ...]."""
    return [part.ravel().tolist() for part in np.split(xy, np.cumsum(counts)[:-1])]


def ground_truth(num_instances: int, seed: int = 0, crowd_fraction: float = CROWD_FRACTION) -> dict:
    """A COCO annotation dict with `num_instances` annotations over ~num_instances / 7.3 images."""
    rng = np.random.default_rng(seed)
    num_images = max(1, round(num_instances / INSTANCES_PER_IMAGE))
    per_image = rng.poisson(INSTANCES_PER_IMAGE, num_images)
    # Poisson counts, repeated or cut to the exact total, sorted so each image's are together
    owner = np.sort(np.resize(np.repeat(np.arange(num_images), per_image), num_instances))
    images = [{"id": i + 1, "file_name": f"{i + 1:08d}.jpg", "width": WIDTH, "height": HEIGHT}
              for i in range(num_images)]
    xy, counts = star_polygons(rng, num_instances)
    polygons, xywh = as_lists(xy, counts), boxes(xy, counts).tolist()
    areas = _polygon_areas(xy, counts).tolist()
    categories = rng.integers(1, NUM_CATEGORIES + 1, num_instances).tolist()
    crowd = (rng.random(num_instances) < crowd_fraction).tolist()
    annotations = [{"id": k + 1, "image_id": int(owner[k]) + 1, "category_id": categories[k],
                    "bbox": xywh[k], "iscrowd": 0, "segmentation": [polygons[k]], "area": areas[k]}
                   for k in range(num_instances)]
    for ann, is_crowd in zip(annotations, crowd):
        if is_crowd:  # COCO's crowd regions are uncompressed RLE
            rle = mask_utils.frPyObjects(ann["segmentation"], HEIGHT, WIDTH)[0]
            ann.update(iscrowd=1, area=float(mask_utils.area(rle)), segmentation={
                "size": [HEIGHT, WIDTH], "counts": _uncompressed_counts(mask_utils.decode(rle))})
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def _polygon_areas(xy: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(n,) shoelace areas."""
    starts = np.cumsum(counts) - counts
    following = np.roll(xy, -1, 0)  # the next vertex; each polygon's last wraps to its first
    following[np.cumsum(counts) - 1] = xy[starts]
    cross = xy[:, 0] * following[:, 1] - xy[:, 1] * following[:, 0]
    return 0.5 * np.abs(np.add.reduceat(cross, starts))


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    """Column-major run lengths of a (H, W) 0/1 mask, starting with a run of zeros."""
    flat = mask.ravel(order="F")
    edges = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    runs = np.diff(edges).tolist()
    return ([0] + runs) if flat[0] else runs


def detections(gt: dict, per_image: int = 100, seed: int = 1) -> list[dict]:
    """`per_image` COCO results per GT image: jittered GT copies, then false positives."""
    rng = np.random.default_rng(seed)
    found = [a for a in gt["annotations"] if not a["iscrowd"] and rng.random() > 0.1]
    found_per_image = np.bincount([a["image_id"] for a in found], minlength=len(gt["images"]) + 1)
    false_per_image = np.maximum(per_image - found_per_image[1:], 0)  # (images,)
    xy, counts = _jittered(rng, [a["segmentation"][0] for a in found])
    false_xy, false_counts = star_polygons(rng, int(false_per_image.sum()))
    xy, counts = np.concatenate([xy, false_xy]), np.concatenate([counts, false_counts])
    image_ids = [a["image_id"] for a in found] + np.repeat(
        [im["id"] for im in gt["images"]], false_per_image).tolist()
    wrong = rng.random(len(found)) < 0.05
    categories = np.where(wrong, rng.integers(1, NUM_CATEGORIES + 1, len(found)),
                          [a["category_id"] for a in found]).tolist()
    categories += rng.integers(1, NUM_CATEGORIES + 1, len(false_counts)).tolist()
    scores = np.concatenate([rng.uniform(0.3, 1.0, len(found)), rng.uniform(0.0, 0.7, len(false_counts))])
    rles = mask_utils.frPyObjects(as_lists(xy, counts), HEIGHT, WIDTH)
    return [{"image_id": image_id, "category_id": category, "bbox": box,
             "score": round(score, 5), "segmentation": {"size": [HEIGHT, WIDTH],
                                                        "counts": rle["counts"].decode("ascii")}}
            for image_id, category, box, score, rle in zip(
                image_ids, categories, boxes(xy, counts).tolist(), scores.tolist(), rles)]


def _jittered(rng: np.random.Generator, polygons: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    """The polygons shifted and scaled by a few percent of their size (good, imperfect detections)."""
    counts = np.array([len(p) // 2 for p in polygons], dtype=np.int64)
    xy = np.fromiter(itertools.chain.from_iterable(polygons), float, int(2 * counts.sum())).reshape(-1, 2)
    starts = np.cumsum(counts) - counts
    mean = np.add.reduceat(xy, starts) / counts[:, None]
    size = np.maximum((np.maximum.reduceat(xy, starts) - np.minimum.reduceat(xy, starts)).max(1), 1.0)
    centre = mean + rng.normal(0, 0.05, (len(counts), 2)) * size[:, None]
    scale = rng.uniform(0.85, 1.15, len(counts))
    owner = np.repeat(np.arange(len(counts)), counts)
    return _clip_round(centre[owner] + (xy - mean[owner]) * scale[owner, None]), counts
