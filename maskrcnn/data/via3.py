"""VGG Image Annotator 3.x project json -> COCO.

A VIA 3 project: `{project, config, attribute, file, view, metadata}`.
- `file`: `{fid: {fid, fname, type, loc, src}}`; the image is `fname` (or `src` for local files)
  relative to the json's folder (never outside it: `safe_paths`);
- `view`: `{vid: {fid_list: [fid]}}`: an image view holds one file;
- `metadata`: `{mid: {vid, z, xy: [shape, numbers...], av: {attribute id: value}}}`: the regions
  (`z` empty; a non-empty `z` marks a temporal segment of a video, skipped). Shapes by code:
  2 rectangle (x, y, w, h), 7 polygon (x0, y0, x1, y1, ...) stay polygons; 3 circle (cx, cy, r)
  and 4 ellipse (cx, cy, rx, ry) become masks; 1 point, 5 line, 6 polyline, 8 extreme rectangle,
  9 extreme circle (points on the outline, not the region) are skipped and counted;
- `attribute`: `{aid: {aname, anchor_id, type, options: {option id: name}}}`: the class is the
  value (an option id, or text) of one region attribute (`anchor_id` FILE1_Z0_XY1):
  `class_attribute` names it, else the project's only one; its options are the declared classes.
  Without any region attribute the project has one class, as in `via.py`.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DatasetError
from .coco import load_json_file
from .coco_builder import CocoBuilder, box_polygon, ellipse_mask
from .images import image_size
from .safe_paths import path_inside, relative_name
from .via import one_class_name

_SHAPES = {1: "point", 2: "rectangle", 3: "circle", 4: "ellipse", 5: "line", 6: "polyline",
           7: "polygon", 8: "extreme rectangle", 9: "extreme circle"}
_REGION_ANCHOR = "FILE1_Z0_XY1"


def is_via3(data) -> bool:
    """Whether the parsed json `data` looks like a VIA 3 project: a dict whose `project`, `file`
    and `metadata` are dicts."""
    return isinstance(data, dict) and all(isinstance(data.get(k), dict)
                                          for k in ("project", "file", "metadata"))


def read_via3(path, class_attribute: str | None = None,
              class_name: str | None = None) -> tuple[CocoBuilder, Path]:
    """(builder filled from the project, folder the file names are relative to)."""
    path = Path(path)
    project = load_json_file(path)
    if not is_via3(project):
        raise DatasetError(f"{path}: not a VIA 3 project (no 'project', 'file' and 'metadata')")
    attribute_id, options = _class_attribute(project.get("attribute") or {}, class_attribute, path)
    name = one_class_name(path, class_name) if attribute_id is None else None
    builder = CocoBuilder(str(path), declared_classes=[name] if name else list(options.values()))
    image_of_view = _images(builder, project, path)
    for mid, region in project["metadata"].items():
        where = f"{path}: metadata '{mid}'"
        if not isinstance(region, dict) or region.get("vid") not in image_of_view:
            raise DatasetError(f"{where}: 'vid' {region.get('vid') if isinstance(region, dict) else region!r} "
                               "is not a view of the project")
        if region.get("z"):
            builder.skip("VIA temporal segment (z)", where)
            continue
        image_id, size = image_of_view[region["vid"]]
        label = name or _class_of(region.get("av") or {}, attribute_id, options, where)
        _add_shape(builder, image_id, label, region.get("xy"), size, where)
    return builder, path.parent


def _class_attribute(attributes: dict, wanted: str | None, path: Path) -> tuple[str | None, dict]:
    """(attribute id, its options {id: name}); (None, {}) when the project has no region attribute."""
    region = {aid: a for aid, a in attributes.items()
              if isinstance(a, dict) and a.get("anchor_id", _REGION_ANCHOR) == _REGION_ANCHOR}
    if wanted is not None:
        found = [aid for aid, a in region.items() if a.get("aname") == wanted or aid == wanted]
        if not found:
            names = ", ".join(str(a.get("aname")) for a in region.values()) or "none"
            raise DatasetError(f"{path}: no region attribute '{wanted}' (the project has: {names})")
        region = {found[0]: region[found[0]]}
    if len(region) > 1:
        names = ", ".join(str(a.get("aname")) for a in region.values())
        raise DatasetError(f"{path}: {len(region)} region attributes ({names}); name the one "
                           "holding the class with --class-attribute")
    if not region:
        return None, {}
    (aid, attribute), = region.items()
    return aid, {str(k): str(v) for k, v in (attribute.get("options") or {}).items()}


def _images(builder: CocoBuilder, project: dict, path: Path) -> dict:
    """view id -> (image id, (H, W)), every file added to the builder."""
    out = {}
    for vid, view in (project.get("view") or {}).items():
        fids = view.get("fid_list") if isinstance(view, dict) else None
        if not isinstance(fids, list) or len(fids) != 1:
            raise DatasetError(f"{path}: view '{vid}' must list one file (an image)")
        record = project["file"].get(str(fids[0]))
        if not isinstance(record, dict) or not isinstance(record.get("fname"), str):
            raise DatasetError(f"{path}: view '{vid}': file '{fids[0]}' is missing or has no 'fname'")
        name = record["src"] if record.get("loc") == 1 and record.get("src") else record["fname"]
        image_path = path_inside(path.parent, path.parent, name, f"{path}: file '{fids[0]}'")
        if not image_path.is_file():
            raise DatasetError(f"{path}: file '{fids[0]}': image {image_path} not found (images "
                               "are read relative to the project json's folder)")
        size = image_size(image_path)
        out[vid] = (builder.add_image(relative_name(image_path, path.parent), *size), size)
    return out


def _class_of(values: dict, attribute_id: str, options: dict, where: str) -> str:
    value = values.get(attribute_id)
    if isinstance(value, str) and "," in value and options:  # checkbox: "id1,id2"
        raise DatasetError(f"{where}: several classes checked ({value}); exactly one is needed")
    if value is None or str(value).strip() == "":
        raise DatasetError(f"{where}: no class in region attribute {attribute_id}")
    return options.get(str(value), str(value)) if options else str(value)


def _add_shape(builder: CocoBuilder, image_id: int, name: str, xy, size, where: str) -> None:
    if not isinstance(xy, list) or not xy or xy[0] not in _SHAPES:
        raise DatasetError(f"{where}: 'xy' must start with a shape code 1-9, got {xy!r:.40}")
    kind, values = _SHAPES[xy[0]], xy[1:]
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: {kind} has a value that is not a number") from None
    expected = {"rectangle": 4, "circle": 3, "ellipse": 4}.get(kind)
    if expected is not None and len(values) != expected:
        raise DatasetError(f"{where}: a {kind} needs {expected} numbers, got {len(values)}")
    if kind == "polygon":
        builder.add_polygons(image_id, name, [values], where)
    elif kind == "rectangle":
        x, y, w, h = values
        builder.add_polygons(image_id, name, [box_polygon(x, y, x + w, y + h)], where)
    elif kind == "circle":
        cx, cy, r = values
        builder.add_mask(image_id, name, ellipse_mask(*size, cx, cy, r, r), where)
    elif kind == "ellipse":
        cx, cy, rx, ry = values
        builder.add_mask(image_id, name, ellipse_mask(*size, cx, cy, rx, ry), where)
    else:
        builder.skip(f"VIA {kind} (no region outline)", where)
