"""YOLO segmentation (Ultralytics layout) -> COCO.

`<root>/images/**/<stem>.<ext>` with `<root>/labels/**/<stem>.txt` at the same relative path
(`images` -> `labels`). Each line is one object: `class x0 y0 x1 y1 ...`, the class a 0-based
index into the class list and the points normalised to [0, 1] by the image width and height; a
line of exactly 4 numbers after the class is a box `cx cy w h` (YOLO detection). An image without
a label file, or with an empty one, is kept with no objects. The class list is `names` in
`<root>/data.yaml` (a list, or a dict index -> name), else `<root>/classes.txt` or
`<root>/obj.names` (one name per line), else `classes` given by the caller, in index order.
Roboflow's YOLOv5/v8 export puts each split in its own folder (`<root>/train/images`,
`<root>/train/labels`, `<root>/valid/...`, `data.yaml` at the root, whose `train: ../train/images`
paths point outside the folder and are not read): every `<root>/<split>/images` is read when there
is no `<root>/images`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from ..errors import DatasetError
from .coco_builder import CocoBuilder, box_polygon
from .images import image_size

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_yolo_seg(root, classes: list[str] | None = None) -> tuple[CocoBuilder, Path]:
    """(builder filled from every image under `root`/images, `root`). `classes` names the
    indices only when the dataset has no class list of its own."""
    root = Path(root)
    names = class_list(root) or classes
    if not names:
        raise DatasetError(f"{root}: no class list (data.yaml 'names', classes.txt or obj.names); "
                           "give the names in index order with --classes")
    folders = image_folders(root)
    images = {folder: sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
              for folder in folders}
    if not any(images.values()):
        raise DatasetError(f"{root}/images: no images found (expected the Ultralytics layout "
                           "images/... beside labels/..., or <split>/images beside <split>/labels)")
    builder = CocoBuilder(str(root), declared_classes=names)
    for folder, paths in images.items():
        for image_path in paths:
            label_path = folder.parent / "labels" / image_path.relative_to(folder).with_suffix(".txt")
            height, width = image_size(image_path)
            image_id = builder.add_image(image_path.relative_to(root).as_posix(), height, width)
            if label_path.is_file():
                _read_labels(builder, label_path, image_id, names, (height, width))
        _warn_orphans(folder.parent, paths)
    return builder, root


def image_folders(root: Path) -> list[Path]:
    """`root/images`, else every `root/<split>/images` that has a `labels` folder beside it."""
    if (root / "images").is_dir():
        return [root / "images"]
    return sorted(p for p in root.glob("*/images") if p.is_dir() and (p.parent / "labels").is_dir())


def class_list(root: Path) -> list[str] | None:
    """The dataset's own class names in index order, or None."""
    if (root / "data.yaml").is_file():
        try:
            names = (yaml.safe_load((root / "data.yaml").read_text()) or {}).get("names")
        except (yaml.YAMLError, AttributeError) as exc:
            raise DatasetError(f"{root / 'data.yaml'}: not a YAML mapping with 'names' ({exc})") from None
        if isinstance(names, dict):
            if sorted(names) != list(range(len(names))):
                raise DatasetError(f"{root / 'data.yaml'}: 'names' keys must be 0..{len(names) - 1}")
            names = [names[i] for i in range(len(names))]
        if not isinstance(names, list) or not names:
            raise DatasetError(f"{root / 'data.yaml'}: 'names' must be a list of class names")
        return [str(n) for n in names]
    for name in ("classes.txt", "obj.names"):
        if (root / name).is_file():
            return [line.strip() for line in (root / name).read_text().splitlines() if line.strip()]
    return None


def _read_labels(builder: CocoBuilder, path: Path, image_id: int, names: list[str], size) -> None:
    height, width = size
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        try:
            values = [float(v) for v in line.split()]
        except ValueError:
            raise DatasetError(f"{where}: not numbers: '{line.strip()[:60]}'") from None
        index, coords = values[0], values[1:]
        if index != int(index) or not 0 <= index < len(names):
            raise DatasetError(f"{where}: class index {values[0]:g} is not one of 0..{len(names) - 1}")
        if any(not 0.0 <= v <= 1.0 for v in coords):
            raise DatasetError(f"{where}: coordinates must be normalised to [0, 1]")
        if len(coords) == 4:
            cx, cy, w, h = coords
            polygon = box_polygon((cx - w / 2) * width, (cy - h / 2) * height,
                                  (cx + w / 2) * width, (cy + h / 2) * height)
        elif len(coords) % 2:
            raise DatasetError(f"{where}: an odd number ({len(coords)}) of coordinates")
        else:
            polygon = [v * (width if i % 2 == 0 else height) for i, v in enumerate(coords)]
        builder.add_polygons(image_id, names[int(index)], [polygon], where)


def _warn_orphans(root: Path, images: list[Path]) -> None:
    stems = {p.relative_to(root / "images").with_suffix("").as_posix() for p in images}
    orphans = [p for p in (root / "labels").rglob("*.txt")
               if p.relative_to(root / "labels").with_suffix("").as_posix() not in stems]
    if orphans:
        logger.warning("%s: %d label files have no image (first: %s) - not converted",
                       root, len(orphans), orphans[0])
