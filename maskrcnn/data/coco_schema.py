"""One validation pass for COCO-format json, shared by train, check-data and eval.

`validate_coco(data, path)` checks the file record by record before any reader indexes into it,
so a malformed file gives one DatasetError naming the file, the record (`annotations[3]`, with its
id when it has one) and the field, instead of a KeyError or TypeError deep in a reader or in the
COCO API. What it checks:

- the top level is an object with the lists `images`, `annotations` and `categories`;
- every element of those lists is an object;
- images: `id` (an integer), `file_name` a string when the reader needs files, and
  `width` / `height` positive integers when present (required for evaluation, which draws the
  ground-truth masks at the image's size without reading the image);
- categories: `id` (integer), `name` a string when present, no two with the same id or name (two
  names that agree would merge two classes into one);
- annotations: `image_id` / `category_id` integers, `iscrowd` 0 or 1, `segmentation`
  polygons or an RLE whose `size` is its image's [height, width] and whose counts fit that size.

The rule for an annotation without a segmentation (missing, null or an empty list) is the same in
every reader: it is skipped, counted and logged (`has_segmentation` says which), as real datasets
have a few. Numbers inside bbox, area, keypoints and polygons: `check_annotation_numbers`.
"""

from __future__ import annotations

import math

from ..errors import DatasetError

LISTS = ("images", "annotations", "categories")

_NUMBER_TYPES = frozenset({int, float})  # exact types: bool (a subclass of int) is not a number here

def validate_coco(data, path, *, need_files: bool = True, need_sizes: bool = False) -> None:
    """DatasetError naming `path`, the record and the field for the first malformed record.

    `need_files`: images need `file_name` (training, check-data); `need_sizes`: images need
    `width` and `height` (evaluation).
    """
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: the top level must be an object with images, annotations "
                           "and categories")
    for key in LISTS:
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path}: missing the '{key}' list of a COCO annotation file")
        for i, record in enumerate(data[key]):
            if not isinstance(record, dict):
                raise DatasetError(f"{path}: {key}[{i}] is {_shown(record)}, not an object")
    sizes = _check_images(data["images"], path, need_files, need_sizes)
    used = {a.get("category_id") for a in data.get("annotations") or [] if isinstance(a, dict)}
    _check_categories(data["categories"], path, used)
    for i, ann in enumerate(data["annotations"]):
        _check_annotation(ann, f"{path}: {_record('annotations', i, ann)}", sizes)


def has_segmentation(ann: dict) -> bool:
    """False for an annotation whose `segmentation` is missing, null or empty: skipped by all."""
    return bool(ann.get("segmentation"))


def check_rle_fits(rle: dict, height: int, width: int, where: str) -> None:
    """DatasetError unless the RLE's size is [height, width] and its counts fit that size."""
    size = rle.get("size")
    if size != [height, width]:
        raise DatasetError(f"{where}: 'segmentation' RLE size {size} differs from its image's "
                           f"[height, width] {[height, width]}")
    counts = rle.get("counts")
    if isinstance(counts, list):
        if sum(counts) != height * width:
            raise DatasetError(f"{where}: 'segmentation' RLE counts add up to {sum(counts)} pixels; "
                               f"its size {size} holds {height * width}")
    elif not _compressed_rle_fits(rle):
        raise DatasetError(f"{where}: 'segmentation' RLE counts are malformed or exceed its size "
                           f"{size}")


def _compressed_rle_fits(rle: dict) -> bool:
    from faster_coco_eval.core import mask as coco_mask  # checks the counts against the size

    try:
        coco_mask.area([{"size": rle["size"], "counts": rle["counts"].encode("ascii")}])
    except (ValueError, RuntimeError, UnicodeEncodeError):
        return False
    return True


def _check_images(images: list[dict], path, need_files: bool, need_sizes: bool) -> dict:
    """image id -> (height, width) or None when the record gives no size."""
    sizes = {}
    for i, image in enumerate(images):
        where = f"{path}: {_record('images', i, image)}"
        if not _is_id(image.get("id")):
            raise DatasetError(f"{where}: 'id' must be an integer, not "
                               f"{_shown(image.get('id'))}")
        if need_files and not isinstance(image.get("file_name"), str):
            raise DatasetError(f"{where}: 'file_name' must be a string, not {_shown(image.get('file_name'))}")
        for key in ("height", "width"):
            if key in image and not _is_positive_int(image[key]):
                raise DatasetError(f"{where}: '{key}' must be a positive integer, not {_shown(image[key])}")
        has_size = "height" in image and "width" in image
        if need_sizes and not has_size:
            missing = "width" if "height" in image else "height"
            raise DatasetError(f"{where}: no '{missing}'; evaluation needs each image's width and "
                               "height")
        sizes[image["id"]] = (int(image["height"]), int(image["width"])) if has_size else None
    return sizes


def _check_categories(categories: list[dict], path, used: set) -> None:
    """Ids unique integers; names unique among the categories annotations use (an unused one may
    repeat a name: Roboflow's exports carry their dataset's name as an empty category 0)."""
    ids, names = {}, {}
    for i, category in enumerate(categories):
        where = f"{path}: {_record('categories', i, category)}"
        if "id" not in category:
            raise DatasetError(f"{where} has no 'id'")
        cid = category["id"]
        if not _is_int(cid):
            raise DatasetError(f"{where}: 'id' must be an integer, not {_shown(cid)}")
        if cid in ids:
            raise DatasetError(f"{where}: id {cid} is also categories[{ids[cid]}]'s; category ids "
                               "must be unique")
        ids[cid] = i
        name = category.get("name", str(cid))
        if not isinstance(name, str):
            raise DatasetError(f"{where}: 'name' must be a string, not {_shown(name)}")
        if name in names and cid in used:
            raise DatasetError(f"{path}: categories with ids {names[name]} and {cid} are both named "
                               f"'{name}'; class names must be unique (rename or merge them)")
        if cid in used:
            names[name] = cid
        keypoints = category.get("keypoints")
        if keypoints is not None and not (isinstance(keypoints, list)
                                          and all(isinstance(k, str) for k in keypoints)):
            raise DatasetError(f"{where}: 'keypoints' must be a list of keypoint names")


def _check_annotation(ann: dict, where: str, sizes: dict) -> None:
    for key in ("image_id", "category_id"):
        if not _is_id(ann.get(key)):
            raise DatasetError(f"{where}: '{key}' must be an integer, not {_shown(ann.get(key))}")
    if ann.get("iscrowd", 0) not in (0, 1) or isinstance(ann.get("iscrowd"), float):
        raise DatasetError(f"{where}: 'iscrowd' must be 0 or 1, not {_shown(ann.get('iscrowd'))}")
    if "keypoints" in ann and not isinstance(ann["keypoints"], list):
        raise DatasetError(f"{where}: 'keypoints' must be a list [x, y, v, ...], not {_shown(ann['keypoints'])}")

    check_annotation_numbers(ann, where)
    segmentation = ann.get("segmentation")
    size = sizes.get(ann["image_id"])
    if isinstance(segmentation, dict) and size is not None:
        check_rle_fits(segmentation, *size, where)


def _record(key: str, index: int, record: dict) -> str:
    """'annotations[3] (id 7)'; the id is left out when the record has no usable one."""
    rid = record.get("id")
    return f"{key}[{index}] (id {rid})" if _is_id(rid) else f"{key}[{index}]"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_id(value) -> bool:
    return _is_int(value)


def _is_positive_int(value) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and math.isfinite(value) and float(value).is_integer() and value > 0


def _shown(value) -> str:
    """`5 (an int)`, short: the start of a long value."""
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    kind = type(value).__name__
    return "missing" if value is None else f"{text} (a {kind})" if kind != "str" else text


def check_annotation_numbers(ann: dict, where: str) -> None:
    """DatasetError (prefixed by `where`) unless bbox, segmentation, area and keypoints hold
    finite numbers in the shapes COCO defines."""
    if not isinstance(ann.get("bbox"), list) or len(ann["bbox"]) != 4:
        raise DatasetError(f"{where} has no 'bbox' [x, y, width, height]")
    check_finite(ann["bbox"], "'bbox'", where)
    if "area" in ann:
        check_finite(ann["area"], "'area'", where)
    if ann.get("segmentation") is not None:
        check_segmentation(ann["segmentation"], where)
    if isinstance(ann.get("keypoints"), list):
        check_finite(ann["keypoints"], "'keypoints'", where)


def check_segmentation(segmentation, where: str) -> None:
    """Polygons of finite x, y pairs, or an RLE dict with a [height, width] size and counts."""
    if isinstance(segmentation, list):
        for i, polygon in enumerate(segmentation):
            if not isinstance(polygon, list):
                raise DatasetError(f"{where}: segmentation polygon {i} is not a list of numbers")
            check_finite(polygon, f"segmentation polygon {i}", where)
            if len(polygon) % 2:
                raise DatasetError(f"{where}: segmentation polygon {i} has {len(polygon)} values; "
                                   "x, y pairs need an even count")
    elif isinstance(segmentation, dict):
        _check_rle(segmentation, where)
    else:
        raise DatasetError(f"{where}: 'segmentation' must be a list of polygons or an RLE dict")


def check_finite(values, what: str, where: str) -> None:
    """DatasetError naming the first of `values` (a list, or one value) that is not a finite number."""
    single = not isinstance(values, list)
    if not single and _NUMBER_TYPES.issuperset(map(type, values)) and math.isfinite(sum(values)):
        return  # the common case in one C-level pass; the loop below names what is wrong
    for i, value in enumerate([values] if single else values):
        at = "" if single else f" (value {i})"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DatasetError(f"{where}: {what} holds {value!r}{at}, not a number")
        if not math.isfinite(value):
            shown = "NaN" if math.isnan(value) else str(value)
            raise DatasetError(f"{where}: {what} holds {shown}{at}; it must be a finite number")


def _check_rle(rle: dict, where: str) -> None:
    size, counts = rle.get("size"), rle.get("counts")
    if not (isinstance(size, list) and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size)):
        raise DatasetError(f"{where}: RLE 'size' must be [height, width], not {size!r}")
    valid_list = isinstance(counts, list) and all(
        isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)
    if not (isinstance(counts, str) or valid_list):
        raise DatasetError(f"{where}: RLE 'counts' must be a string or a list of counts >= 0")
