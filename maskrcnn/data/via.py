"""VGG Image Annotator (VIA) 1.x / 2.x json -> COCO (VIA 3 projects: `via3.py`).

Read: `_via_img_metadata` (or a bare "export annotations as json" dict of the same entries, as VIA
1.x wrote them: the Matterport balloon tutorial's `via_region_data.json`), each
`{filename, size, regions: [{shape_attributes, region_attributes}], file_attributes}`; VIA 1.x
keeps `regions` as a dict keyed by index, VIA 2.x as a list. Shapes:
`polygon` (all_points_x / all_points_y) and `rect` (x, y, width, height) stay polygons; `circle`
(cx, cy, r) and `ellipse` (cx, cy, rx, ry, theta in radians) become masks of the pixels whose
centre is inside. `point` and `polyline` have no area: skipped and counted.

The class is the value of one region attribute (`class_attribute`; when not given, the project's
only region attribute). Dropdown / radio values are option ids, checkbox values `{id: true}` with
exactly one id set. The attribute's options, in the project's order, are the declared classes.
A project without any region attribute has one class: `class_name`, by default the name of the
folder holding the json (its parent's when that folder is a split such as `train` or `val`, so
`balloon/train/via_region_data.json` gives "balloon"); a one-line notice says so.
Images are found relative to the json's folder (never outside it: `safe_paths`; a URL means the
file of that name there); their sizes come from the image files.
"""

from __future__ import annotations

from pathlib import Path

import logging

from ..errors import DatasetError
from .coco import load_json_file
from .coco_builder import CocoBuilder, box_polygon, ellipse_mask
from .images import image_size
from .safe_paths import path_inside, relative_name

logger = logging.getLogger(__name__)

_NO_AREA = ("point", "polyline")
SPLIT_FOLDERS = ("train", "training", "val", "valid", "validation", "test", "testing")


def read_via(path, class_attribute: str | None = None,
             class_name: str | None = None) -> tuple[CocoBuilder, Path]:
    """(builder filled from the project, folder the file names are relative to)."""
    path = Path(path)
    project = load_json_file(path)
    entries = project.get("_via_img_metadata", project) if isinstance(project, dict) else None
    if not isinstance(entries, dict) or not all(isinstance(e, dict) for e in entries.values()):
        raise DatasetError(f"{path}: not a VIA 1.x/2.x project (no '_via_img_metadata' of image "
                           "entries)")
    declared = project.get("_via_attributes", {}).get("region", {})
    attribute = class_attribute or _only_attribute(declared, entries, path)
    if attribute is None:
        name = one_class_name(path, class_name)
        builder = CocoBuilder(str(path), declared_classes=[name])
    else:
        options = declared.get(attribute, {}).get("options") or {}
        builder = CocoBuilder(str(path), declared_classes=list(options))
    for key, entry in entries.items():
        _read_entry(builder, entry, key, attribute or name, path, one_class=attribute is None)
    return builder, path.parent


def one_class_name(path: Path, class_name: str | None) -> str:
    """The class of a project without class attributes: `class_name`, else the json's folder
    name (its parent's when the folder is a split), announced in one line."""
    if class_name:
        name = class_name
    else:
        folder = path.resolve().parent
        name = folder.parent.name if folder.name.lower() in SPLIT_FOLDERS else folder.name
        name = name or "object"
    logger.warning("%s: no region attribute holds a class: every region is one class, '%s'%s",
                   path, name, "" if class_name else " (the folder's name; set it with --class-name)")
    return name


def _only_attribute(declared: dict, entries: dict, path: Path) -> str | None:
    """The one region attribute (None when there is none: a one-class project)."""
    names = list(declared) or sorted({name for key, entry in entries.items()
                                      for region in _regions(entry, path, key)
                                      for name in (region.get("region_attributes") or {})})
    if len(names) > 1:
        raise DatasetError(f"{path}: {len(names)} region attributes ({', '.join(names)}); "
                           "name the one holding the class with --class-attribute")
    return names[0] if names else None


def _regions(entry: dict, path: Path, key: str) -> list:
    regions = entry.get("regions", [])
    if isinstance(regions, dict):  # VIA 1.x kept regions in a dict keyed by index
        regions = list(regions.values())
    if not isinstance(regions, list) or not all(isinstance(r, dict) for r in regions):
        raise DatasetError(f"{path}: image entry '{key}': 'regions' must be a list of regions")
    return regions


def _read_entry(builder: CocoBuilder, entry: dict, key: str, attribute: str, path: Path,
                one_class: bool = False) -> None:
    filename = entry.get("filename")
    if not isinstance(filename, str) or not filename:
        raise DatasetError(f"{path}: image entry '{key}' has no 'filename'")
    if "://" in filename:  # a remote image (VIA annotates URLs): its copy beside the json
        filename = filename.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
    image_path = path_inside(path.parent, path.parent, filename, f"{path}: image entry '{key}'")
    if not image_path.is_file():
        raise DatasetError(f"{path}: image '{filename}': file {image_path} not found (images are "
                           "read relative to the project json's folder)")
    height, width = image_size(image_path)
    image_id = builder.add_image(relative_name(image_path, path.parent), height, width)
    for index, region in enumerate(_regions(entry, path, key)):
        where = f"{path}: image '{filename}' region {index}"
        name = attribute if one_class else _class_name(region.get("region_attributes") or {},
                                                       attribute, where)
        _add_shape(builder, image_id, name, region.get("shape_attributes", {}), (height, width), where)


def _class_name(attributes: dict, attribute: str, where: str) -> str:
    value = attributes.get(attribute) if isinstance(attributes, dict) else None
    if isinstance(value, dict):  # checkbox: {option id: true}
        chosen = [k for k, on in value.items() if on]
        if len(chosen) != 1:
            raise DatasetError(f"{where}: attribute '{attribute}' has {len(chosen)} options "
                               "checked; exactly one class is needed")
        value = chosen[0]
    if not isinstance(value, str) or not value.strip():
        raise DatasetError(f"{where}: no class in region attribute '{attribute}'")
    return value


def _add_shape(builder: CocoBuilder, image_id: int, name: str, shape: dict, size, where: str):
    kind = shape.get("name")
    try:
        if kind == "polygon":
            xs, ys = shape["all_points_x"], shape["all_points_y"]
            if len(xs) != len(ys):
                raise DatasetError(f"{where}: all_points_x and all_points_y differ in length")
            polygon = [float(v) for xy in zip(xs, ys) for v in xy]
            builder.add_polygons(image_id, name, [polygon], where)
        elif kind == "rect":
            x, y, w, h = (float(shape[k]) for k in ("x", "y", "width", "height"))
            builder.add_polygons(image_id, name, [box_polygon(x, y, x + w, y + h)], where)
        elif kind == "circle":
            cx, cy, r = (float(shape[k]) for k in ("cx", "cy", "r"))
            builder.add_mask(image_id, name, ellipse_mask(*size, cx, cy, r, r), where)
        elif kind == "ellipse":
            cx, cy, rx, ry = (float(shape[k]) for k in ("cx", "cy", "rx", "ry"))
            mask = ellipse_mask(*size, cx, cy, rx, ry, float(shape.get("theta", 0.0)))
            builder.add_mask(image_id, name, mask, where)
        elif kind in _NO_AREA:
            builder.skip(f"VIA {kind} (no area)", where)
        else:
            raise DatasetError(f"{where}: unknown shape '{kind}' (polygon, rect, circle, ellipse "
                               "are read)")
    except DatasetError:
        raise
    except KeyError as exc:
        raise DatasetError(f"{where}: {kind} lacks '{exc.args[0]}'") from None
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{where}: {kind} has a value that is not a number ({exc})") from None
