"""Cityscapes `gtFine` instance annotations -> COCO.

`<root>/gtFine/<split>/<city>/<name>_gtFine_instanceIds.png` (16-bit) with the image
`<root>/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`. A pixel value >= 1000 is
`class_id * 1000 + instance`; a value below 1000 is a bare class id: for the instance classes
that is a group of objects the annotators did not separate, kept as one crowd region
(`iscrowd=1`, ignored by COCO and Cityscapes evaluation alike). Only the 8 classes the
benchmark scores are read; category ids are Cityscapes' label ids, so results map back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .coco_builder import CocoBuilder
from .images import image_size, read_mask

# label id -> name of the classes with instances that the benchmark evaluates
INSTANCE_CLASSES = {24: "person", 25: "rider", 26: "car", 27: "truck", 28: "bus", 31: "train",
                    32: "motorcycle", 33: "bicycle"}
GT_SUFFIX = "_gtFine_instanceIds.png"
IMAGE_SUFFIX = "_leftImg8bit.png"


def read_cityscapes(root, split: str | None = None) -> tuple[CocoBuilder, Path]:
    """(builder filled from gtFine/<split> (every split when None), `root`)."""
    root = Path(root)
    gt_root = root / "gtFine" / (split or "")
    files = sorted(gt_root.rglob(f"*{GT_SUFFIX}"))
    if not files:
        raise DatasetError(f"{gt_root}: no *{GT_SUFFIX} files found")
    builder = CocoBuilder(str(gt_root), declared_classes=list(INSTANCE_CLASSES.values()))
    for gt_path in files:
        _read_image(builder, gt_path, root)
    return builder, root


def category_ids() -> list[int]:
    """The Cityscapes label ids of the 8 instance classes (24 person ... 33 bicycle), in the order of
    `INSTANCE_CLASSES`: the COCO category ids of a converted Cityscapes dataset."""
    return list(INSTANCE_CLASSES)


def image_path_for(gt_path: Path, root: Path) -> Path:
    """leftImg8bit/<split>/<city>/<name>_leftImg8bit.png of a gtFine file."""
    relative = gt_path.relative_to(root / "gtFine")
    name = relative.name[: -len(GT_SUFFIX)] + IMAGE_SUFFIX
    return root / "leftImg8bit" / relative.parent / name


def _read_image(builder: CocoBuilder, gt_path: Path, root: Path) -> None:
    image_path = image_path_for(gt_path, root)
    if not image_path.is_file():
        raise DatasetError(f"{gt_path}: its image {image_path} not found")
    ids = read_mask(gt_path).astype(np.int64)  # (H, W)
    height, width = image_size(image_path)
    if ids.shape != (height, width):
        raise DatasetError(f"{gt_path}: {ids.shape[1]} x {ids.shape[0]} but its image "
                           f"{image_path} is {width} x {height}")
    image_id = builder.add_image(image_path.relative_to(root).as_posix(), height, width)
    for value in np.unique(ids):
        class_id = value // 1000 if value >= 1000 else value
        if class_id not in INSTANCE_CLASSES:
            continue
        builder.add_mask(image_id, INSTANCE_CLASSES[class_id], ids == value,
                         f"{gt_path}: id {value}", iscrowd=int(value < 1000))
