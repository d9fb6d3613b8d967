"""COCO-json instance dataset: images + polygons / RLE, decoded exactly as `pycocotools.COCO` does.

Dataset category ids (often non-contiguous, COCO's run 1..90) become contiguous labels 1..K in
ascending id order; `class_names` and `category_ids` (index = label, 0 = background) go into
`ModelConfig` so predictions can be mapped back.

Bad input, and what happens (all checked when the dataset is built, so training never stops
half-way on a bad file):
- unreadable / truncated json, missing top-level key, duplicate image id, annotation of an
  unknown image or of a category missing from `categories`, missing image file: DatasetError /
  ImageError naming the file and the item;
- a number that is not a finite number (NaN, inf, text) in a bbox, polygon, area or keypoints,
  a polygon with an odd count of values, RLE counts that are not counts: DatasetError naming the
  file, the annotation and the value (`check_annotation_numbers`, also run on evaluation ground
  truth), before pycocotools sees them: its polygon conversion runs away on a NaN;
- polygon part with < 3 points, zero-area box, box wholly outside the image, no segmentation:
  the annotation (or just the polygon part) is skipped, counted in `skipped` and logged once per
  reason with the first ids. Real COCO has a few such annotations, so refusing would be useless.
  A box partly outside the image is clipped to it (counted in `skipped["clipped box"]`).
- keypoints (when the categories define them): a list whose length is not 3 x the number of
  keypoint names, a visibility other than 0 / 1 / 2, or a non-number: DatasetError naming the file,
  annotation and keypoint. A labelled keypoint outside the image is set to not labelled (v = 0):
  it can never fall inside a RoI, and flipping would keep it outside; counted and logged.
Crowd annotations are left out of training targets; evaluation reads them from the json.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetError, ImageError
from ..fileio import describe_os_error
from ..ops.rle import segmentation_to_mask
from .coco_schema import check_rle_fits, validate_coco
from .images import image_size, read_image

logger = logging.getLogger(__name__)

BACKGROUND = "__background__"
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")  # UTF-8, UTF-16 LE / BE


def load_json_file(path: str | Path, what: str = "annotation file"):
    """Parse any json; a missing, unreadable, truncated or invalid file (or one that starts with a
    byte order mark) raises DatasetError naming it."""
    path = Path(path)
    if path.is_dir():
        raise DatasetError(f"{path}: is a folder, not a json {what}")
    if not path.is_file():
        raise DatasetError(f"{path}: {what} not found")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the {what} ({describe_os_error(exc)})") from None
    if raw.startswith(_BOMS):
        raise DatasetError(f"{path}: starts with a byte order mark (BOM), which JSON does not allow; "
                           "save it as UTF-8 without BOM")
    try:
        return json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f"line {exc.lineno}, column {exc.colno}: {exc.msg}" if isinstance(
            exc, json.JSONDecodeError) else "not UTF-8 text"
        raise DatasetError(
            f"{path}: not valid JSON ({where}); the file may be truncated - re-export or "
            "re-download it"
        ) from None


def load_json(path: str | Path, *, need_files: bool = False, need_sizes: bool = False) -> dict:
    """Parse a COCO annotation file and validate it record by record (`coco_schema`): a truncated,
    invalid or malformed file raises DatasetError naming it, the record and the field."""
    data = load_json_file(path)
    validate_coco(data, path, need_files=need_files, need_sizes=need_sizes)
    return data


class CocoDataset(torch.utils.data.Dataset):
    """Yields `(image, target)`: image (3, H, W) float in [0, 1]; target dict with
    boxes (N, 4) xyxy, labels (N,) 1..K, masks (N, H, W) uint8, image_id, area (N,),
    and keypoints (N, K, 3) x, y, visibility when the categories define keypoints."""

    def __init__(self, ann_file, image_dir=None, transforms=None, skip_empty: bool = False,
                 check_files: bool = True):
        self.ann_file = Path(ann_file)
        self.image_dir = Path(image_dir) if image_dir else _default_image_dir(self.ann_file)
        self.transforms = transforms
        data = load_json(self.ann_file, need_files=True)
        self.category_ids, self.class_names = _categories(data["categories"])
        self.keypoint_names = _keypoint_names(data["categories"])
        images = _index_images(data["images"], self.ann_file)
        self.skipped: dict[str, int] = defaultdict(int)
        self._anns = _group_annotations(data["annotations"], images, self, self.ann_file)
        if self.skipped:
            logger.warning("%s: %s", self.ann_file,
                           ", ".join(f"{n} x {reason}" for reason, n in self.skipped.items()))
        self.images = [im for im in images.values() if self._anns[im["id"]] or not skip_empty]
        if skip_empty and len(self.images) < len(images):
            logger.info("%s: left out %d images without annotations (skip_empty)",
                        self.ann_file, len(images) - len(self.images))
        if check_files:  # check-data lists every missing file itself
            _check_files_exist(self.images, self.image_dir, self.ann_file)

    def __len__(self) -> int:
        return len(self.images)

    def image_labels(self) -> list[set[int]]:
        """Each image's set of labels (1..K), in dataset order."""
        return [{ann["label"] for ann in self._anns[im["id"]]} for im in self.images]

    def image_path(self, index: int) -> Path:
        """The file of image `index` (dataset order): `image_dir` / its `file_name`."""
        return self.image_dir / self.images[index]["file_name"]

    def check_image_headers(self) -> None:
        """Read every image's header (not its pixels): an ImageError names the first that is not
        an image Pillow can open or whose size is not the json's, before any training step."""
        for index in range(len(self)):
            self.check_size(index, *image_size(self.image_path(index)))

    def check_size(self, index: int, height: int, width: int) -> None:
        """ImageError when the decoded size is not the json's; without a size in the json,
        DatasetError when an RLE of the image's annotations has another size."""
        record = self.images[index]
        if "height" not in record or "width" not in record:
            for ann in self._anns[record["id"]]:
                if isinstance(ann["segmentation"], dict):
                    check_rle_fits(ann["segmentation"], height, width,
                                   f"{self.ann_file}: annotation {ann.get('id')} (image {record['id']}, "
                                   f"{width}x{height} as read from {self.image_path(index)})")
        if (record.get("height", height), record.get("width", width)) != (height, width):
            raise ImageError(
                f"{self.image_path(index)}: image {record['id']} is {width}x{height} after EXIF "
                f"orientation but {self.ann_file} says {record['width']}x{record['height']}"
            )

    def __getitem__(self, index: int):
        record = self.images[index]
        image = read_image(self.image_path(index))  # (3, H, W)
        height, width = image.shape[1:]
        self.check_size(index, height, width)
        target = self._target(self._anns[record["id"]], record["id"], height, width)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def _target(self, anns: list[dict], image_id: int, height: int, width: int) -> dict:
        masks = np.zeros((len(anns), height, width), dtype=np.uint8)  # (N, H, W)
        for i, ann in enumerate(anns):
            masks[i] = segmentation_to_mask(ann["segmentation"], height, width)
        target = {
            "boxes": torch.tensor([a["bbox_xyxy"] for a in anns],
                                  dtype=torch.float32).reshape(-1, 4),  # (N, 4) xyxy
            "labels": torch.tensor([a["label"] for a in anns], dtype=torch.int64),
            "masks": torch.from_numpy(masks),
            "image_id": int(image_id),
            "area": torch.tensor([a["area"] for a in anns], dtype=torch.float32),
        }
        if self.keypoint_names:
            target["keypoints"] = _keypoints(anns, len(self.keypoint_names))
        return target

    def skip(self, reason: str, ann_id) -> None:
        """Count a skipped annotation; the first few ids per reason are logged."""
        self.skipped[reason] += 1
        if self.skipped[reason] <= 5:
            logger.warning("%s: annotation %s: %s - skipped", self.ann_file, ann_id, reason)


def _default_image_dir(ann_file: Path) -> Path:
    sibling = ann_file.parent / "images"
    return sibling if sibling.is_dir() else ann_file.parent


def _categories(categories: list[dict]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Sorted dataset ids -> labels 1..K: (category_ids, class_names), index 0 = background."""
    ordered = sorted(categories, key=lambda c: c["id"])
    ids = [c["id"] for c in ordered]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"duplicate category ids in 'categories': {ids}")
    return (0, *ids), (BACKGROUND, *(str(c.get("name", c["id"])) for c in ordered))


def _keypoint_names(categories: list[dict]) -> tuple[str, ...]:
    for category in categories:
        if category.get("keypoints"):
            return tuple(category["keypoints"])
    return ()


def _index_images(images: list[dict], ann_file: Path) -> dict[int, dict]:
    index = {}
    for image in images:
        if "file_name" not in image and isinstance(image.get("coco_url"), str):  # LVIS names COCO's URL
            image["file_name"] = image["coco_url"].rsplit("/", 1)[-1]
        if "id" not in image or "file_name" not in image:
            raise DatasetError(f"{ann_file}: image entry {image} lacks 'id' or 'file_name'")
        if image["id"] in index:
            raise DatasetError(
                f"{ann_file}: duplicate image id {image['id']} ("
                f"'{index[image['id']]['file_name']}' and '{image['file_name']}'); "
                "image ids must be unique"
            )
        index[image["id"]] = image
    return index


def _group_annotations(anns, images: dict, dataset: CocoDataset, ann_file: Path) -> dict:
    """image id -> cleaned non-crowd annotations (with `label` and `bbox_xyxy` added)."""
    label_of = {cid: label for label, cid in enumerate(dataset.category_ids) if label > 0}
    grouped: dict[int, list[dict]] = {image_id: [] for image_id in images}
    for ann in anns:
        ann_id = ann.get("id")
        if ann.get("image_id") not in images:
            raise DatasetError(f"{ann_file}: annotation {ann_id} refers to image "
                               f"{ann.get('image_id')}, which is not in 'images'")
        if ann.get("category_id") not in label_of:
            raise DatasetError(
                f"{ann_file}: annotation {ann_id} has category_id {ann.get('category_id')}, "
                f"which is missing from 'categories' (known ids: {sorted(label_of)})"
            )
        if ann.get("iscrowd", 0):
            continue
        cleaned = _clean_annotation(ann, images[ann["image_id"]], dataset)
        if cleaned is not None:
            grouped[ann["image_id"]].append({**cleaned, "label": label_of[ann["category_id"]]})
    return grouped


def _clean_annotation(ann: dict, image: dict, dataset: CocoDataset) -> dict | None:
    """The annotation ready for training, or None (counted) when it cannot be one."""
    segmentation = ann.get("segmentation")  # checked with its numbers by coco_schema
    if isinstance(segmentation, list):
        # pycocotools reads a 4-number polygon as a box and rejects shorter ones
        polygons = [p for p in segmentation if len(p) >= 6]
        if len(polygons) < len(segmentation):
            dataset.skip("polygon with fewer than 3 points", ann.get("id"))
        segmentation = polygons
    if not segmentation:
        dataset.skip("no segmentation", ann.get("id"))
        return None
    x, y, w, h = (float(v) for v in ann["bbox"])
    if w <= 0 or h <= 0:
        dataset.skip("zero-area box", ann.get("id"))
        return None
    box = _clip([x, y, x + w, y + h], image.get("width", np.inf), image.get("height", np.inf))
    if box[2] <= box[0] or box[3] <= box[1]:
        dataset.skip("box outside the image", ann.get("id"))
        return None
    if box != [x, y, x + w, y + h]:
        dataset.skipped["clipped box"] += 1
    cleaned = {**ann, "segmentation": segmentation, "bbox_xyxy": box, "area": float(ann.get("area", w * h))}
    if dataset.keypoint_names and ann.get("keypoints"):
        cleaned["keypoints"] = _clean_keypoints(ann, image, dataset)
    return cleaned


def _clean_keypoints(ann: dict, image: dict, dataset: CocoDataset) -> list[float]:
    """Flat [x, y, v] * K checked against the categories' K and COCO's visibility codes; a
    labelled keypoint outside the image becomes unlabelled (v = 0), counted."""
    where, points, names = f"{dataset.ann_file}: annotation {ann.get('id')}", ann["keypoints"], dataset.keypoint_names
    if not isinstance(points, list) or len(points) != 3 * len(names):
        count = len(points) if isinstance(points, list) else type(points).__name__
        raise DatasetError(f"{where}: 'keypoints' has {count} values; the categories define "
                           f"{len(names)} keypoints, so {3 * len(names)} values [x, y, v, ...] are expected")
    array = np.asarray(points, dtype=np.float64).reshape(len(names), 3)  # (K, 3), finite (checked)
    bad = ~np.isin(array[:, 2], (0, 1, 2))
    if bad.any():
        i = int(np.argmax(bad))
        raise DatasetError(f"{where}: keypoint '{names[i]}' is {points[3 * i:3 * i + 3]}; visibility must be "
                           "0 (not labelled), 1 (labelled, hidden) or 2 (visible)")
    x, y = array[:, 0], array[:, 1]
    outside = (array[:, 2] > 0) & ((x < 0) | (y < 0) | (x > image.get("width", np.inf))
                                   | (y > image.get("height", np.inf)))
    if outside.any():
        dataset.skip("labelled keypoint outside the image, set to not labelled", ann.get("id"))
        array[outside] = 0
    return array.reshape(-1).tolist()


def _clip(box: list[float], width: float, height: float) -> list[float]:
    x1, y1, x2, y2 = box
    return [min(max(x1, 0.0), width), min(max(y1, 0.0), height),
            min(max(x2, 0.0), width), min(max(y2, 0.0), height)]


def _keypoints(anns: list[dict], num_keypoints: int) -> torch.Tensor:
    """(N, K, 3) x, y, visibility; annotations without keypoints get zeros (not labelled)."""
    out = torch.zeros((len(anns), num_keypoints, 3), dtype=torch.float32)
    for i, ann in enumerate(anns):
        if ann.get("keypoints"):
            out[i] = torch.tensor(ann["keypoints"], dtype=torch.float32).reshape(num_keypoints, 3)
    return out


def _check_files_exist(images: list[dict], image_dir: Path, ann_file: Path) -> None:
    missing = [im for im in images if not (image_dir / im["file_name"]).is_file()]
    if missing:
        first = missing[0]
        what = "is a folder, not an image file" if (image_dir / first["file_name"]).is_dir() else "image file not found"
        raise ImageError(
            f"{image_dir / first['file_name']}: {what} (image id {first['id']} in "
            f"{ann_file}; {len(missing)} of {len(images)} images missing) - check the images folder"
        )
