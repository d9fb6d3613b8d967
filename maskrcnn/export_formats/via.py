"""VGG Image Annotator 2.x project, `via_project.json` (VIA: Project > Load). VIA cannot group
regions, so the parts of one instance are joined into one polygon region by zero-width cuts.
Region attributes: `class` (a dropdown of the model's classes) and `score` (text); read it back
with `--class-attribute class`. `filename` is the image's path relative to the json's folder (set
VIA's default path to that folder)."""

from __future__ import annotations

import json

from .polygons import join_polygons
from .traced import TracedImage, flat

FILE = "via_project.json"


def files(images: list[TracedImage], class_names: list[str], root=None) -> dict[str, bytes]:
    """The predictions as a VIA 2 project, {"via_project.json": bytes}: a polygon region per instance
    (parts joined by zero-width cuts) with region attributes `class` (a dropdown of `class_names`,
    without the background, then any other predicted name) and `score`. File names are relative
    to `root` when given."""
    used = {label for image in images for label in image.labels}
    names = list(class_names) + sorted(used - set(class_names))
    entries = {}
    for image in images:
        filename = image.name_from(root)
        regions = [_region(label, score, parts) for label, score, parts in image.instances()]
        entries[f"{filename}-1"] = {"filename": filename, "size": -1, "regions": regions,
                                    "file_attributes": {}}
    project = {
        "_via_settings": {"core": {"default_filepath": "", "buffer_size": 18, "filepath": {}},
                          "ui": {}, "project": {"name": "maskrcnn predictions"}},
        "_via_img_metadata": entries,
        "_via_attributes": {"region": {
            "class": {"type": "dropdown", "description": "class", "default_options": {},
                      "options": {name: name for name in names}},
            "score": {"type": "text", "description": "model score", "default_value": ""}},
            "file": {}},
        "_via_image_id_list": list(entries),
    }
    return {FILE: json.dumps(project, indent=1).encode()}


def _region(label: str, score: float, parts) -> dict:
    xy = flat(join_polygons(parts))
    return {"shape_attributes": {"name": "polygon", "all_points_x": xy[0::2], "all_points_y": xy[1::2]},
            "region_attributes": {"class": label, "score": f"{score:.4f}"}}
