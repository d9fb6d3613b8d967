"""COCO instances dataset, `coco.json`: images, categories (the model's classes, ids 1..K) and
one annotation per instance whose `segmentation` lists its parts' polygons; `score` is kept on
each annotation. CVAT, Label Studio's converter and this project read it (image `file_name` is
relative to the json's folder)."""

from __future__ import annotations

import json

import numpy as np

from .traced import TracedImage, flat

FILE = "coco.json"


def files(images: list[TracedImage], class_names: list[str], root=None) -> dict[str, bytes]:
    """The predictions as COCO, {"coco.json": bytes}: categories are `class_names` (without the
    background), ids 1..K, then any other predicted name; per instance an annotation with its
    parts' polygons (pixels), area (pixels), bbox (xywh pixels) and score. Image file names are
    relative to `root` when given."""
    used = {label for image in images for label in image.labels}
    names = list(class_names) + sorted(used - set(class_names))
    category = {name: i for i, name in enumerate(names, start=1)}
    entries, annotations = [], []
    for image_id, image in enumerate(images, start=1):
        entries.append({"id": image_id, "file_name": image.name_from(root), "height": image.height,
                        "width": image.width})
        for label, score, parts in image.instances():
            points = np.concatenate(parts)  # (P, 2)
            x0, y0 = points.min(0)
            x1, y1 = points.max(0)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": category[label], "segmentation": [flat(p) for p in parts],
                                "area": float(sum(abs(_area(p)) for p in parts)),
                                "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                                "iscrowd": 0, "score": round(score, 4)})
    dataset = {"images": entries, "annotations": annotations,
               "categories": [{"id": i, "name": n} for n, i in category.items()]}
    return {FILE: json.dumps(dataset).encode()}


def _area(ring: np.ndarray) -> float:
    """Shoelace area of a (P, 2) polygon (a keyhole's cut adds nothing)."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
