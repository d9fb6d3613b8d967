"""Predictions -> pre-annotation files the labelling tools import as editable polygons.

`traced(...)` turns one image's masks into `TracedImage` (polygons per instance, see
polygons.py); `export_files(format, images)` -> {relative path: bytes} of that format, so the
CLI writes them to disk and the server sends them as one download.

| format       | files                          | parts of one instance          | score in        |
| ------------ | ------------------------------ | ------------------------------ | --------------- |
| labelme      | labelme/<image>.json per image | shapes sharing a group_id      | description     |
| cvat         | cvat/annotations.xml (1.1)     | polygons sharing a group_id    | attribute score |
| via          | via_project.json (VIA 2)       | joined into one region by cuts | region attribute score |
| label-studio | label_studio.json (tasks)      | joined into one region by cuts | result score    |
| coco         | coco.json (dataset)            | polygons of one segmentation   | annotation score |

Holes are kept in every format by a zero-width cut (polygons.py).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .traced import TracedImage, traced

FORMATS = ("labelme", "cvat", "label-studio", "via", "coco")


def export_files(format: str, images: list[TracedImage], class_names: list[str],
                 root: Path | None = None) -> dict[str, bytes]:
    """All images' predictions in `format` -> {path relative to `root`: file bytes}.
    `class_names`: every class the model knows (the tools' label lists), in order. `root`: the
    output folder, when known, so image paths are written relative to each file."""
    from . import coco, cvat, label_studio, labelme, via

    writers = {"labelme": labelme.files, "cvat": cvat.files, "label-studio": label_studio.files,
               "via": via.files, "coco": coco.files}
    return writers[check_format(format)](images, list(class_names), None if root is None else Path(root))


def check_format(format: str) -> str:
    """`format` itself when it is one of `FORMATS`.

    Raises:
        UserError: an unknown format (the message lists the known ones).
    """
    if format not in FORMATS:
        raise UserError(f"--export {format}: unknown format (one of {', '.join(FORMATS)})")
    return format


__all__ = ["FORMATS", "TracedImage", "check_format", "export_files", "traced"]
