"""LabelMe (one json per image) -> COCO.

Each json: `{shapes: [{label, points, shape_type, group_id, mask?}], imagePath, imageData,
imageHeight, imageWidth}`, `imagePath` relative to the json. Shapes: `polygon` and `rectangle`
(two opposite corners) stay polygons; `circle` (centre, then a point on the circle) and `mask`
(a base64 PNG whose top-left pixel sits at the first point) become masks. Shapes sharing a
label and a non-null `group_id` are one object. `point`, `line`, `linestrip`, `points` have no
area: skipped and counted. When the image file is missing but `imageData` embeds it, the image
is written there (where LabelMe itself would look for it) and counted.

`imagePath` is relative to the json and must stay inside the folder being converted
(`safe_paths`): `../../x.png` escaping it is refused before anything is read or written. An
absolute `imagePath` (older LabelMe versions wrote them) means the file of that name beside the
json.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import math
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DatasetError
from ..fileio import write_bytes_atomic
from ..ops.rle import segmentation_to_mask
from .coco import load_json_file
from .coco_builder import CocoBuilder, box_polygon, ellipse_mask
from .images import image_size
from .safe_paths import basename_inside, is_absolute, path_inside, relative_name

logger = logging.getLogger(__name__)

_NO_AREA = ("point", "points", "line", "linestrip")


def read_labelme(folder, exclude=None) -> tuple[CocoBuilder, Path]:
    """(builder filled from every *.json under `folder` but `exclude` (the output, when written
    there), `folder`: the file names' root)."""
    folder = Path(folder)
    skip = Path(exclude).resolve() if exclude else None
    files = sorted(f for f in folder.rglob("*.json") if f.resolve() != skip)
    if not files:
        raise DatasetError(f"{folder}: no LabelMe .json files found")
    builder = CocoBuilder(str(folder))
    extracted = 0
    for path in files:
        extracted += _read_file(builder, path, folder)
    if extracted:
        logger.warning("%s: wrote %d images embedded as imageData to the imagePath of their json "
                       "(inside this folder)", folder, extracted)
    return builder, folder


def _read_file(builder: CocoBuilder, path: Path, root: Path) -> int:
    """Add one json's image and objects; returns 1 when its embedded image was written out."""
    data = load_json_file(path)
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        raise DatasetError(f"{path}: not a LabelMe file (no 'shapes' list)")
    image_path, extracted = _image_file(data, path, root)
    height, width = image_size(image_path)
    if (data.get("imageHeight", height), data.get("imageWidth", width)) != (height, width):
        raise DatasetError(f"{path}: imageHeight x imageWidth {data['imageHeight']} x "
                           f"{data['imageWidth']} but {image_path} is {height} x {width}")
    file_name = relative_name(image_path, root)
    image_id = builder.add_image(file_name, height, width)
    groups: dict[tuple, list] = {}  # (label, group) -> [(shape, where)]
    for index, shape in enumerate(data["shapes"]):
        where = f"{path}: shape {index}"
        if not isinstance(shape, dict) or not isinstance(shape.get("label"), str):
            raise DatasetError(f"{where}: a shape needs a 'label' string")
        kind = shape.get("shape_type") or "polygon"
        if kind in _NO_AREA:
            builder.skip(f"LabelMe {kind} (no area)", where)
            continue
        group = shape.get("group_id")
        key = (shape["label"], index if group is None else f"group {group}")
        groups.setdefault(key, []).append((shape, where))
    for (label, _), members in groups.items():
        _add_object(builder, image_id, label, members, (height, width))
    return extracted


def _image_file(data: dict, path: Path, root: Path) -> tuple[Path, int]:
    """(the image file, 1 if it was just written from imageData else 0)."""
    name = data.get("imagePath")
    if not isinstance(name, str) or not name:
        raise DatasetError(f"{path}: no 'imagePath'")
    where = f"{path}: imagePath"
    if is_absolute(name):
        image_path = basename_inside(path.parent, name)
    else:
        image_path = path_inside(root, path.parent, name, where)
    if image_path.is_file():
        return image_path, 0
    if not data.get("imageData"):
        raise DatasetError(f"{path}: image {image_path} not found and no embedded imageData")
    try:
        payload = base64.b64decode(data["imageData"], validate=True)
        Image.open(io.BytesIO(payload)).verify()
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError) as exc:
        raise DatasetError(f"{path}: imageData is not a base64-encoded image ({exc})") from None
    write_bytes_atomic(path_inside(root, image_path.parent, image_path.name, where, writing=True),
                       payload)
    return image_path, 1


def _add_object(builder: CocoBuilder, image_id: int, label: str, members: list, size) -> None:
    where = members[0][1] if len(members) == 1 else f"{members[0][1]} (group of {len(members)})"
    polygons, masks = [], []
    for shape, shape_where in members:
        part = _shape(shape, size, shape_where)
        (masks if isinstance(part, np.ndarray) else polygons).append(part)
    if not masks:
        builder.add_polygons(image_id, label, polygons, where)
        return
    for polygon in polygons:
        masks.append(segmentation_to_mask([polygon], *size).astype(bool))
    builder.add_mask(image_id, label, np.logical_or.reduce(masks), where)


def _shape(shape: dict, size, where: str):
    """A flat polygon, or an (H, W) bool mask."""
    kind = shape.get("shape_type") or "polygon"
    try:
        points = np.asarray(shape["points"], dtype=np.float64).reshape(-1, 2)  # (P, 2) x, y
    except (KeyError, TypeError, ValueError):
        raise DatasetError(f"{where}: 'points' must be a list of [x, y] pairs") from None
    if kind == "polygon":
        return points.reshape(-1).tolist()
    if kind in ("rectangle", "circle", "mask") and len(points) != 2:
        raise DatasetError(f"{where}: a {kind} needs 2 points, got {len(points)}")
    if kind == "rectangle":
        return box_polygon(*points[0], *points[1])
    if kind == "circle":
        (cx, cy), (px, py) = points
        radius = math.hypot(px - cx, py - cy)
        return ellipse_mask(*size, cx, cy, radius, radius)
    if kind == "mask":
        return _placed_mask(shape, points, size, where)
    raise DatasetError(f"{where}: unknown shape_type '{kind}' (polygon, rectangle, circle, mask "
                       "are read)")


def _placed_mask(shape: dict, points: np.ndarray, size, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(base64.b64decode(shape["mask"], validate=True))) as image:
            patch = np.asarray(image) > 0  # (h, w)
    except (KeyError, TypeError, binascii.Error, ValueError, UnidentifiedImageError, OSError):
        raise DatasetError(f"{where}: 'mask' is not a base64-encoded PNG") from None
    if patch.ndim == 3:
        patch = patch.any(axis=2)
    mask = np.zeros(size, dtype=bool)
    x, y = (int(round(v)) for v in points[0])
    h, w = patch.shape
    if x < 0 or y < 0 or y + h > size[0] or x + w > size[1]:
        raise DatasetError(f"{where}: the {w} x {h} mask at ({x}, {y}) does not fit the "
                           f"{size[1]} x {size[0]} image")
    mask[y:y + h, x:x + w] = patch
    return mask
