"""COCO files written by labelling tools -> COCO as training reads it.

Tools that export "COCO" differ in where the images are and in one extra category:
- Roboflow (`_annotations.coco.json` with the images beside it in each split folder): category 0
  is the dataset's name, the `supercategory` of every real class, with no annotation. It is
  dropped (a class without examples would get a row in the classifier).
- CVAT "COCO 1.0" (`annotations/instances_<subset>.json` + `images/` beside `annotations/`):
  every annotation carries CVAT's `attributes` (with `occluded`), and each mask drawn with the
  brush is written as an RLE with `iscrowd` 1, which the COCO convention reads as a crowd region
  (left out of training, ignored by evaluation). Those become objects (`iscrowd` 0): a project of
  masks would otherwise train on nothing.
- Label Studio "COCO" (`result.json` + `images/`; `file_name` is `images/<name>`, on Windows with
  `\\`; category ids start at 0 and are real classes).
The image root is the first of: the json's folder, its `images/`, the parent's `images/`, the
parent, holding the first image; `file_name`s must stay inside it (`safe_paths`).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DatasetError
from .coco import load_json
from .safe_paths import path_inside


def is_coco(data) -> bool:
    """Whether the parsed json `data` looks like a COCO dataset: a dict whose `images`,
    `annotations` and `categories` are lists."""
    return isinstance(data, dict) and all(isinstance(data.get(k), list)
                                          for k in ("images", "annotations", "categories"))


def read_coco_export(path, data=None) -> tuple[dict, Path, list[str]]:
    """(COCO dict ready for training, image root, what was changed: [] for a plain COCO file).
    `data`: the file's parsed json when the caller has it already."""
    path = Path(path)
    data = load_json(path) if data is None else data
    changes = []
    placeholder = placeholder_category(data)
    if placeholder is not None:
        data = {**data, "categories": [c for c in data["categories"] if c is not placeholder]}
        changes.append(f"dropped category {placeholder.get('id')} '{placeholder.get('name')}' "
                       "(the supercategory of all others, with no annotation: Roboflow's dataset name)")
    crowd_masks = cvat_crowd_masks(data)
    if crowd_masks:
        annotations = list(data["annotations"])
        for index in crowd_masks:
            annotations[index] = {**annotations[index], "iscrowd": 0}
        data = {**data, "annotations": annotations}
        changes.append(f"{len(crowd_masks)} mask annotations iscrowd 1 -> 0 (CVAT's COCO export marks "
                       "every brush mask as a crowd region, which training would leave out)")
    root = image_root(data, path)
    images = []
    for index, image in enumerate(data["images"]):
        name = image.get("file_name") if isinstance(image, dict) else None
        if not isinstance(name, str):
            raise DatasetError(f"{path}: images[{index}] has no 'file_name'")
        path_inside(root, root, name, f"{path}: images[{index}] file_name")
        images.append({**image, "file_name": name.replace("\\", "/")})
    if any(a["file_name"] != b.get("file_name") for a, b in zip(images, data["images"])):
        changes.append("file_name separators '\\' -> '/'")
    return {**data, "images": images}, root, changes


def placeholder_category(data: dict) -> dict | None:
    """Roboflow's category 0: unused, and the supercategory of every other category."""
    categories = [c for c in data["categories"] if isinstance(c, dict)]
    used = {str(a.get("category_id")) for a in data["annotations"] if isinstance(a, dict)}
    for category in categories:
        others = [c for c in categories if c is not category]
        if (str(category.get("id")) not in used and others
                and all(c.get("supercategory") == category.get("name") for c in others)):
            return category
    return None


def cvat_crowd_masks(data: dict) -> list[int]:
    """Indexes of the annotations CVAT's COCO export marked as crowd for being masks: RLE
    segmentation, `iscrowd` 1, and CVAT's per-annotation `attributes` with `occluded`."""
    return [i for i, a in enumerate(data["annotations"])
            if isinstance(a, dict) and a.get("iscrowd") == 1 and isinstance(a.get("segmentation"), dict)
            and isinstance(a.get("attributes"), dict) and "occluded" in a["attributes"]]


def image_root(data: dict, path: Path) -> Path:
    """The folder the `file_name`s are relative to (see the module docstring)."""
    folder = path.parent
    candidates = (folder, folder / "images", folder.parent / "images", folder.parent)
    first = next((im.get("file_name") for im in data["images"]
                  if isinstance(im, dict) and isinstance(im.get("file_name"), str)), None)
    if first is not None:
        name = first.replace("\\", "/")
        for root in candidates:
            try:
                if (root / name).is_file():
                    return root
            except (OSError, ValueError):  # a name no file system holds (e.g. a NUL byte)
                break
    return folder / "images" if (folder / "images").is_dir() else folder
