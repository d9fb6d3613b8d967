"""LabelMe: one json per image, `labelme/<image name>.json`. Each part of an instance is a
`polygon` shape; the parts of one instance share a `group_id` (LabelMe's way to make one object
of several shapes); the score is in the shape's `description`."""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from .traced import TracedImage, flat

FOLDER = "labelme"
VERSION = "5.5.0"  # the LabelMe file version written (read by LabelMe 4 and 5)


def files(images: list[TracedImage], class_names: list[str], root=None) -> dict[str, bytes]:
    """The predictions as LabelMe files, {"labelme/<image stem>.json": bytes} per image (stems made
    unique): a polygon shape per part, the parts of one instance sharing a group_id, the score in
    the description. `class_names` is not needed (LabelMe has no label list). `imagePath` is
    relative to `root`/labelme when `root` is given."""
    out, used = {}, set()
    for image in images:
        name = _unique(PurePosixPath(image.path.replace("\\", "/")).stem, used)
        out[f"{FOLDER}/{name}.json"] = json.dumps(_document(image, root and root / FOLDER), indent=1).encode()
    return out


def _document(image: TracedImage, folder) -> dict:
    shapes = [{"label": label, "points": _pairs(part), "group_id": group, "shape_type": "polygon",
               "flags": {}, "description": f"score={score:.4f}"}
              for group, (label, score, parts) in enumerate(image.instances(), start=1) for part in parts]
    return {"version": VERSION, "flags": {}, "shapes": shapes, "imagePath": image.name_from(folder),
            "imageData": None, "imageHeight": image.height, "imageWidth": image.width}


def _pairs(polygon) -> list[list[float]]:
    """(P, 2) -> [[x, y], ...]."""
    xy = flat(polygon)
    return [xy[i:i + 2] for i in range(0, len(xy), 2)]


def _unique(stem: str, used: set) -> str:
    """`stem`, or `stem_2`, `stem_3`, ... when taken (two folders' a.jpg)."""
    name, k = stem, 1
    while name in used:
        k += 1
        name = f"{stem}_{k}"
    used.add(name)
    return name
