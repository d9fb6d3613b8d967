"""Label Studio tasks with predictions, `label_studio.json` (Label Studio: Import). One
`polygonlabels` result per instance, points in percent of the image size; Label Studio cannot
group regions, so the parts of one instance are joined into one polygon by zero-width cuts. The
score is the result's `score`. The labelling config these fit:
`<View><Image name="image" value="$image"/><PolygonLabels name="label" toName="image">
<Label value="CLASS"/>...</PolygonLabels></View>`. `data.image` is the image's path relative to
the json's folder: prefix it with your storage's URL (e.g. /data/local-files/?d=) if needed."""

from __future__ import annotations

import json

import numpy as np

from .polygons import join_polygons
from .traced import TracedImage

FILE = "label_studio.json"
MODEL_VERSION = "maskrcnn"


def files(images: list[TracedImage], class_names: list[str], root=None) -> dict[str, bytes]:
    """The predictions as Label Studio tasks, {"label_studio.json": bytes}: a task per image with
    one `polygonlabels` result per instance (points in percent of the image size, parts joined by
    zero-width cuts) and its score. `class_names` is not needed (the labelling config lists the
    labels). Image paths are relative to `root` when given."""
    tasks = []
    for image in images:
        results = [_result(image, k, label, score, parts)
                   for k, (label, score, parts) in enumerate(image.instances())]
        scores = [r["score"] for r in results]
        tasks.append({"data": {"image": image.name_from(root)},
                      "predictions": [{"model_version": MODEL_VERSION, "result": results,
                                       "score": float(np.mean(scores)) if scores else 0.0}]})
    return {FILE: json.dumps(tasks, indent=1).encode()}


def _result(image: TracedImage, k: int, label: str, score: float, parts) -> dict:
    polygon = join_polygons(parts) * (100.0 / np.array([image.width, image.height]))  # (P, 2) %
    points = [[round(float(x), 4), round(float(y), 4)] for x, y in polygon]
    return {"id": f"r{k}", "type": "polygonlabels", "from_name": "label", "to_name": "image",
            "original_width": image.width, "original_height": image.height, "image_rotation": 0,
            "score": round(score, 4),
            "value": {"points": points, "closed": True, "polygonlabels": [label]}}
