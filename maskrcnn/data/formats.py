"""Every dataset format the package reads: detection from the file or folder, conversion to a COCO
dict, and the on-the-fly conversion `train --data` and `check-data --data` use.

`detect_format(src)` -> (format, why): by the file's content (json keys, XML root), never by its
name alone. `convert(src, fmt, ...)` -> (COCO dict, image root). `as_coco_file(src, images,
cache)` gives a COCO json + image folder for any export: a plain COCO file is used as it is;
anything else is converted into `cache` (each run: conversion takes seconds, and a stale cache
would be a silent error).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatasetError, UserError
from ..fileio import write_json_atomic
from .coco import load_json_file

DESCRIPTIONS = {
    "coco": "COCO json, also as Roboflow, CVAT (COCO 1.0) and Label Studio export it",
    "via": "VIA 1.x / 2.x json (project or exported annotations)",
    "via3": "VIA 3 project json",
    "labelme": "folder of LabelMe json files",
    "cvat": "CVAT for images 1.1 XML (annotations.xml or its folder)",
    "label-studio": "Label Studio JSON export (list of tasks)",
    "yolo-seg": "YOLO segmentation folder (Ultralytics / Roboflow layout)",
    "cityscapes": "Cityscapes root (gtFine/, leftImg8bit/)",
    "pennfudan": "Penn-Fudan layout (PNGImages/ + PedMasks/)",
    "mask-folders": "one PNG per instance (<id>/images/ + <id>/masks/)",
}
_PEEK_FILES = 20  # json files of a folder looked at to recognise LabelMe


@dataclass
class Options:
    """Conversion options (the convert-dataset flags); None = the format's default."""

    classes: list | None = None
    class_attribute: str | None = None
    class_name: str | None = None
    split: str | None = None
    exclude: str | None = None  # an output file inside the source folder, not to be read


def detect_format(src, data=None) -> tuple[str, str]:
    """(format, the evidence), or DatasetError saying what was looked for. `data`: the file's
    parsed json when the caller has it already."""
    src = Path(src)
    if src.is_file():
        return _detect_file(src, data)
    if not src.is_dir():
        raise DatasetError(f"{src}: not found")
    return _detect_folder(src)


def _detect_file(path: Path, data=None) -> tuple[str, str]:
    if path.suffix.lower() == ".xml":
        return _detect_xml(path)
    from .coco_export import is_coco
    from .label_studio import is_label_studio
    from .via3 import is_via3

    data = load_json_file(path) if data is None else data
    if is_coco(data):
        return "coco", "'images', 'annotations' and 'categories' lists"
    if is_label_studio(data):
        return "label-studio", "a list of tasks with 'data' and 'annotations'"
    if is_via3(data):
        return "via3", "'project', 'file' and 'metadata' (VIA 3)"
    if isinstance(data, dict) and "_via_img_metadata" in data:
        return "via", "'_via_img_metadata' (VIA 2 project)"
    if isinstance(data, dict) and data and all(
            isinstance(e, dict) and "filename" in e and "regions" in e for e in data.values()):
        return "via", "image entries with 'filename' and 'regions' (VIA 1.x / 2.x annotations)"
    if isinstance(data, dict) and isinstance(data.get("shapes"), list):
        raise DatasetError(f"{path}: a LabelMe file: give the folder of LabelMe files "
                           f"({path.parent}) instead")
    raise DatasetError(f"{path}: unknown annotation format (not COCO, VIA, Label Studio or "
                       "LabelMe json); give --format")


def _detect_xml(path: Path) -> tuple[str, str]:
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as exc:
        raise DatasetError(f"{path}: not valid XML ({exc})") from None
    if root.tag == "annotations":
        return "cvat", "an <annotations> XML (CVAT for images)"
    raise DatasetError(f"{path}: unknown XML format (root <{root.tag}>; CVAT's is <annotations>)")


def _detect_folder(folder: Path) -> tuple[str, str]:
    if (folder / "annotations.xml").is_file():
        return "cvat", "annotations.xml"
    if (folder / "gtFine").is_dir() and (folder / "leftImg8bit").is_dir():
        return "cityscapes", "gtFine/ and leftImg8bit/"
    if (folder / "PNGImages").is_dir() and (folder / "PedMasks").is_dir():
        return "pennfudan", "PNGImages/ and PedMasks/"
    from .yolo_seg import image_folders

    if image_folders(folder) and any(p.parent.joinpath("labels").is_dir() for p in image_folders(folder)):
        return "yolo-seg", "images/ beside labels/"
    jsons = sorted(folder.rglob("*.json"))[:_PEEK_FILES]
    if any(_is_labelme(p) for p in jsons):
        return "labelme", "json files with 'shapes' (LabelMe)"
    if any((p / "images").is_dir() and (p / "masks").is_dir() for p in folder.iterdir()):
        return "mask-folders", "<id>/images/ and <id>/masks/"
    raise DatasetError(f"{folder}: unknown dataset layout (no annotations.xml, LabelMe json, "
                       "images/ + labels/, gtFine/, PNGImages/ + PedMasks/ or <id>/masks/); "
                       "name the annotation file itself, or give --format")


def _is_labelme(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("shapes"), list)


def convert(src, fmt: str, options: Options | None = None) -> tuple[dict, Path]:
    """(COCO dict, folder its file names are relative to) for `src` in format `fmt`."""
    from .cityscapes import category_ids, read_cityscapes
    from .coco_export import read_coco_export
    from .cvat import read_cvat
    from .label_studio import read_label_studio
    from .labelme import read_labelme
    from .mask_folders import InstanceIdPngDataset, PerInstancePngDataset, to_coco
    from .via import read_via
    from .via3 import read_via3
    from .yolo_seg import read_yolo_seg

    o = options or Options()
    _check_options(fmt, o)
    if fmt in ("pennfudan", "mask-folders"):
        kind = InstanceIdPngDataset if fmt == "pennfudan" else PerInstancePngDataset
        kwargs = {"class_name": o.class_name} if o.class_name else {}
        return to_coco(kind(src, **kwargs)), Path(src)
    if fmt == "cityscapes":
        builder, root = read_cityscapes(src, o.split)
        return builder.to_coco(builder.declared, category_ids()), root
    if fmt == "coco":
        data, root, _ = read_coco_export(src)
        return data, root
    readers = {"via": lambda: read_via(src, o.class_attribute, o.class_name),
               "via3": lambda: read_via3(src, o.class_attribute, o.class_name),
               "labelme": lambda: read_labelme(src, exclude=o.exclude),
               "cvat": lambda: read_cvat(src),
               "label-studio": lambda: read_label_studio(src),
               "yolo-seg": lambda: read_yolo_seg(src, o.classes)}
    if fmt not in readers:
        raise UserError(f"unknown format '{fmt}' (known: {', '.join(DESCRIPTIONS)})")
    builder, root = readers[fmt]()
    return builder.to_coco(o.classes), root


def _check_options(fmt: str, o: Options) -> None:
    for option, value, formats in (("--class-attribute", o.class_attribute, ("via", "via3")),
                                   ("--split", o.split, ("cityscapes",)),
                                   ("--class-name", o.class_name,
                                    ("via", "via3", "pennfudan", "mask-folders"))):
        if value and fmt not in formats:
            raise UserError(f"{option} applies to --format {' / '.join(formats)} only, not {fmt}")
    if o.classes and fmt in ("pennfudan", "mask-folders", "cityscapes", "coco"):
        raise UserError(f"--classes does not apply to {fmt}: its classes are fixed"
                        + ("; use --class-name" if fmt != "cityscapes" and fmt != "coco" else ""))


def as_coco_file(src, images, cache_dir) -> tuple[Path, Path | None, str | None]:
    """(COCO json, image folder or None = as training finds it, a line saying what was done or
    None) for any supported export `src`; converted files go to `cache_dir`. A json that is not
    recognised (truncated, or a malformed COCO file) is passed on as it is: the COCO reader
    reports its problems the way train and check-data always do."""
    src = Path(src)
    try:
        parsed = load_json_file(src) if src.is_file() and src.suffix.lower() == ".json" else None
        fmt, why = detect_format(src, parsed)
    except DatasetError:
        if src.is_file():
            return src, Path(images) if images else None, None
        raise
    if fmt == "coco":
        from .coco_export import cvat_crowd_masks, image_root, placeholder_category, read_coco_export

        if placeholder_category(parsed) is None and not cvat_crowd_masks(parsed):
            return src, Path(images) if images else image_root(parsed, src), None
        data, root, changes = read_coco_export(src, parsed)
        root = Path(images) if images else root
        note = f"{src}: COCO export ({'; '.join(changes)})"
    else:
        data, root = convert(src, fmt)
        note = f"{src}: detected {fmt} ({why})"
    if images and Path(images).resolve() != Path(root).resolve():
        raise UserError(f"--images does not apply to a {fmt} export: {src} names its images "
                        f"(they are read from {root})")
    stem = src.name[:-len(".json")] if src.name.endswith(".json") else src.name
    out = Path(cache_dir) / f"{stem.removesuffix('.coco')}.coco.json"
    write_json_atomic(out, data)
    return out, root, f"{note}; converted to {out} (images from {root})"


def use_exports(args, cache_dir, data_name: str = "train") -> None:
    """Point `args.data` / `args.images` (and `args.val_data` / `args.val_images` when present)
    at COCO files, converting any other export into `cache_dir` (/ `data_name` or / val); prints
    what it converted."""
    pairs = [("data", "images"), ("val_data", "val_images")]
    for data_key, images_key in pairs:
        src = getattr(args, data_key, None)
        if not src:
            continue
        if not Path(src).exists():
            raise DatasetError(f"{src}: annotation file or dataset folder not found (--{data_key.replace('_', '-')})")
        name = "val" if data_key == "val_data" else data_name
        ann, images, note = as_coco_file(src, getattr(args, images_key, None), Path(cache_dir) / name)
        if note:
            print(note)
        setattr(args, data_key, str(ann))
        setattr(args, images_key, str(images) if images else None)
