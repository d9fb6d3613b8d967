"""CVAT for images 1.1 XML -> COCO.

`<annotations><meta>..<labels><label><name>` declares the classes; each
`<image id name width height>` holds the objects: `<polygon points="x0,y0;x1,y1;...">` and
`<box xtl ytl xbr ybr>` stay polygons; `<mask rle left top width height>` is a run-length mask
over its box: comma-separated counts of alternating 0s and 1s (0s first), row by row. Shapes
sharing a label and a `group_id` are one object; a shape without a label is skipped. `polyline`, `points`, `tag`, `cuboid`,
`skeleton`, `ellipse` are skipped and counted. `name` is relative to the `images/` folder beside
the XML when there is one (CVAT's export layout; `images/<subset>/` for a project export, whose
`<image>` carries `subset`), else to the XML's folder, and never leaves the XML's folder
(`safe_paths`).

Also read: `z_order` orders an image's instances (lowest first, as CVAT stacks them; overlaps are
kept: instance masks may overlap); `occluded="1"` shapes are ordinary instances (their outline is
what the annotator drew); `<attribute>` children are not classes and are ignored.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from ..ops.rle import segmentation_to_mask
from .coco_builder import CocoBuilder, box_polygon
from .images import image_size
from .safe_paths import path_inside, relative_name

_READ = ("polygon", "box", "mask")


def read_cvat(path) -> tuple[CocoBuilder, Path]:
    """(builder filled from the XML, folder the image names are relative to)."""
    path = Path(path)
    if path.is_dir():
        path = path / "annotations.xml"
    if not path.is_file():
        raise DatasetError(f"{path}: CVAT annotation file not found")
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as exc:
        raise DatasetError(f"{path}: not valid XML ({exc})") from None
    if root.tag != "annotations":
        raise DatasetError(f"{path}: not a CVAT XML file (root <{root.tag}>, not <annotations>)")
    meta = root.find("meta")
    labels = [] if meta is None else [el.findtext("name", "").strip() for el in meta.iter("label")]
    image_root = path.parent / "images" if (path.parent / "images").is_dir() else path.parent
    builder = CocoBuilder(str(path), declared_classes=labels)
    for image in root.iter("image"):
        _read_image(builder, image, path, image_root)
    return builder, image_root


def _image_path(image, name: str, path: Path, image_root: Path, where: str) -> Path:
    """The image file: `images/<subset>/<name>` for a project export, else `images/<name>`."""
    subset = image.get("subset")
    if subset:
        in_subset = path_inside(path.parent, image_root / subset, name, where)
        if in_subset.is_file():
            return in_subset
    return path_inside(path.parent, image_root, name, where)


def _read_image(builder: CocoBuilder, image, path: Path, image_root: Path) -> None:
    name = image.get("name")
    where = f"{path}: image id {image.get('id')} '{name}'"
    if not name:
        raise DatasetError(f"{where}: no 'name'")
    try:
        height, width = int(image.get("height")), int(image.get("width"))
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: 'width' and 'height' must be integers") from None
    image_path = _image_path(image, name, path, image_root, where)
    actual = image_size(image_path) if image_path.is_file() else (height, width)
    if actual != (height, width):
        raise DatasetError(f"{where}: the XML says {width} x {height} but {image_path} is "
                           f"{actual[1]} x {actual[0]}")
    image_id = builder.add_image(relative_name(image_path, image_root), height, width)
    groups: dict[tuple, list] = {}
    shapes = sorted(enumerate(image), key=lambda item: _z_order(item[1], where))
    for index, shape in shapes:
        shape_where = f"{where} <{shape.tag}> {index}"
        if shape.tag not in _READ:
            builder.skip(f"CVAT <{shape.tag}>", shape_where)
            continue
        label = shape.get("label")
        if not label:
            builder.skip("CVAT shape without a label", shape_where)
            continue
        group = shape.get("group_id")
        groups.setdefault((label, index if group in (None, "0") else f"group {group}"), []).append(
            (shape, shape_where))
    for (label, _), members in groups.items():
        where = members[0][1]
        parts = [_shape(shape, (height, width), shape_where) for shape, shape_where in members]
        if all(isinstance(p, list) for p in parts):
            builder.add_polygons(image_id, label, parts, where)
        else:
            masks = [p if isinstance(p, np.ndarray) else segmentation_to_mask([p], height, width) > 0
                     for p in parts]
            builder.add_mask(image_id, label, np.logical_or.reduce(masks), where)


def _z_order(shape, where: str) -> int:
    try:
        return int(shape.get("z_order", 0))
    except ValueError:
        raise DatasetError(f"{where} <{shape.tag}>: z_order {shape.get('z_order')!r} is not an "
                           "integer") from None


def _shape(shape, size, where: str):
    """A flat polygon, or an (H, W) bool mask."""
    try:
        if shape.tag == "polygon":
            return [float(v) for pair in shape.get("points", "").split(";") for v in pair.split(",")]
        if shape.tag == "box":
            return box_polygon(*(float(shape.get(k)) for k in ("xtl", "ytl", "xbr", "ybr")))
        left, top, width, height = (int(float(shape.get(k))) for k in ("left", "top", "width", "height"))
        counts = [int(v) for v in shape.get("rle", "").split(",")]
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: a coordinate or count is missing or not a number") from None
    return _mask_from_rle(counts, left, top, width, height, size, where)


def _mask_from_rle(counts: list[int], left: int, top: int, width: int, height: int, size,
                   where: str) -> np.ndarray:
    """CVAT's run-length mask over a (height, width) box at (left, top) -> (H, W) bool."""
    if sum(counts) != width * height or min(counts) < 0:
        raise DatasetError(f"{where}: the rle counts sum to {sum(counts)}, not the box's "
                           f"{width} x {height} = {width * height} pixels")
    if left < 0 or top < 0 or left + width > size[1] or top + height > size[0]:
        raise DatasetError(f"{where}: the mask box {width} x {height} at ({left}, {top}) does not "
                           f"fit the {size[1]} x {size[0]} image")
    values = np.arange(len(counts)) % 2 == 1  # 0s first, then alternating
    patch = np.repeat(values, counts).reshape(height, width)  # row-major
    mask = np.zeros(size, dtype=bool)
    mask[top:top + height, left:left + width] = patch
    return mask
