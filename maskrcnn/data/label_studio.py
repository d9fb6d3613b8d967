"""Label Studio "JSON" export (a list of tasks) -> COCO. Its "COCO" export is read by `coco_export.py`.

Each task: `{id, data: {image: URL or path}, file_upload?, annotations: [{result, was_cancelled}]}`.
The first annotation that is not cancelled is used (a task annotated by several people has one per
person). Each result: `{id, type, original_width, original_height, value}`; coordinates are
percentages of the original image size:
- `polygonlabels`: `value.points` [[x %, y %], ...] -> a polygon;
- `rectanglelabels`: `value.x, y, width, height` (%) turned by `rotation` degrees clockwise about
  the top-left corner -> a polygon;
- `brushlabels`: `value.rle`, Label Studio's own RLE of the RGBA canvas (`label_studio_rle.py`)
  -> a mask;
- `ellipselabels`: `value.x, y` the centre, `radiusX` (% of the width), `radiusY` (% of the
  height), turned by `rotation` degrees clockwise about the centre -> a mask. (Label Studio's
  documentation calls `x, y` the top-left corner; its editor draws the ellipse centred there and
  gives it the box x +- radiusX, y +- radiusY.)
- the class is the first of the `...labels` list; a config with a separate `<Labels>` tag writes
  a `labels` result with the same `id` as the shape's `polygon` / `rectangle` / `brush` result: the
  two are joined. Other result types (keypoints, choices, text, `relation`s between regions, ...)
  are skipped and counted.
The image: `data.image` is an upload URL (`/data/upload/<project>/<hash>-<name>`), a local-files URL
(`/data/local-files/?d=<path>`) or a web URL. It is looked for, inside the json's folder only
(`safe_paths`), at the `?d=` path, then by file name in the folder and its `images/` subfolder,
also without the 8-character upload prefix.
"""

from __future__ import annotations

import math
import re
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

from ..errors import DatasetError
from .coco import load_json_file
from .coco_builder import CocoBuilder, ellipse_mask
from .images import image_size
from .label_studio_rle import decode_brush
from .safe_paths import path_inside, relative_name

_SHAPES = {"polygon": "polygonlabels", "rectangle": "rectanglelabels", "brush": "brushlabels",
           "ellipse": "ellipselabels"}  # fmt: skip
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


def is_label_studio(data) -> bool:
    """Whether the parsed json `data` looks like a Label Studio JSON export: a non-empty list of
    tasks, the first a dict with `data` and `annotations` or `predictions`."""
    return (isinstance(data, list) and bool(data) and isinstance(data[0], dict)
            and "data" in data[0] and ("annotations" in data[0] or "predictions" in data[0]))


def read_label_studio(path) -> tuple[CocoBuilder, Path]:
    """(builder filled from the export, folder the file names are relative to)."""
    path = Path(path)
    tasks = load_json_file(path)
    if not is_label_studio(tasks):
        raise DatasetError(f"{path}: not a Label Studio JSON export (a list of tasks with 'data' "
                           "and 'annotations')")
    builder = CocoBuilder(str(path))
    for index, task in enumerate(tasks):
        where = f"{path}: task {task.get('id', index) if isinstance(task, dict) else index}"
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise DatasetError(f"{where}: a task must be an object with 'data'")
        _read_task(builder, task, path, where)
    return builder, path.parent


def _read_task(builder: CocoBuilder, task: dict, path: Path, where: str) -> None:
    image_path = _find_image(task, path, where)
    height, width = image_size(image_path)
    image_id = builder.add_image(relative_name(image_path, path.parent), height, width)
    annotations = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not annotations:
        return
    for result_id, result in _joined_results(annotations[0].get("result") or [], where).items():
        result_where = f"{where} result '{result_id}'"
        original = (result.get("original_height"), result.get("original_width"))
        if None not in original and tuple(original) != (height, width):
            raise DatasetError(f"{result_where}: original size {original[1]} x {original[0]} but "
                               f"{image_path} is {width} x {height}")
        _add_result(builder, image_id, result, (height, width), result_where)


def _joined_results(results: list, where: str) -> dict:
    """result id -> one result whose `value` holds the shape and its labels."""
    joined: dict[str, dict] = {}
    for index, result in enumerate(results):
        if isinstance(result, dict) and result.get("type") == "relation":
            result = {**result, "value": {}}  # links two regions (no 'value', no shape): skipped
        if not isinstance(result, dict) or not isinstance(result.get("value"), dict):
            raise DatasetError(f"{where}: result {index} is not an object with a 'value'")
        key = str(result.get("id", index))
        if key in joined:
            joined[key] = {**joined[key], **result,
                           "value": {**joined[key]["value"], **result["value"]},
                           "type": _joined_type(joined[key], result)}
        else:
            joined[key] = result
    return joined


def _joined_type(first: dict, second: dict) -> str:
    """The type of a shape result joined with its `labels` result: the shape's ('polygon'), or,
    for a shape this module skips ('keypoint', 'choices'), the type that is not 'labels'."""
    pair = (first, second)
    return (next((_shape_type(r) for r in pair if _shape_type(r)), None)
            or next((r.get("type") for r in pair if r.get("type") != "labels"), "labels"))


def _shape_type(result: dict) -> str | None:
    kind = result.get("type", "")
    kind = kind[:-len("labels")] if kind.endswith("labels") else kind
    return kind if kind in _SHAPES else None


def _add_result(builder: CocoBuilder, image_id: int, result: dict, size, where: str) -> None:
    kind, value = _shape_type(result), result["value"]
    if kind is None:
        builder.skip(f"Label Studio {result.get('type')}", where)
        return
    names = value.get(_SHAPES[kind]) or value.get("labels")
    if not isinstance(names, list) or not names or not isinstance(names[0], str):
        raise DatasetError(f"{where}: no label ('{_SHAPES[kind]}' or 'labels' list)")
    height, width = size
    try:
        if kind == "polygon":
            points = np.asarray(value["points"], dtype=np.float64).reshape(-1, 2)  # (P, 2) %
            polygon = (points * [width / 100.0, height / 100.0]).reshape(-1).tolist()
            builder.add_polygons(image_id, names[0], [polygon], where)
        elif kind == "rectangle":
            builder.add_polygons(image_id, names[0], [_rectangle(value, width, height)], where)
        elif kind == "ellipse":
            builder.add_mask(image_id, names[0], _ellipse(value, height, width), where)
        else:
            builder.add_mask(image_id, names[0], decode_brush(value.get("rle"), height, width, where),
                             where)
    except KeyError as exc:
        raise DatasetError(f"{where}: {kind} lacks '{exc.args[0]}'") from None
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: {kind} coordinates are not numbers") from None


def _rectangle(value: dict, width: int, height: int) -> list[float]:
    """The rectangle's 4 corners in pixels, turned `rotation` degrees about its top-left corner."""
    x, y = float(value["x"]) * width / 100, float(value["y"]) * height / 100
    w, h = float(value["width"]) * width / 100, float(value["height"]) * height / 100
    angle = math.radians(float(value.get("rotation", 0)))
    cos, sin = math.cos(angle), math.sin(angle)
    corners = [(0, 0), (w, 0), (w, h), (0, h)]
    return [v for dx, dy in corners for v in (x + dx * cos - dy * sin, y + dx * sin + dy * cos)]


def _ellipse(value: dict, height: int, width: int) -> np.ndarray:
    """(H, W) bool: the ellipse's pixels (centre x, y; radii in percent of width and height)."""
    return ellipse_mask(height, width, float(value["x"]) * width / 100, float(value["y"]) * height / 100,
                        float(value["radiusX"]) * width / 100, float(value["radiusY"]) * height / 100,
                        math.radians(float(value.get("rotation", 0))))


def _find_image(task: dict, path: Path, where: str) -> Path:
    """The task's image file inside the json's folder (see the module docstring)."""
    root = path.parent
    url = task["data"].get("image")
    if not isinstance(url, str) or not url:
        raise DatasetError(f"{where}: no 'data.image'")
    parsed = urlparse(url)
    local = parse_qs(parsed.query).get("d")
    tried = [path_inside(root, root, unquote(local[0]), f"{where}: data.image")] if local else []
    names = {PurePosixPath(unquote(parsed.path)).name, str(task.get("file_upload") or "")} - {""}
    names |= {_UPLOAD_PREFIX.sub("", n) for n in names}
    for name in sorted(names):
        for folder in (root, root / "images"):
            tried.append(path_inside(root, folder, name, f"{where}: data.image"))
    for candidate in tried:
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{where}: image '{url}' not found in {root} (looked for "
                       f"{', '.join(sorted({c.name for c in tried}))} there and in images/)")
